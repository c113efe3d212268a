package ilphttp

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestWarnLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var w warnLimiter
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
		{"same kind again", "refused", warnEvery - time.Nanosecond, false, 0},
		{"after warnEvery, with the count", "refused", warnEvery, true, 2},
		{"count restarts", "refused", 2 * warnEvery, true, 0},
	} {
		ok, n := w.allow(st.kind, t0.Add(st.at))
		if ok != st.ok || n != st.wantSuppressed {
			t.Fatalf("%s: allow = %v, %d; want %v, %d", st.name, ok, n, st.ok, st.wantSuppressed)
		}
	}
}

// TestSendWarnRateLimited: with the peer down, every packet fails the same way; the log gets
// one WARN per kind (clock stopped), and a DEBUG line for each packet.
func TestSendWarnRateLimited(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	var buf bytes.Buffer
	t0 := time.Now()
	l, err := New(&Options{Account: "p", Address: self, Now: func() time.Time { return t0 },
		Logger:   slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Outgoing: &OutgoingOptions{URL: "http://" + addr + "/ilp", Auth: Auth{Token: "t"}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Start(context.Background(), nil)
	defer l.Close()
	const n = 50
	for range n {
		_, _ = l.Send(context.Background(), testPrepare(5*time.Second))
	}
	warns := strings.Count(buf.String(), "level=WARN")
	debugs := strings.Count(buf.String(), "level=DEBUG msg=\"ILP-over-HTTP request to the peer failed\"")
	if warns != 1 || debugs != n-1 {
		t.Fatalf("%d WARN and %d DEBUG lines for %d packets to a peer that is down; want 1 and %d:\n%s", warns, debugs, n, n-1, buf.String())
	}
}
