package ilphttp

import (
	"strconv"
	"testing"
	"time"
)

func TestSeenIDs(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := &RequestIDs{limit: 2}
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
}

// TestSeenIDsBounded: the set never grows past its limit.
func TestSeenIDsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := &RequestIDs{limit: 100}
	for i := range 1000 {
		s.add(strconv.Itoa(i), now.Add(time.Hour), now)
	}
	if n := len(s.until); n != 100 {
		t.Fatalf("%d ids kept, want the limit 100", n)
	}
}

// TestSeenIDsShrink: expired ids are dropped even when the set is not full, and a map that
// was much larger is rebuilt, so that memory follows the traffic down after a burst.
func TestSeenIDsShrink(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := &RequestIDs{}
	const burst = 4 * seenShrinkMin
	for i := range burst {
		s.add("burst"+strconv.Itoa(i), t0.Add(time.Second), t0)
	}
	steps := []struct {
		name      string
		at        time.Duration
		wantLen   int
		wantPeak  int
		wantSwept bool
	}{
		{"live burst, no sweep yet", 500 * time.Millisecond, burst + 1, burst + 1, false},
		{"burst expired, sweep due", seenSweepEvery, 2, 2, true},
	}
	for i, st := range steps {
		s.add("late"+strconv.Itoa(i), t0.Add(time.Hour), t0.Add(st.at))
		if len(s.until) != st.wantLen || s.peak != st.wantPeak || s.lastSweep.Equal(t0.Add(st.at)) != st.wantSwept {
			t.Fatalf("%s: %d ids, peak %d, swept %v; want %d, %d, %v", st.name, len(s.until), s.peak,
				s.lastSweep.Equal(t0.Add(st.at)), st.wantLen, st.wantPeak, st.wantSwept)
		}
	}
}

// TestKeepID: a Request-Id is kept replyMinWindow past its Prepare's expiry, but never past the
// max hold time: a peer's far expiries must not keep ids (and memory) for hours.
func TestKeepID(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := &Link{holdNow: func() time.Duration { return 30 * time.Second }}
	for _, tc := range []struct {
		name   string
		expiry time.Duration
		want   time.Duration
	}{
		{"near expiry", 10 * time.Second, 10*time.Second + replyMinWindow},
		{"expired", -time.Second, -time.Second + replyMinWindow},
		{"at max hold", 30 * time.Second, 30*time.Second + replyMinWindow},
		{"far expiry capped", time.Hour, 30*time.Second + replyMinWindow},
	} {
		if got := l.keepID(now.Add(tc.expiry), now); !got.Equal(now.Add(tc.want)) {
			t.Errorf("%s: kept until now%+v, want now%+v", tc.name, got.Sub(now), tc.want)
		}
	}
}
