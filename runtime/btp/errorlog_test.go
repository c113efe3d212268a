package btp

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

// TestPlainListenerErrorLog: a plain (no tls) BTP listener's net/http lines go to the link's
// logger, with its account, at their level (internal/serverlog: a handler's panic at ERROR),
// not to the process's standard logger, where a panic was an INFO line without the account.
func TestPlainListenerErrorLog(t *testing.T) {
	var buf testlog.Buffer
	s := startServer(t, 0, echo, func(o *PeerServerOptions) {
		o.Common.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("account", "alice")
	})
	el := s.srv.srv.ErrorLog
	if el == nil {
		t.Fatal("the listener has no ErrorLog: net/http's lines go to the standard logger, without the account, a panic at INFO")
	}
	el.Print("http: panic serving 127.0.0.1:4242: runtime error: index out of range [1] with length 1")
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "account=alice") || !strings.Contains(out, "panic serving") {
		t.Errorf("a handler's panic logged %q; want it at ERROR with the account", out)
	}
}
