package connector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
)

// holdConfig has one ILP-over-HTTP account that only sends (nothing listens), maxHoldTime %HOLD%.
const holdConfig = `
ilpAddress: test.c
backend: one-to-one
maxHoldTime: %HOLD%
accounts:
  peer:
    relation: peer
    plugin: ilp-plugin-http
    assetCode: USD
    assetScale: 2
    options:
      outgoing: {url: "http://127.0.0.1:1/ilp", staticToken: out}
`

// TestHTTPLinkFollowsMaxHoldTime: a reload that changes maxHoldTime keeps the ILP-over-HTTP
// link (no reconnect), and that running link's Close then waits as long as the drain before
// it: the new value, not the one the link was built with.
func TestHTTPLinkFollowsMaxHoldTime(t *testing.T) {
	doc := func(ms string) string { return strings.ReplaceAll(holdConfig, "%HOLD%", ms) }
	c := start(t, doc("30000"), Options{})
	acct := (*c.accounts.Load())["peer"]
	l, ok := acct.link.(*ilphttp.Link)
	if !ok {
		t.Fatalf("peer's link is a %T, want *ilphttp.Link", acct.link)
	}
	for _, tt := range []struct {
		ms   string
		want time.Duration
	}{
		{"30000", 30 * time.Second}, // as started
		{"5000", 5 * time.Second},
		{"60000", time.Minute},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Apply(ctx, mustConfig(t, doc(tt.ms)))
		cancel()
		if err != nil {
			t.Fatalf("maxHoldTime %s: %v", tt.ms, err)
		}
		if now := (*c.accounts.Load())["peer"]; now != acct {
			t.Fatalf("maxHoldTime %s: the account was rebuilt; the test needs the running link", tt.ms)
		}
		if got, drain := l.MaxHold(), c.settings.Load().maxHold; got != tt.want || drain != tt.want {
			t.Errorf("maxHoldTime %s: link's max hold %v, drain's %v; want %v for both", tt.ms, got, drain, tt.want)
		}
	}
}
