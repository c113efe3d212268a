package connector

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Connectors A and B peered over ILP-over-HTTP (ilp-plugin-http options), each with
// mini-accounts children: alice at A (USD scale 2), bob at B (EUR scale 6). %MODE% is the
// RFC 35 mode of both peer accounts.
const httpConfigA = `
ilpAddress: test.a
backend: static
backendConfig: {base: EUR, rates: {USD: "1.25", EUR: "1"}}
spread: 0.01
minMessageWindow: 100
accounts:
  b:
    relation: peer
    plugin: ilp-plugin-http
    assetCode: EUR
    assetScale: 4
    balance: {minimum: "-1000000000000", maximum: "1000000000000"}
    options:
      mode: %MODE%
      incoming: {host: 127.0.0.1, port: %PHA%, staticToken: b-to-a}
      outgoing: {url: "http://127.0.0.1:%PHB%/accounts/a/ilp", staticToken: a-to-b, callbackUrl: "http://127.0.0.1:%PHA%/callback"}
  kids:
    relation: child
    plugin: ilp-plugin-mini-accounts
    assetCode: USD
    assetScale: 2
    options: {wsOpts: {host: 127.0.0.1, port: %PKA%}}
routes:
  - {targetPrefix: test.b, peerId: b}
`

const httpConfigB = `
ilpAddress: test.b
backend: static
backendConfig: {base: EUR, rates: {USD: "1.25", EUR: "1"}}
spread: 0
minMessageWindow: 100
accounts:
  a:
    relation: peer
    plugin: ilp-plugin-http
    assetCode: EUR
    assetScale: 4
    balance: {minimum: "-1000000000000", maximum: "1000000000000"}
    options:
      mode: %MODE%
      incoming: {host: 127.0.0.1, port: %PHB%, staticToken: a-to-b}
      outgoing: {url: "http://127.0.0.1:%PHA%/accounts/b/ilp", staticToken: b-to-a, callbackUrl: "http://127.0.0.1:%PHB%/callback"}
  kids:
    relation: child
    plugin: ilp-plugin-mini-accounts
    assetCode: EUR
    assetScale: 6
    options: {wsOpts: {host: 127.0.0.1, port: %PKB%}}
routes:
  - {targetPrefix: test.a, peerId: a}
`

func TestTwoConnectorsOverHTTP(t *testing.T) {
	for _, mode := range []string{"sync", "async"} {
		t.Run(mode, func(t *testing.T) {
			ports := map[string]int{"PHA": freePort(t), "PHB": freePort(t), "PKA": freePort(t), "PKB": freePort(t)}
			a := startBTP(t, strings.ReplaceAll(httpConfigA, "%MODE%", mode), ports)
			b := startBTP(t, strings.ReplaceAll(httpConfigB, "%MODE%", mode), ports)
			bobF := &fulfiller{}
			child(t, ports["PKB"], "bob", bobRemote(bobF))
			alice := child(t, ports["PKA"], "alice", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
				return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.a.kids.alice", "alice takes no payments")
			})
			waitFor(t, func() bool { return a.Connected("kids") && b.Connected("kids") && a.Connected("b") && b.Connected("a") })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			steps := []struct {
				name       string
				dest       string
				amount     uint64
				expiry     time.Duration
				wantCode   ilp.ErrorCode
				wantBy     ilp.Address
				wantAmount uint64
			}{
				// 100 cents × 79.2 = 7920 EUR units of scale 4 at B, × 100 at scale 6.
				{name: "fulfil", dest: "test.b.kids.bob", amount: 100, expiry: 10 * time.Second, wantAmount: 792000},
				{name: "reject from bob", dest: "test.b.kids.bob.reject", amount: 50, expiry: 10 * time.Second, wantCode: ilp.CodeFinalApplicationError, wantBy: "test.bob"},
				{name: "no route at B", dest: "test.b.nobody", amount: 1, expiry: 10 * time.Second, wantCode: ilp.CodeUnreachable, wantBy: "test.b"},
				{name: "timeout", dest: "test.b.kids.bob.slow", amount: 1, expiry: 600 * time.Millisecond, wantCode: ilp.CodeTransferTimedOut},
			}
			for _, s := range steps {
				pr := prepare(s.dest, s.amount, time.Now(), s.expiry)
				pr.Data = []byte(s.name)
				f, err := alice.Send(ctx, pr)
				if s.wantCode == "" {
					if err != nil || f == nil || f.Fulfillment != preimage {
						t.Fatalf("%s: want the Fulfill, got %v %v", s.name, f, err)
					}
					if got := bobF.lastPrepare(); got.Amount != s.wantAmount {
						t.Fatalf("%s: bob got %d, want %d", s.name, got.Amount, s.wantAmount)
					}
					continue
				}
				if r := rejectOf(t, err); r.Code != s.wantCode || (s.wantBy != "" && r.TriggeredBy != s.wantBy) {
					t.Fatalf("%s: got %s by %s %q, want %s by %s", s.name, r.Code, r.TriggeredBy, r.Message, s.wantCode, s.wantBy)
				}
			}
			bs, err := b.Balances(ctx)
			if err != nil || bs["a"].Balance != 7920 {
				t.Fatalf("B's balance of a: %+v %v, want 7920", bs["a"], err)
			}

			// B gone: A's HTTP link answers T01 (connection refused), naming the account.
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			defer ccancel()
			if err := b.Close(cctx); err != nil {
				t.Fatal(err)
			}
			_, err = alice.Send(ctx, prepare("test.b.kids.bob", 1, time.Now(), 10*time.Second))
			if r := rejectOf(t, err); r.Code != ilp.CodePeerUnreachable || r.TriggeredBy != "test.a" || !strings.Contains(r.Message, "account b") {
				t.Fatalf("B closed: got %s by %s %q", r.Code, r.TriggeredBy, r.Message)
			}
		})
	}
}

