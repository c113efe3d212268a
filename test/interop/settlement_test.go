package interop

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
)

// Settlement (RFC 38) across two `ilpfleet connector`s peered over BTP, with engines of two
// makes on the two ends of the peer link: on A, ilpfleet's Go mock engine (runtime/settlement/
// engine/mock, in this test process); on B, js/settlement-engine.js, built on the real
// ilp-settlement-core from npm and speaking the Go mock's message protocol. A settlement
// crosses: A's settler → Go engine (POST /accounts/b/settlements) → A's /accounts/b/messages
// → peer.settle Prepare → B → JS engine (POST /accounts/a/messages) → B's
// /accounts/a/settlements; and back the other way for B's debts.
//
// The payments are single Prepares of exact amounts from Go BTP children (alice on A, bob on
// B), not STREAM: STREAM's rate probes reserve the peer balance for a moment and its packets
// are not fixed in advance, and either could start a settlement at a balance the test cannot
// predict.

const (
	settleAsset     = "EUR"
	settleScale     = 4        // every account: 10000 units = 1 EUR
	settleThreshold = "-10000" // a settlement is due once the peer is owed more than 1 EUR
	engineDecimals  = 2        // both engines settle whole cents, rounded down
	childPreimage   = "ilpfleet interop settlement test"
)

// TestSettlementGoMockAndJSSettlementCore: A pays B until A owes more than the threshold; A's
// Go engine settles and B's JS engine credits. Then B pays A until B owes, B's JS engine
// settles and A's Go engine credits.
func TestSettlementGoMockAndJSSettlementCore(t *testing.T) {
	needIlpfleet(t)
	needNode(t)
	n := startSettledPair(t)

	// A → B. Rate 1 (same asset and scale, spread 0): each hop forwards the amount unchanged.
	// One payment: A.b = -7920, above the threshold, nothing to settle.
	n.pay(t, n.alice, "test.b.bob.bob", 7920)
	n.waitBalances(t, map[string]string{"A.b": "-7920", "B.a": "7920"})
	// Two: A.b = -15840 < -10000. A's settler raises A.b to settleTo 0 and asks the Go engine
	// to settle {amount 15840, scale 4} = 1.5840 EUR; the Go mock sends 1.58 (2 decimals,
	// rounded down) and keeps 0.0040 queued. The JS engine credits 1.58 to B as
	// {amount "158", scale 2}; B takes 15800 units off B.a: 15840 − 15800 = 40.
	n.pay(t, n.alice, "test.b.bob.bob", 7920)
	n.waitBalances(t, map[string]string{"A.b": "0", "B.a": "40", "B.bob": "-15840"})
	n.js.waitEvent(t, "credit", map[string]string{"account": "a", "amount": "1.58"})
	n.waitGoQueued(t, "b", "0.004")

	// B → A. B.a = 40 − 7923 = −7883: nothing due. Then B.a = 40 − 15846 = −15806 < −10000:
	// B's settler raises B.a to 0 and POSTs {amount 15806, scale 4} with an Idempotency-Key to
	// the JS engine, which settles 1.5806 → 1.58 (settlement-core keeps the 0.0006 leftover).
	// A's Go engine credits 1.58 at scale 4: A.b = 15846 − 15800 = 46.
	n.pay(t, n.bob, "test.a.alice.alice", 7923)
	n.waitBalances(t, map[string]string{"A.b": "7923", "B.a": "-7883"})
	n.pay(t, n.bob, "test.a.alice.alice", 7923)
	// The children: alice paid 15840 and got 15846 (A.alice = −6), bob the other way round.
	n.waitBalances(t, map[string]string{"A.b": "46", "B.a": "0", "A.alice": "-6", "B.bob": "6"})
	n.js.waitEvent(t, "settle", map[string]string{"account": "a", "amount": "1.5806", "settled": "1.58"})

	// A → B again, which also shows that settlement-core read B's answer to its first credit
	// (201, {amount "15800", scale 4}) as all of 1.58 credited: a leftover it thought it had
	// would be added to this credit. A.b = 46 − 15840 = −15794: A settles 1.5794, the Go mock
	// adds its 0.0040 leftover, sends 1.58 of 1.5834 and keeps 0.0034. B.a = 0 + 15840 −
	// 15800 = 40.
	n.pay(t, n.alice, "test.b.bob.bob", 7920)
	n.pay(t, n.alice, "test.b.bob.bob", 7920)
	n.waitBalances(t, map[string]string{"A.b": "0", "B.a": "40"})
	n.js.waitEvent(t, "credit", map[string]string{"account": "a", "amount": "1.58"})
	n.waitGoQueued(t, "b", "0.0034")
}

