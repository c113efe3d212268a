package warnlimit

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	const every = 10 * time.Second
	t0 := time.Unix(1_700_000_000, 0)
	l := Limiter{Every: every}
	for _, st := range []struct {
		name           string
		kind           string
		at             time.Duration
		ok             bool
		wantSuppressed int
	}{
		{"first of a kind", "refused", 0, true, 0},
		{"same kind soon after", "refused", time.Second, false, 0},
		{"another kind", "HTTP 500", 2 * time.Second, true, 0},
		{"same kind again", "refused", every - time.Nanosecond, false, 0},
		{"after Every, with the count", "refused", every, true, 2},
		{"count restarts", "refused", 2 * every, true, 0},
	} {
		ok, n := l.Allow(st.kind, t0.Add(st.at))
		if ok != st.ok || n != st.wantSuppressed {
			t.Fatalf("%s: Allow = %v, %d; want %v, %d", st.name, ok, n, st.ok, st.wantSuppressed)
		}
	}
}

func TestTake(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := Limiter{Every: time.Minute}
	if n := l.Take("x"); n != 0 {
		t.Fatalf("Take of an unseen kind = %d, want 0", n)
	}
	for i := range 4 {
		l.Allow("x", t0.Add(time.Duration(i)*time.Second))
	}
	if n := l.Take("x"); n != 3 {
		t.Fatalf("Take = %d, want the 3 held back", n)
	}
	if n := l.Take("x"); n != 0 {
		t.Fatalf("second Take = %d, want 0: the count is forgotten", n)
	}
	if ok, n := l.Allow("x", t0.Add(time.Minute)); !ok || n != 0 {
		t.Fatalf("Allow after Take = %v, %d; want true, 0", ok, n)
	}
}

func TestGate(t *testing.T) {
	const every = 5 * time.Minute
	t0 := time.Unix(1_700_000_000, 0)
	g := Gate{Every: every}
	for _, st := range []struct {
		name     string
		msg      string
		at       time.Duration
		reset    bool
		ok       bool
		heldBack int
	}{
		{"first failure", "refused", 0, false, true, 0},
		{"the same, soon after", "refused", time.Second, false, false, 0},
		{"the same again", "refused", 2 * time.Second, false, false, 0},
		{"another failure at once", "bind", 3 * time.Second, false, true, 0},
		{"the new one repeated", "bind", 4 * time.Second, false, false, 0},
		{"the new one after Every, with its count", "bind", 3*time.Second + every, false, true, 1},
		{"after Reset, the same is new", "bind", 3*time.Second + every + time.Second, true, true, 0},
	} {
		if st.reset {
			g.Reset()
		}
		ok, held := g.Pass(st.msg, t0.Add(st.at))
		if ok != st.ok || held != st.heldBack {
			t.Errorf("%s: Pass = %v, %d; want %v, %d", st.name, ok, held, st.ok, st.heldBack)
		}
	}
}

func TestForget(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := Limiter{Every: time.Minute}
	l.Allow("Account/a", t0)
	if ok, _ := l.Allow("Account/a", t0.Add(time.Second)); ok {
		t.Fatal("a second line within Every went through")
	}
	l.Forget("Account/a")
	if ok, n := l.Allow("Account/a", t0.Add(2*time.Second)); !ok || n != 0 {
		t.Fatalf("Allow after Forget = %v, %d; want true, 0: a forgotten kind starts anew", ok, n)
	}
	if len(l.kinds) != 1 {
		t.Fatalf("%d kinds kept; want the one seen since", len(l.kinds))
	}
}