// asyncPeerConfig: account peer is an async ILP-over-HTTP link whose replies go to %PC%;
// %TOKEN% is our outgoing token (changing it reconnects the account); bob is a child.
const asyncPeerConfig = `
ilpAddress: test.a
backend: one-to-one
minMessageWindow: 100
accounts:
  peer:
    relation: peer
    plugin: ilp-plugin-http
    assetCode: USD
    assetScale: 2
    balance: {minimum: "-1000000", maximum: "1000000"}
    options:
      mode: async
      incoming: {host: 127.0.0.1, port: %PH%, staticToken: in}
      outgoing: {url: "http://127.0.0.1:%PC%/ilp", staticToken: %TOKEN%, callbackUrl: "http://127.0.0.1:%PH%/callback"}
  kids:
    relation: child
    plugin: ilp-plugin-mini-accounts
    assetCode: USD
    assetScale: 2
    options: {wsOpts: {host: 127.0.0.1, port: %PK%}}
`

// TestAsyncRetryAfterAReconnectIsNotHandledTwice: a peer's async Prepare sent again with the
// same Request-Id after the account reconnected (a reload changed its link) is a repeat, not a
// new Prepare: handled twice, it would pay bob and credit the peer twice.
func TestAsyncRetryAfterAReconnectIsNotHandledTwice(t *testing.T) {
	var mu sync.Mutex
	replies := map[string]int{} // Request-Id → replies delivered
	peer := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/callback" { // not the route broadcasts our CCP sends to /ilp
			mu.Lock()
			replies[r.Header.Get("Request-Id")]++
			mu.Unlock()
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer.Listener = ln
	peer.Start()
	t.Cleanup(peer.Close)
	replied := func(id string) int { mu.Lock(); defer mu.Unlock(); return replies[id] }
	ports := map[string]int{"PH": freePort(t), "PK": freePort(t), "PC": ln.Addr().(*net.TCPAddr).Port}
	doc := func(token string) string {
		d := strings.ReplaceAll(asyncPeerConfig, "%TOKEN%", token)
		for k, v := range ports {
			d = strings.ReplaceAll(d, "%"+k+"%", itoa(v))
		}
		return d
	}
	c := start(t, doc("one"), Options{})
	bobF := &fulfiller{}
	child(t, ports["PK"], "bob", bobRemote(bobF))
	waitFor(t, func() bool { return c.Connected("kids") })
	send := func(id, dest string) (int, error) {
		body, _ := prepare(dest, 100, time.Now(), 10*time.Second).MarshalBinary()
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+itoa(ports["PH"])+"/", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer in")
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Prefer", "respond-async")
		req.Header.Set("Callback-Url", "http://127.0.0.1:"+itoa(ports["PC"])+"/callback")
		req.Header.Set("Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	const x, marker = "0b6ef1f8-1d3c-4a53-9c8e-6f3d8a2e7b10", "5a0c2d7e-8b14-4f6a-a3e9-1c2b3d4e5f60"
	if st, err := send(x, "test.a.kids.bob"); st != http.StatusAccepted {
		t.Fatalf("first send: %d %v", st, err)
	}
	waitFor(t, func() bool { return replied(x) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Apply(ctx, mustConfig(t, doc("two"))); err != nil { // reconnects peer
		t.Fatal(err)
	}
	var st int
	waitFor(t, func() bool { st, _ = send(x, "test.a.kids.bob"); return st != 0 }) // once the new link listens
	// A Prepare after it: once its reply is back, a second handling of x, started before it,
	// has had its turn.
	if st, err := send(marker, "test.a.kids.bob.m"); st != http.StatusAccepted {
		t.Fatalf("marker: %d %v", st, err)
	}
	waitFor(t, func() bool { return replied(marker) == 1 })
	if st != http.StatusAccepted || bobF.n.Load() != 2 || replied(x) != 1 {
		t.Errorf("the same Request-Id after a reconnect: HTTP %d, bob got %d Prepares (marker included), x replied %d times; want 202, 2 and 1",
			st, bobF.n.Load(), replied(x))
	}
}
