package btp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// closer is a started server.
type closer interface {
	Addr() net.Addr
	Close() error
}

// startWithClock starts s, a listener built and not started whose wsServer is srv, with its
// auth log reading the time from now, and closes it when the test ends.
func startWithClock[S interface {
	closer
	Start(context.Context, ilp.Handler) error
}](t *testing.T, s S, srv *wsServer, now func() time.Time) S {
	t.Helper()
	srv.now = now
	if err := s.Start(context.Background(), echo); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// authAttempt sends one auth frame with these entries on a fresh connection and returns the
// BTP Error the server answers with, or nil; it reads until the server closes.
func authAttempt(t *testing.T, s closer, ps ...ProtocolData) *Frame {
	t.Helper()
	ws := rawDial(t, s.Addr())
	writeFrame(t, ws, &Frame{Type: TypeMessage, RequestID: 1, Protocols: ps})
	var answer *Frame
	for range 3 { // an F00 Error, then the close
		f, err := readFrame(t, ws)
		if err != nil {
			break
		}
		answer = f
	}
	return answer
}

func authEntries(username, token string) []ProtocolData {
	ps := []ProtocolData{{Name: "auth", Data: []byte{}}}
	if username != "" {
		ps = append(ps, ProtocolData{Name: "auth_username", ContentType: ContentText, Data: []byte(username)})
	}
	return append(ps, ProtocolData{Name: "auth_token", ContentType: ContentText, Data: []byte(token)})
}

// notAuthenticated returns the log records about failed authentications, by level.
func notAuthenticated(t *testing.T, buf *testlog.Buffer) (info, debug []map[string]any) {
	t.Helper()
	for _, r := range logRecords(t, buf) {
		if msg, _ := r["msg"].(string); !strings.HasPrefix(msg, "btp: connection not authenticated") {
			continue
		}
		switch r["level"] {
		case "INFO":
			info = append(info, r)
		case "DEBUG":
			debug = append(debug, r)
		}
	}
	return info, debug
}

// TestAuthFailureLogBounded: anyone who can reach a mini-accounts listener (no credentials
// needed) sends one auth frame whose auth_username is ~60 KB; neither the log nor the BTP
// Error sent back may carry it whole. (Found by a security review as
// TestAdvUnauthenticatedClientBloatsLog.)
func TestAuthFailureLogBounded(t *testing.T) {
	var buf testlog.Buffer
	srv := startChildServer(t, echo, func(o *ChildServerOptions) {
		o.Common.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	for _, user := range []string{
		strings.Repeat("x.", 30000),    // a '.' makes it refused: "must be one address segment"
		strings.Repeat("é", 30000),     // no valid address: cut between characters
		strings.Repeat("x", 60000),     // too long for an address
		"Ab" + strings.Repeat("-", 41), // shaped like a token hash
	} {
		answer := authAttempt(t, srv, authEntries(user, "t")...)
		if answer == nil || answer.Type != TypeError || answer.Code != "F00" {
			t.Fatalf("username of %d bytes: answer %+v; want an F00 BTP Error", len(user), answer)
		}
		if len(answer.ErrorData) > 512 || !utf8.Valid(answer.ErrorData) {
			t.Errorf("username of %d bytes: the BTP Error's data is %d bytes (valid UTF-8: %v): %.100q",
				len(user), len(answer.ErrorData), utf8.Valid(answer.ErrorData), answer.ErrorData)
		}
	}
	const attempts = 4
	waitFor(t, "a log line per attempt", func() bool {
		info, debug := notAuthenticated(t, &buf)
		return len(info)+len(debug) == attempts
	})
	for line := range strings.Lines(buf.String()) {
		if len(line) > 1024 {
			t.Errorf("log line of %d bytes: %.200s", len(line), line)
		}
	}
}

// TestAuthFailureLogLimited: failed authentications, which anyone who can reach a listener can
// repeat without end, are logged at INFO once per authLogEvery and kind, with the count of those
// held back; the others at DEBUG.
func TestAuthFailureLogLimited(t *testing.T) {
	for _, tt := range []struct {
		name  string
		start func(t *testing.T, log *slog.Logger, now func() time.Time) closer
		auth  []ProtocolData
	}{
		{"peer server, wrong secret", func(t *testing.T, log *slog.Logger, now func() time.Time) closer {
			s, err := NewPeerServer(PeerServerOptions{Host: "127.0.0.1", Secret: "s3cret", Common: Common{Logger: log}})
			if err != nil {
				t.Fatal(err)
			}
			return startWithClock(t, s, &s.srv, now)
		}, authEntries("", "wrong")},
		{"child server, refused username", func(t *testing.T, log *slog.Logger, now func() time.Time) closer {
			s, err := NewChildServer(ChildServerOptions{Host: "127.0.0.1", AccountAddress: func() ilp.Address { return acct },
				Common: Common{Logger: log}})
			if err != nil {
				t.Fatal(err)
			}
			return startWithClock(t, s, &s.srv, now)
		}, authEntries("a.b", "t")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf testlog.Buffer
			var offset atomic.Int64 // the test's clock: no wall-clock dependence
			t0 := time.Unix(1_700_000_000, 0)
			now := func() time.Time { return t0.Add(time.Duration(offset.Load())) }
			srv := tt.start(t, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), now)
			const burst = 5
			attempt := func(total int) {
				t.Helper()
				if answer := authAttempt(t, srv, tt.auth...); answer == nil || answer.Type != TypeError {
					t.Fatalf("answer %+v; want a BTP Error", answer)
				}
				waitFor(t, "the attempt's log line", func() bool {
					info, debug := notAuthenticated(t, &buf)
					return len(info)+len(debug) == total
				})
			}
			for i := range burst {
				attempt(i + 1)
			}
			info, debug := notAuthenticated(t, &buf)
			if len(info) != 1 || len(debug) != burst-1 {
				t.Fatalf("%d failures within authLogEvery: %d INFO and %d DEBUG lines; want 1 and %d", burst, len(info), len(debug), burst-1)
			}
			if info[0]["kind"] != authRefused {
				t.Errorf("INFO line kind = %v, want %q", info[0]["kind"], authRefused)
			}
			offset.Store(int64(authLogEvery))
			attempt(burst + 1)
			info, _ = notAuthenticated(t, &buf)
			if len(info) != 2 || info[1]["suppressed"] != float64(burst-1) {
				t.Fatalf("after authLogEvery: INFO lines %v; want a second one with suppressed=%d", info, burst-1)
			}
			// Two more held back: their count is logged when the server closes.
			attempt(burst + 2)
			attempt(burst + 3)
			srv.Close()
			var flushed []any
			for _, r := range logRecords(t, &buf) {
				if r["msg"] == "btp: more connections not authenticated since the last line" {
					flushed = append(flushed, r["suppressed"])
				}
			}
			if len(flushed) != 1 || flushed[0] != float64(2) {
				t.Errorf("at close: counts logged %v; want one line with suppressed=2", flushed)
			}
		})
	}
}

func TestQuotePeer(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"alice", `"alice"`},
		{strings.Repeat("a", maxPeerText), `"` + strings.Repeat("a", maxPeerText) + `"`},
		{strings.Repeat("a", maxPeerText+1), `"` + strings.Repeat("a", maxPeerText) + `"… (65 bytes)`},
		{"a" + strings.Repeat("é", 40), `"a` + strings.Repeat("é", 31) + `"… (81 bytes)`}, // not cut inside é
	} {
		if got := quotePeer(tt.in); got != tt.want {
			t.Errorf("quotePeer(%.20q…) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// downTokens is a TokenStore that cannot answer.
type downTokens struct{}

func (downTokens) Claim(context.Context, string, [32]byte) ([32]byte, error) {
	return [32]byte{}, errors.New("store unreachable")
}

// TestTokenStoreFailureLoggedSparingly: while the token store is away, every child not seen
// since the start is refused at each attempt; the ERROR saying why is written once per
// authLogEvery, the others at DEBUG, and their count at ERROR when the server closes.
func TestTokenStoreFailureLoggedSparingly(t *testing.T) {
	var buf testlog.Buffer
	s, err := NewChildServer(ChildServerOptions{Host: "127.0.0.1", AccountAddress: func() ilp.Address { return acct },
		Tokens: downTokens{}, Common: Common{Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	startWithClock(t, s, &s.srv, func() time.Time { return t0 })
	const burst = 4
	for i := range burst {
		if answer := authAttempt(t, s, authEntries(fmt.Sprintf("kid%d", i), "t")...); answer == nil || answer.Type != TypeError {
			t.Fatalf("answer %+v; want a BTP Error", answer)
		}
	}
	var levels []any
	waitFor(t, "a store line per attempt", func() bool {
		levels = levels[:0]
		for _, r := range logRecords(t, &buf) {
			if msg, _ := r["msg"].(string); strings.HasPrefix(msg, "btp: cannot check a child's token") {
				levels = append(levels, r["level"])
			}
		}
		return len(levels) == burst
	})
	if want := []any{"ERROR", "DEBUG", "DEBUG", "DEBUG"}; !reflect.DeepEqual(levels, want) {
		t.Errorf("store failure lines at levels %v; want %v", levels, want)
	}
	s.Close()
	var flushed []map[string]any
	for _, r := range logRecords(t, &buf) {
		if msg, _ := r["msg"].(string); strings.HasPrefix(msg, "btp: more children refused") {
			flushed = append(flushed, r)
		}
	}
	if len(flushed) != 1 || flushed[0]["level"] != "ERROR" || flushed[0]["suppressed"] != float64(burst-1) ||
		!strings.Contains(flushed[0]["msg"].(string), "token store could not check") {
		t.Errorf("at close: %v; want one ERROR counting the %d children refused for the store", flushed, burst-1)
	}
}
