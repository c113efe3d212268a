package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// TestLostLeaseSettlesNoMore: once Redis no longer holds A's lease and another process B
// has taken the prefix, A's server calls Settle no more, even before A's next renewal (every
// lease/6) notices: the read of a kept attempt, which leads to Settle, is fenced by the lease.
func TestLostLeaseSettlesNoMore(t *testing.T) {
	srv := redistest.Start(t)
	rc := rawClient(t, srv.URL())
	prefix := "t:" + t.Name() + ":"
	const lease = 60 * time.Second // renewal tick every 10 s
	a, never := settlingForever(t, srv.URL(), prefix, lease)

	// Redis expires A's lease (A was cut off or stalled for a TTL) and B takes the prefix.
	if err := rc.Del(context.Background(), prefix+"lease").Err(); err != nil {
		t.Fatal(err)
	}
	must[*engine.Redis](t)(openLeased(waitCtx(t), t, srv.URL(), prefix, lease, &logBuffer{})) // B
	n := len(never.got())
	deadline := time.After(3 * time.Second) // bounds the observation only; nothing asserted on time
	for len(never.got()) == n {
		select {
		case <-deadline:
			return // A did not settle again: no defect
		case <-time.After(10 * time.Millisecond):
		}
	}
	failed := a.Err() != nil
	t.Fatalf("A called Settle %d more time(s) while B held the prefix (A noticed the loss: %v)", len(never.got())-n, failed)
}

// TestUnansweredRenewalLosesTheLeaseInTime: renewals that Redis does not answer (a process cut
// off) end at their own deadline, and the lease stops counting before Redis may expire it: by
// the time B holds the prefix, A has given it up and calls Settle no more.
func TestUnansweredRenewalLosesTheLeaseInTime(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv)
	prefix := "t:" + t.Name() + ":"
	a, never := settlingForever(t, proxy.URL(), prefix, time.Second)
	proxy.HoldCommands(prefix+"lease", -1) // the renewals get no answer
	// Released before the server's Close (cleanups run last first), which would wait for them.
	t.Cleanup(func() { proxy.HoldCommands("", 0); proxy.SendHeld() })
	must[*engine.Redis](t)(openLeased(waitCtx(t), t, srv.URL(), prefix, time.Second, &logBuffer{})) // B
	n := len(never.got())
	lostAtB := a.Err() != nil
	eventually(t, "A notices", func() bool { return a.Err() != nil })
	if m := len(never.got()); lostAtB == false || m > n {
		t.Fatalf("when B took the prefix A had noticed nothing (Err nil: %v), and called Settle %d more times before noticing", !lostAtB, m-n)
	}
}

// settlingForever opens process A's store on prefix (through url) with lease and starts a
// server on it whose engine never learns a settlement's outcome, so that it settles the same
// attempt again and again; it returns once A has tried twice.
func settlingForever(t *testing.T, url, prefix string, lease time.Duration) (*engine.Redis, *unsure) {
	t.Helper()
	a := must[*engine.Redis](t)(openLeased(context.Background(), t, url, prefix, lease, &logBuffer{}))
	never := &unsure{unknown: 1 << 30}
	s := startLogged(t, never, a, &logBuffer{})
	do(t, s, "POST", "/accounts", "", `{"id":"peer"}`)
	if st, b := do(t, s, "POST", "/accounts/peer/settlements", "k1", `{"amount":"500","scale":2}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "tried again", func() bool { return len(never.got()) >= 2 })
	return a, never
}