// settledPair is the running setup of the settlement test.
type settledPair struct {
	a, b       *connector
	alice, bob *btp.Client
	js         *jsEngine
	goStore    *engine.Memory
	payments   int // numbers each payment's data: two equal Prepares are one packet to the dedupe cache
}

// startSettledPair starts the JS engine (B's) and the Go engine (A's), then B and A, and
// connects the children.
func startSettledPair(t *testing.T) *settledPair {
	t.Helper()
	n := &settledPair{}
	apiA, apiB, jsPort := freePort(t), freePort(t), freePort(t)
	n.js = startJSEngine(t, jsPort, fmt.Sprintf("http://127.0.0.1:%d", apiB))
	goURL := n.startGoEngine(t, fmt.Sprintf("http://127.0.0.1:%d", apiA))

	peerPort := freePort(t)
	balance := func() map[string]string {
		return map[string]string{"minimum": "-" + bigBalance, "maximum": bigBalance, "settleThreshold": settleThreshold, "settleTo": "0"}
	}
	aOnB := account{id: "a", relation: "peer", plugin: "ilp-plugin-btp", assetCode: settleAsset, assetScale: settleScale,
		listenPort: peerPort, secret: peerSecret,
		extra: map[string]any{"balance": balance(), "settlementEngine": map[string]string{"url": fmt.Sprintf("http://127.0.0.1:%d", jsPort)}}}
	bOnA := account{id: "b", relation: "peer", plugin: "ilp-plugin-btp", assetCode: settleAsset, assetScale: settleScale,
		server: fmt.Sprintf("btp+ws://a:%s@127.0.0.1:%d", peerSecret, peerPort),
		extra:  map[string]any{"balance": balance(), "settlementEngine": map[string]string{"url": goURL}}}
	alice := account{id: "alice", relation: "child", plugin: "ilp-plugin-mini-accounts", assetCode: settleAsset, assetScale: settleScale, listenPort: freePort(t)}
	bob := account{id: "bob", relation: "child", plugin: "ilp-plugin-mini-accounts", assetCode: settleAsset, assetScale: settleScale, listenPort: freePort(t)}

	n.b = startConnectorEnv(t, ilpfleet, "test.b", []account{aOnB, bob}, [2]string{"test.a", "a"},
		[]int{aOnB.listenPort, bob.listenPort, apiB}, settlementVars(apiB))
	n.a = startConnectorEnv(t, ilpfleet, "test.a", []account{alice, bOnA}, [2]string{"test.b", "b"},
		[]int{alice.listenPort, apiA}, settlementVars(apiA))
	if !n.a.admin || !n.b.admin {
		t.Fatal("the test reads balances through the admin API, which does not answer")
	}
	n.a.waitConnected(t, "b")
	n.b.waitConnected(t, "a")
	// Each connector tells its engine about the account before it can settle or take a
	// message for it: wait for both, so that the first settlement finds the accounts.
	n.js.waitEvent(t, "account", map[string]string{"id": "a"})
	n.waitGoAccount(t, "b")

	n.alice = startChild(t, "alice", alice.listenPort)
	n.bob = startChild(t, "bob", bob.listenPort)
	n.a.waitConnected(t, "alice")
	n.b.waitConnected(t, "bob")
	return n
}

// settlementVars serve a connector's settlement API on 127.0.0.1:port, at rate 1 between the
// accounts (one asset and scale, no spread).
func settlementVars(port int) map[string]string {
	return map[string]string{
		"CONNECTOR_SPREAD":              "0",
		"CONNECTOR_SETTLEMENT_API_HOST": "127.0.0.1",
		"CONNECTOR_SETTLEMENT_API_PORT": strconv.Itoa(port),
	}
}

