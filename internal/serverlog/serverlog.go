// Package serverlog is the ErrorLog of a plain (no TLS) http.Server of a listening link, so
// that net/http's lines reach the link's logger at a level that fits them (over TLS,
// runtime/tlsopt's HandshakeLog classes the handshake failures too).
package serverlog

import (
	"log"
	"log/slog"
	"strings"
)

// New is an ErrorLog writing to l: a handler's panic (net/http recovered it and closed the
// connection), a bug, at ERROR; an Accept error, this host's trouble (out of file
// descriptors), at WARN; the others at DEBUG, as most are a peer's doing (a malformed
// request, a bad h2c preface) that anyone who can reach the port can repeat.
func New(l *slog.Logger) *log.Logger {
	return log.New(writer{l}, "", 0)
}

type writer struct{ log *slog.Logger }

func (w writer) Write(p []byte) (int, error) {
	Line(w.log, strings.TrimSpace(string(p)))
	return len(p), nil
}

// Line logs one of net/http's lines to l at the level New gives it (a TLS listener's
// handshake log hands it the lines that are not about handshakes).
func Line(l *slog.Logger, line string) {
	switch {
	case strings.HasPrefix(line, "http: panic serving"):
		l.Error(line)
	case strings.HasPrefix(line, "http: Accept error"):
		l.Warn(line)
	default:
		l.Debug(line)
	}
}
