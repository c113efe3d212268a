package ilphttp

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

// TestPlainServerErrorLog: the plain (no incoming.tls) server's ErrorLog logs net/http's lines
// at their level (internal/serverlog: a handler's panic at ERROR, an Accept error at WARN, the
// rest at DEBUG), as the TLS server's does (tlsopt.HandshakeLog), where DEBUG for all hid a bug.
func TestPlainServerErrorLog(t *testing.T) {
	var buf testlog.Buffer
	l, err := New(&Options{Account: "peer", Address: self, Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Incoming: &IncomingOptions{Host: "127.0.0.1", Auth: Auth{Token: "t"}}})
	if err != nil {
		t.Fatal(err)
	}
	el := l.newServer().ErrorLog
	el.Print("http: panic serving 127.0.0.1:4242: runtime error: index out of range [1] with length 1")
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "account=peer") || !strings.Contains(out, "panic serving") {
		t.Errorf("a handler's panic logged %q; want it at ERROR with the account", out)
	}
}
