package connector

import (
	"bytes"
	"cmp"
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

// TestAsyncRetryIsNotHandledTwice: a peer's async Prepare sent again with the same Request-Id
// (its 202 lost) is a repeat, not a new Prepare, also when a reload reconnected the account
// meanwhile, or removed it and added it back: handled twice, it would pay bob and credit the
// peer twice.
func TestAsyncRetryIsNotHandledTwice(t *testing.T) {
	for _, tt := range []struct {
		name    string
		reloads []string // peer's outgoing token per reload; "" removes the account
	}{
		{"after a reconnect", []string{"two"}},
		{"after a removal and an addition", []string{"", "one"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startAsyncPeer(t)
			const x, marker = "0b6ef1f8-1d3c-4a53-9c8e-6f3d8a2e7b10", "5a0c2d7e-8b14-4f6a-a3e9-1c2b3d4e5f60"
			if st, err := p.send(x, "test.a.kids.bob"); st != http.StatusAccepted {
				t.Fatalf("first send: %d %v", st, err)
			}
			waitFor(t, func() bool { return p.replied(x) == 1 })
			for _, token := range tt.reloads {
				p.apply(t, token)
			}
			var st int
			waitFor(t, func() bool { st, _ = p.send(x, "test.a.kids.bob"); return st != 0 }) // once the new link listens
			// A Prepare after it: once its reply is back, a second handling of x, started
			// before it, has had its turn.
			if st, err := p.send(marker, "test.a.kids.bob.m"); st != http.StatusAccepted {
				t.Fatalf("marker: %d %v", st, err)
			}
			waitFor(t, func() bool { return p.replied(marker) == 1 })
			if st != http.StatusAccepted || p.bob.n.Load() != 2 || p.replied(x) != 1 {
				t.Errorf("the same Request-Id: HTTP %d, bob got %d Prepares (marker included), x replied %d times; want 202, 2 and 1",
					st, p.bob.n.Load(), p.replied(x))
			}
		})
	}
}

// asyncPeer is a connector of asyncPeerConfig, the peer's callback server and bob.
type asyncPeer struct {
	c     *Connector
	ports map[string]int
	bob   *fulfiller
	mu    sync.Mutex
	reply map[string]int // Request-Id → replies delivered to the callback
}

func startAsyncPeer(t *testing.T) *asyncPeer {
	p := &asyncPeer{bob: &fulfiller{}, reply: map[string]int{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/callback" { // not the route broadcasts our CCP sends to /ilp
			p.mu.Lock()
			p.reply[r.Header.Get("Request-Id")]++
			p.mu.Unlock()
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	p.ports = map[string]int{"PH": freePort(t), "PK": freePort(t), "PC": ln.Addr().(*net.TCPAddr).Port}
	p.c = start(t, p.doc("one"), Options{})
	child(t, p.ports["PK"], "bob", bobRemote(p.bob))
	waitFor(t, func() bool { return p.c.Connected("kids") })
	return p
}

// doc is asyncPeerConfig with the peer's outgoing token, or without the peer for "".
func (p *asyncPeer) doc(token string) string {
	d := strings.ReplaceAll(asyncPeerConfig, "%TOKEN%", cmp.Or(token, "x"))
	if token == "" {
		d = d[:strings.Index(d, "  peer:\n")] + d[strings.Index(d, "  kids:\n"):]
	}
	for k, v := range p.ports {
		d = strings.ReplaceAll(d, "%"+k+"%", itoa(v))
	}
	return d
}

func (p *asyncPeer) apply(t *testing.T, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.c.Apply(ctx, mustConfig(t, p.doc(token))); err != nil {
		t.Fatal(err)
	}
}

func (p *asyncPeer) replied(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reply[id]
}

// send POSTs a Prepare to the peer account as its peer would, asynchronously.
func (p *asyncPeer) send(id, dest string) (int, error) {
	body, _ := prepare(dest, 100, time.Now(), 10*time.Second).MarshalBinary()
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+itoa(p.ports["PH"])+"/", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer in")
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Prefer", "respond-async")
	req.Header.Set("Callback-Url", "http://127.0.0.1:"+itoa(p.ports["PC"])+"/callback")
	req.Header.Set("Request-Id", id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
