package serverlog

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

// TestNew: a handler's panic is logged at ERROR, an Accept error at WARN, net/http's other
// lines (a peer's malformed request, a bad h2c preface) at DEBUG, each whole and once.
func TestNew(t *testing.T) {
	var buf testlog.Buffer
	el := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for _, tc := range []struct{ line, level string }{
		{"http: panic serving 127.0.0.1:4242: runtime error: index out of range [1] with length 1", "ERROR"},
		{"http: Accept error: accept tcp 127.0.0.1:7770: accept4: too many open files; retrying in 5ms", "WARN"},
		{"http2: server: error reading preface from client 127.0.0.1:4242: bogus greeting", "DEBUG"},
		{"http: superfluous response.WriteHeader call from x.y (z.go:1)", "DEBUG"},
	} {
		from := len(buf.String())
		el.Print(tc.line)
		out := buf.String()[from:]
		if strings.Count(out, "level=") != 1 || !strings.Contains(out, "level="+tc.level) || !strings.Contains(out, strings.TrimPrefix(tc.line, "http: ")) {
			t.Errorf("%q logged %q; want it whole, once, at %s", tc.line, out, tc.level)
		}
	}
}
