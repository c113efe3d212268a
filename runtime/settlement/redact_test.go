package settlement

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// TestCheckEngineURLNeverShowsThePassword: a password in an engine URL (sent as basic auth) is
// redacted in CheckEngineURL's errors, also when it makes the URL unparsable (an unescaped /
// or #, which url.Parse's own message would quote as a port).
func TestCheckEngineURLNeverShowsThePassword(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"http://admin:s3cr3tpw/x@engine:3000", "not a URL"},
		{"http://admin:s3cr3tpw#x@engine:3000", "not a URL"},
		{"ftp://admin:s3cr3tpw@engine:3000", `"ftp://admin:xxxxx@engine:3000": want http:// or https://`},
		{"http://admin:s3cr3tpw@engine:3000/?q=1", `"http://admin:xxxxx@engine:3000/?q=1": a base URL has no query`},
	} {
		err := CheckEngineURL(tt.url)
		if err == nil || strings.Contains(err.Error(), "s3cr3tpw") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckEngineURL(%q) = %v; want an error with %q and no password", tt.url, err, tt.want)
		}
	}
}

// TestSettlerLogsNoEnginePassword: the record left for an account's previous engine is resent
// and then forgotten by an operator; neither log line shows that engine's password.
func TestSettlerLogsNoEnginePassword(t *testing.T) {
	ctx := context.Background()
	var logs testlog.Buffer
	st := store.NewMemory()
	if err := st.PutKey(ctx, outKey("k1", "http://admin:s3cr3tpw@127.0.0.1:1", "bob"), []byte("100")); err != nil {
		t.Fatal(err)
	}
	eng := newTestEngine(t, nil)
	s := New(Options{Store: st, Retry: fastRetry, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	t.Cleanup(s.Close)
	if err := s.Update([]Account{{ID: "bob", EngineURL: eng.URL}}); err != nil {
		t.Fatal(err)
	}
	s.Start(ctx)
	waitFor(t, "the old record resent", func() bool { return strings.Contains(logs.String(), "previous engine") })
	if _, err := s.Forget(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "s3cr3tpw") {
			t.Errorf("a log line shows the engine's password: %s", line)
		}
	}
}
