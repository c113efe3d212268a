package ilphttp

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

// TestPlainServerErrorLog: the plain (no incoming.tls) server's ErrorLog logs a handler's panic
// at ERROR and an Accept error at WARN, as the TLS server's does (tlsopt.HandshakeLog), where
// DEBUG would hide a bug; its other lines (a peer's malformed request) stay at DEBUG.
func TestPlainServerErrorLog(t *testing.T) {
	var buf testlog.Buffer
	l, err := New(&Options{Account: "peer", Address: self, Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Incoming: &IncomingOptions{Host: "127.0.0.1", Auth: Auth{Token: "t"}}})
	if err != nil {
		t.Fatal(err)
	}
	el := l.newServer().ErrorLog
	for _, tc := range []struct{ line, level string }{
		{"http: panic serving 127.0.0.1:4242: runtime error: index out of range [1] with length 1", "ERROR"},
		{"http: Accept error: accept tcp 127.0.0.1:7770: accept4: too many open files; retrying in 5ms", "WARN"},
		{"http2: server: error reading preface from client 127.0.0.1:4242: bogus greeting", "DEBUG"},
	} {
		from := len(buf.String())
		el.Print(tc.line)
		out := buf.String()[from:]
		if strings.Count(out, "level=") != 1 || !strings.Contains(out, "level="+tc.level) || !strings.Contains(out, strings.TrimPrefix(tc.line, "http: ")) {
			t.Errorf("%q logged %q; want it whole, once, at %s", tc.line, out, tc.level)
		}
	}
}