// startGoEngine runs the Go mock engine for A on a port of its choice and returns its URL; its
// log is printed if the test fails.
func (n *settledPair) startGoEngine(t *testing.T, connectorURL string) string {
	t.Helper()
	log := &logBuffer{}
	n.goStore = engine.NewMemory()
	srv, err := engine.Start(context.Background(), mock.Connect(engineDecimals), n.goStore, engine.Config{
		ConnectorURL: connectorURL, Addr: "127.0.0.1:0", AssetScale: settleScale,
		RetryBase: 50 * time.Millisecond, RetryMax: time.Second,
		Log: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("=== log of the Go mock engine ===\n%s\n=== end of log of the Go mock engine ===", log.tail(150))
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	return "http://" + srv.Addr()
}

// waitGoAccount waits until the Go engine has the account (the connector's POST /accounts).
func (n *settledPair) waitGoAccount(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ids, err := n.goStore.Accounts(context.Background())
		if err == nil && slices.Contains(ids, id) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Go engine: no account %q after 20 s (accounts %v, err %v)", id, ids, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitGoQueued waits until the Go engine has want (standard units) queued for the account:
// the leftover it keeps once its Settle returned, which may be a moment after the peer's
// engine credited the settlement.
func (n *settledPair) waitGoQueued(t *testing.T, id, want string) {
	t.Helper()
	w := decimal.RequireFromString(want)
	deadline := time.Now().Add(20 * time.Second)
	for {
		q := n.goStore.Queued(id)
		if q.Equal(w) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Go engine: %s queued for %s after 20 s, want the leftover %s", q, id, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startChild connects a Go BTP client as child name (ilp-plugin-mini-accounts with
// auth_username: its address is <connector>.<account>.<name>). It fulfills every payment
// with childPreimage.
func startChild(t *testing.T, name string, port int) *btp.Client {
	t.Helper()
	cl, err := btp.NewClient(btp.ClientOptions{Server: fmt.Sprintf("btp+ws://%s:tok-%s@127.0.0.1:%d", name, name, port),
		Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = cl.Start(ctx, func(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if p.ExecutionCondition != sha256.Sum256([]byte(childPreimage)) {
			return nil, ilp.Rejectf(ilp.CodeFinalApplicationError, "", "%s: unknown condition", name)
		}
		var f ilp.Fulfill
		copy(f.Fulfillment[:], childPreimage)
		return &f, nil
	})
	if err != nil {
		t.Fatalf("child %s: %v", name, err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// pay sends one Prepare of amount from a child to destination and fails the test unless it
// is fulfilled.
func (n *settledPair) pay(t *testing.T, from *btp.Client, destination string, amount uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n.payments++
	p := &ilp.Prepare{Amount: amount, ExpiresAt: time.Now().Add(15 * time.Second),
		ExecutionCondition: sha256.Sum256([]byte(childPreimage)), Destination: ilp.Address(destination),
		Data: []byte(strconv.Itoa(n.payments))}
	if _, err := from.Send(ctx, p); err != nil {
		t.Fatalf("payment of %d to %s: %v", amount, destination, err)
	}
}

// waitBalances polls both admin APIs until the balances ("A.b": balance of b on A, …) are
// as wanted, or fails after 20 s with the last ones seen.
func (n *settledPair) waitBalances(t *testing.T, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := n.balances()
		if err == nil && matches(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("balances after 20 s: %v (err %v), want %v", got, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *settledPair) balances() (map[string]string, error) {
	out := map[string]string{}
	for name, c := range map[string]*connector{"A": n.a, "B": n.b} {
		bs, err := balances(c.adminPort)
		if err != nil {
			return out, err
		}
		for id, b := range bs {
			out[name+"."+id] = b
		}
	}
	return out, nil
}

func matches(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// jsEngine is a running js/settlement-engine.js.
type jsEngine struct {
	proc  *proc
	lines <-chan string
}

// startJSEngine starts the settlement-core engine on 127.0.0.1:port for the connector at
// connectorURL, with settlement-core's log, and waits until it listens.
func startJSEngine(t *testing.T, port int, connectorURL string) *jsEngine {
	t.Helper()
	lines := make(chan string, 1024)
	p := startProc(t, "settlement-engine.js", childEnv(map[string]string{"NODE_PATH": env.nodeModules, "DEBUG": "settlement-core"}), lines,
		"node", filepath.Join(env.jsDir, "settlement-engine.js"), "--port", strconv.Itoa(port),
		"--connector-url", connectorURL, "--decimals", strconv.Itoa(engineDecimals),
		"--max-lifetime-ms", "120000", "--watch-stdin", "true")
	e := &jsEngine{proc: p, lines: lines}
	e.waitEvent(t, "ready", map[string]string{"port": strconv.Itoa(port)})
	return e
}

// waitEvent reads the engine's lines until one of event has the fields want, for 20 s.
func (e *jsEngine) waitEvent(t *testing.T, event string, want map[string]string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-e.lines:
			if !ok {
				<-e.proc.done
				t.Fatalf("settlement-engine.js exited (%v) before its %q event %v", e.proc.err, event, want)
			}
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) != nil || ev["event"] != event {
				continue
			}
			got := map[string]string{}
			for k, v := range ev {
				got[k] = fmt.Sprint(v)
			}
			if matches(got, want) {
				return
			}
			t.Errorf("settlement-engine.js: %s, want %q with %v", line, event, want)
			return
		case <-timeout:
			t.Fatalf("settlement-engine.js: no %q event %v within 20 s", event, want)
		}
	}
}
