package ilphttp

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestMaxHoldFollowsCurrentMaxHold: with Options.CurrentMaxHold, the link reads the max hold
// time when it needs it (Close's bound, keepID's cap), so a connector reload that changes it
// reaches a running link; the sweep after Close still waits for the longest hold an id was
// kept with. Without it (or while it reads 0), the max hold time is DefaultMaxHold.
func TestMaxHoldFollowsCurrentMaxHold(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	out := &OutgoingOptions{URL: "http://127.0.0.1:1/", Auth: Auth{Token: "x"}}
	var running atomic.Int64 // the connector's max hold time in force
	current := func() time.Duration { return time.Duration(running.Load()) }
	for _, tc := range []struct {
		name        string
		opts        Options
		set         []time.Duration // running values, in turn; keepID is called under each
		wantHold    time.Duration   // MaxHold after the last
		wantLongest time.Duration
	}{
		{"fixed CurrentMaxHold", Options{CurrentMaxHold: func() time.Duration { return 10 * time.Second }},
			[]time.Duration{time.Minute}, 10 * time.Second, 10 * time.Second},
		{"no CurrentMaxHold: the default", Options{}, []time.Duration{time.Minute}, DefaultMaxHold, DefaultMaxHold},
		{"raised by a reload", Options{CurrentMaxHold: current},
			[]time.Duration{10 * time.Second, time.Minute}, time.Minute, time.Minute},
		{"lowered by a reload: ids kept longer before still counted", Options{CurrentMaxHold: current},
			[]time.Duration{time.Minute, 10 * time.Second}, 10 * time.Second, time.Minute},
		{"running value 0: the default", Options{CurrentMaxHold: current}, []time.Duration{0}, DefaultMaxHold, DefaultMaxHold},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Account, o.Address, o.Outgoing = "peer", self, out
			l, err := New(&o)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tc.set {
				running.Store(int64(d))
				// A far expiry is capped at the hold time in force when the id is taken.
				if got, want := l.keepID(now.Add(time.Hour), now), now.Add(l.MaxHold()+replyMinWindow); !got.Equal(want) {
					t.Errorf("running %v: id kept until now%+v, want now%+v", d, got.Sub(now), want.Sub(now))
				}
			}
			if got := l.MaxHold(); got != tc.wantHold {
				t.Errorf("MaxHold = %v, want %v", got, tc.wantHold)
			}
			if got := l.longestHold(); got != tc.wantLongest {
				t.Errorf("longest hold = %v, want %v", got, tc.wantLongest)
			}
		})
	}
}
