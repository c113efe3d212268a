package ilphttp

import (
	"strconv"
	"testing"
	"time"
)

func TestSeenIDs(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := &seenIDs{limit: 2}
	steps := []struct {
		name  string
		id    string
		until time.Time
		now   time.Time
		want  seenResult
	}{
		{"first", "a", t0.Add(10 * time.Second), t0, seenNew},
		{"repeat before expiry", "a", t0.Add(20 * time.Second), t0.Add(9 * time.Second), seenRepeat},
		{"second id", "b", t0.Add(510 * time.Millisecond), t0, seenNew},
		{"full of live ids", "c", t0.Add(10 * time.Second), t0.Add(500 * time.Millisecond), seenFull},
		{"no sweep again so soon", "c", t0.Add(10 * time.Second), t0.Add(550 * time.Millisecond), seenFull},
		{"sweep frees the expired b", "c", t0.Add(10 * time.Second), t0.Add(2 * time.Second), seenNew},
		{"a expired: a new Prepare", "a", t0.Add(30 * time.Second), t0.Add(10 * time.Second), seenNew},
	}
	for _, st := range steps {
		if got := s.add(st.id, st.until, st.now); got != st.want {
			t.Fatalf("%s: add(%s) = %d, want %d", st.name, st.id, got, st.want)
		}
	}
	s.remove("a")
	if got := s.add("a", t0.Add(time.Minute), t0.Add(11*time.Second)); got != seenNew {
		t.Fatalf("add after remove = %d, want seenNew", got)
	}
}

// TestSeenIDsBounded: the set never grows past its limit.
func TestSeenIDsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := &seenIDs{limit: 100}
	for i := range 1000 {
		s.add(strconv.Itoa(i), now.Add(time.Hour), now)
	}
	if n := len(s.until); n != 100 {
		t.Fatalf("%d ids kept, want the limit 100", n)
	}
}
