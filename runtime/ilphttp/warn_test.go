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
