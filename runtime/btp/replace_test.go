package btp

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

func TestReplaceWarningRateLimited(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	// at: when each replacement happens, from t0; want: the suppressed count of each warning;
	// flushed: the count that flush (at Close) logs, 0 for no line.
	tests := []struct {
		name    string
		at      []time.Duration
		want    []float64
		flushed float64
	}{
		{"one", []time.Duration{0}, []float64{0}, 0},
		{"a burst is one line, its count at close", []time.Duration{0, time.Millisecond, 150 * time.Millisecond, 9 * time.Second}, []float64{0}, 3},
		{"the next line counts the quiet ones", []time.Duration{0, 1, 2, 3, replaceWarnEvery}, []float64{0, 3}, 0},
		{"every 10 s at most", []time.Duration{0, replaceWarnEvery - 1, replaceWarnEvery, 2*replaceWarnEvery - 1, 2 * replaceWarnEvery}, []float64{0, 1, 1}, 0},
	}
	for _, tt := range tests {
		var buf testlog.Buffer
		var now time.Time
		w := newReplaceWarner(func() time.Time { return now })
		for _, d := range tt.at {
			now = t0.Add(d)
			w.replaced(jsonLogger(&buf), "127.0.0.1:1", "127.0.0.1:2")
		}
		var got []float64
		for _, r := range logRecords(t, &buf) {
			if r["level"] != "WARN" || r["account"] != "alice" || r["old_remote"] != "127.0.0.1:1" || r["new_remote"] != "127.0.0.1:2" {
				t.Errorf("%s: record %v; want a WARN with the account and both remotes", tt.name, r)
			}
			got = append(got, r["suppressed"].(float64))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: warnings with suppressed counts %v; want %v", tt.name, got, tt.want)
		}
		var fbuf testlog.Buffer
		w.flush(jsonLogger(&fbuf))
		w.flush(jsonLogger(&fbuf)) // a second Close logs nothing more
		var flushed []float64
		for _, r := range logRecords(t, &fbuf) {
			if r["level"] != "WARN" || r["account"] != "alice" {
				t.Errorf("%s: flushed record %v; want a WARN with the account", tt.name, r)
			}
			flushed = append(flushed, r["suppressed"].(float64))
		}
		var want []float64 // no line when nothing was suppressed
		if tt.flushed > 0 {
			want = []float64{tt.flushed}
		}
		if !slices.Equal(flushed, want) {
			t.Errorf("%s: flush logged suppressed counts %v; want %v", tt.name, flushed, want)
		}
	}
}

// TestReplacedConnectionWarns runs the real thing: a second client with the same secret
// replaces the first, and the server says so at WARN with both clients' addresses.
func TestReplacedConnectionWarns(t *testing.T) {
	var buf testlog.Buffer
	srv := startServer(t, 0, echo, func(o *PeerServerOptions) { o.Logger = jsonLogger(&buf) })
	a := startClient(t, serverURL(srv, "", "s3cret"), echo, func(o *ClientOptions) { o.ReconnectInterval = time.Hour })
	startClient(t, serverURL(srv, "", "s3cret"), echo, nil)
	waitFor(t, "the first client to be dropped", func() bool { return !a.Connected() })
	var warns []map[string]any
	for _, r := range logRecords(t, &buf) {
		if r["level"] == "WARN" {
			warns = append(warns, r)
		}
	}
	if len(warns) != 1 {
		t.Fatalf("warnings %v; want one", warns)
	}
	old, cur := warns[0]["old_remote"], warns[0]["new_remote"]
	if old == "" || cur == "" || old == cur {
		t.Errorf("warning %v; want the two clients' distinct addresses", warns[0])
	}

}

// TestReplacedClientBacksOff: two clients with one listener's credentials replace each other;
// a connection lost as soon as made does not reset the backoff, so the waits grow instead of
// a reconnect every 100 ms (two log lines each, and the routes withdrawn each time).
func TestReplacedClientBacksOff(t *testing.T) {
	srv := startServer(t, 0, echo, nil)
	a := newClient(t, serverURL(srv, "", "s3cret"), func(o *ClientOptions) { o.ReconnectInterval = 0 }) // the default backoff
	const rounds = 6
	var waits []time.Duration
	done := make(chan struct{})
	a.sleep = func(_ context.Context, d time.Duration) bool { // run's goroutine only
		waits = append(waits, d)
		if len(waits) == rounds {
			close(done)
			return false // ends run
		}
		return true // reconnect at once: the other client is replaced, and replaces a again
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Start(ctx, echo); err != nil {
		t.Fatal(err)
	}
	startClient(t, serverURL(srv, "", "s3cret"), echo, nil) // the other one: real waits
	select {
	case <-done:
	case <-time.After(time.Minute): // bounds a hung test; no speed is measured
		t.Fatalf("only %d reconnects of the replaced client", len(waits))
	}
	a.core.wg.Wait() // run has returned: waits is ours
	if last := waits[len(waits)-1]; last < time.Second {
		t.Errorf("waits %v: the backoff did not grow for connections lost as soon as made", waits)
	}
}
