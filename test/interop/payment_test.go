package interop

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// impl is a connector implementation.
type impl string

const (
	ilpfleet impl = "ilpfleet"
	jsConn   impl = "ilp-connector"
)

// The payment: alice (a STREAM sender, child of connector A, USD at scale 6) pays bob (a
// STREAM receiver, child of connector B, EUR at scale 9) across a BTP peer link A ↔ B with
// static routes. A's maxPacketAmount for alice makes STREAM split the payment.
const (
	payAmount       = 1_000_000 // USD base units (1 USD)
	maxPacketAmount = 300_000   // so STREAM needs at least 4 packets
	spread          = "0.01"    // on both connectors
	usdPerEUR       = "1.08"    // the ECB mirror's rate: 1 EUR = 1.08 USD
	aliceToken      = "alice-token"
	bobSecret       = "bob-secret"
	peerSecret      = "peer-secret"
	bigBalance      = "1000000000000000"
)

func TestStreamPaymentAcrossTwoConnectors(t *testing.T) {
	needIlpfleet(t)
	testStreamPayment(t, ilpfleet, ilpfleet)
}

// TestStreamPaymentIlpfleetToJSConnector shows the wire compatibility of ilpfleet's BTP peer
// link (client side) with the JS ilp-connector's (ilp-plugin-btp listener).
func TestStreamPaymentIlpfleetToJSConnector(t *testing.T) {
	needIlpfleet(t)
	testStreamPayment(t, ilpfleet, jsConn)
}

// TestStreamPaymentJSConnectorToIlpfleet shows the other side: ilpfleet's BTP peer listener
// and its child server answering ilp-plugin-btp clients dialed by the JS ilp-connector.
func TestStreamPaymentJSConnectorToIlpfleet(t *testing.T) {
	needIlpfleet(t)
	testStreamPayment(t, jsConn, ilpfleet)
}

// TestStreamPaymentJSConnectors is the same payment across two JS ilp-connectors: it checks
// the harness and the expected amounts against the reference implementation, so that a failure
// of the tests above points at ilpfleet.
func TestStreamPaymentJSConnectors(t *testing.T) {
	testStreamPayment(t, jsConn, jsConn)
}

// account is the part of an ilp-connector account object the tests vary.
type account struct {
	id, relation, plugin, assetCode string
	assetScale                      int
	maxPacketAmount                 string
	server                          string                    // ilp-plugin-btp client: btp+ws://user:token@host:port
	listenPort                      int                       // ilp-plugin-btp listener, or mini-accounts port
	secret                          string                    // ilp-plugin-btp listener secret
	options                         func(impl) map[string]any // when set, the plugin options as impl reads them
	extra                           map[string]any            // more fields of the account object (they win)
}

// json is the account object as impl reads it. Both bind listeners to 127.0.0.1, each its
// own way: ilpfleet's listener takes `host`; ilp-plugin-btp only binds a host given in
// listener.wsOpts (its `ws` server options), which ilpfleet does not accept.
func (a account) json(i impl) map[string]any {
	o := map[string]any{
		"relation": a.relation, "plugin": a.plugin, "assetCode": a.assetCode, "assetScale": a.assetScale,
		// JS tracks (and its admin API reports) balances only of accounts with a balance.
		"balance": map[string]string{"minimum": "-" + bigBalance, "maximum": bigBalance},
	}
	if a.maxPacketAmount != "" {
		o["maxPacketAmount"] = a.maxPacketAmount
	}
	if a.relation == "peer" {
		// Static routes only. (JS loads CONNECTOR_ROUTES only when route broadcast is
		// enabled, so broadcast stays on and CCP is turned off per peer instead.)
		o["sendRoutes"], o["receiveRoutes"] = false, false
	}
	switch {
	case a.options != nil:
		o["options"] = a.options(i)
	case a.plugin == "ilp-plugin-mini-accounts":
		o["options"] = map[string]any{"wsOpts": map[string]any{"host": "127.0.0.1", "port": a.listenPort}}
	case a.server != "":
		o["options"] = map[string]any{"server": a.server}
	case i == jsConn:
		o["options"] = map[string]any{"listener": map[string]any{"port": a.listenPort, "secret": a.secret,
			"wsOpts": map[string]any{"host": "127.0.0.1", "port": a.listenPort}}}
	default:
		o["options"] = map[string]any{"listener": map[string]any{"port": a.listenPort, "secret": a.secret, "host": "127.0.0.1"}}
	}
	for k, v := range a.extra {
		o[k] = v
	}
	return o
}

// connector is a running connector of a test.
type connector struct {
	impl      impl
	proc      *proc
	adminPort int
	admin     bool // its admin API answered
}

// startConnector starts impl with CONNECTOR_* variables for these accounts and one static
// route, and waits until it listens on listenPorts and its admin API reports the accounts in
// waitAccounts connected.
func startConnector(t *testing.T, i impl, address string, accounts []account, route [2]string, listenPorts []int) *connector {
	t.Helper()
	return startConnectorEnv(t, i, address, accounts, route, listenPorts, nil)
}

// startConnectorEnv is startConnector with more CONNECTOR_* variables, which win.
func startConnectorEnv(t *testing.T, i impl, address string, accounts []account, route [2]string, listenPorts []int, extra map[string]string) *connector {
	t.Helper()
	c := &connector{impl: i, adminPort: freePort(t)}
	accts := "{"
	for n, a := range accounts { // keep the order: it matters to ilp-connector
		b, _ := json.Marshal(a.json(i))
		if n > 0 {
			accts += ","
		}
		accts += strconv.Quote(a.id) + ":" + string(b)
	}
	accts += "}"
	routes, _ := json.Marshal([]map[string]string{{"targetPrefix": route[0], "peerId": route[1]}})
	vars := map[string]string{
		"CONNECTOR_ENV":            "test",
		"CONNECTOR_ILP_ADDRESS":    address,
		"CONNECTOR_ACCOUNTS":       accts,
		"CONNECTOR_ROUTES":         string(routes),
		"CONNECTOR_SPREAD":         spread,
		"CONNECTOR_STORE":          "memory",
		"CONNECTOR_ADMIN_API":      "true",
		"CONNECTOR_ADMIN_API_HOST": "127.0.0.1",
		"CONNECTOR_ADMIN_API_PORT": strconv.Itoa(c.adminPort),
	}
	ecbBackend(vars)
	var argv []string
	switch i {
	case ilpfleet:
		argv = []string{env.ilpfleet, "connector"}
	case jsConn:
		vars["DEBUG"] = "connector*,ilp*,-*:trace"
		argv = []string{"node", filepath.Join(env.nodeModules, "ilp-connector", "dist", "index.js")}
	}
	for k, v := range extra {
		vars[k] = v
	}
	c.proc = startProc(t, fmt.Sprintf("%s %s", i, address), childEnv(vars), nil, argv...)
	for _, port := range listenPorts {
		if err := waitPort(c.proc, port, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitPort(c.proc, c.adminPort, 10*time.Second); err != nil {
		if i == jsConn {
			t.Fatal(err)
		}
		t.Logf("NOTE: the admin API (CONNECTOR_ADMIN_API) of %s does not answer: readiness is judged by its listening ports only, and its balances are not checked (%v)", address, err)
		return c
	}
	c.admin = true
	return c
}

// waitConnected waits, where the admin API answers, for these accounts to be connected.
func (c *connector) waitConnected(t *testing.T, accounts ...string) {
	t.Helper()
	if !c.admin {
		return
	}
	if err := waitConnected(c.proc, c.adminPort, accounts, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// rateFor is the scaled rate a connector forwards with from src to dst, with the ECB mirror's
// rates (the same for both implementations).
func rateFor(t *testing.T, src, dst account) *big.Rat {
	t.Helper()
	price := func(code string) string { // units of code per EUR
		if code == "EUR" {
			return "1"
		}
		return usdPerEUR
	}
	r, err := jsScaledRate(price(src.assetCode), price(dst.assetCode), src.assetScale, dst.assetScale, spread)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testStreamPayment(t *testing.T, implA, implB impl) {
	testStreamPaymentOver(t, implA, implB, btpPeers)
}

// peerLink builds the peer accounts of a payment: a on B and b on A. A listening account has
// its listenPort set, which startConnector waits for.
type peerLink func(t *testing.T) (aOnB, bOnA account)

// btpPeers: B listens (ilp-plugin-btp listener), A dials.
func btpPeers(t *testing.T) (aOnB, bOnA account) {
	peerPort := freePort(t)
	aOnB = account{id: "a", relation: "peer", plugin: "ilp-plugin-btp", assetCode: "EUR", assetScale: 9,
		listenPort: peerPort, secret: peerSecret}
	bOnA = account{id: "b", relation: "peer", plugin: "ilp-plugin-btp", assetCode: "EUR", assetScale: 9,
		server: fmt.Sprintf("btp+ws://a:%s@127.0.0.1:%d", peerSecret, peerPort)}
	return aOnB, bOnA
}

func testStreamPaymentOver(t *testing.T, implA, implB impl, peers peerLink) {
	needNode(t)
	alice := account{id: "alice", relation: "child", plugin: "ilp-plugin-mini-accounts", assetCode: "USD", assetScale: 6,
		maxPacketAmount: strconv.Itoa(maxPacketAmount), listenPort: freePort(t)}
	bob := account{id: "bob", relation: "child", plugin: "ilp-plugin-btp", assetCode: "EUR", assetScale: 9,
		listenPort: freePort(t), secret: bobSecret}
	aOnB, bOnA := peers(t)
	listenA := []int{alice.listenPort}
	if bOnA.listenPort != 0 {
		listenA = append(listenA, bOnA.listenPort)
	}

	b := startConnector(t, implB, "test.b", []account{aOnB, bob}, [2]string{"test.a", "a"}, []int{aOnB.listenPort, bob.listenPort})
	a := startConnector(t, implA, "test.a", []account{alice, bOnA}, [2]string{"test.b", "b"}, listenA)
	a.waitConnected(t, "b")
	b.waitConnected(t, "a")

	recv := startReceiver(t, fmt.Sprintf("btp+ws://:%s@127.0.0.1:%d", bobSecret, bob.listenPort))
	if recv.ready.Address != "test.b.bob" || recv.ready.AssetCode != "EUR" || recv.ready.AssetScale != 9 {
		t.Fatalf("receiver's IL-DCP answer from %s: %+v, want test.b.bob EUR 9", implB, recv.ready)
	}
	sent := runSender(t, fmt.Sprintf("btp+ws://:%s@127.0.0.1:%d", aliceToken, alice.listenPort),
		recv.ready.DestinationAccount, recv.ready.SharedSecret, payAmount)

	// IL-DCP through A's mini-accounts: <A>.<account>.<base64url(sha256(token))>, USD 6.
	sum := sha256.Sum256([]byte(aliceToken))
	wantAddr := "test.a.alice." + base64.RawURLEncoding.EncodeToString(sum[:])
	if sent.ildcp.Address != wantAddr || sent.ildcp.AssetCode != "USD" || sent.ildcp.AssetScale != 6 {
		t.Errorf("sender's IL-DCP answer from %s: %+v, want %s USD 6", implA, sent.ildcp, wantAddr)
	}

	// What the sender sent: the whole amount, split below maxPacketAmount, which it learnt
	// from A's F08 rejects.
	if sent.TotalSent != strconv.Itoa(payAmount) {
		t.Errorf("totalSent = %s, want %d", sent.TotalSent, payAmount)
	}
	var sourceSum uint64
	for _, s := range sent.amounts {
		sourceSum += s
		if s > maxPacketAmount {
			t.Errorf("a fulfilled packet of %d is above maxPacketAmount %d", s, maxPacketAmount)
		}
	}
	if sourceSum != payAmount || len(sent.amounts) < (payAmount+maxPacketAmount-1)/maxPacketAmount {
		t.Errorf("fulfilled source packets %v (sum %d): want a sum of %d in at least %d packets",
			sent.amounts, sourceSum, payAmount, (payAmount+maxPacketAmount-1)/maxPacketAmount)
	}
	if sent.Rejects["F08"] == 0 {
		t.Errorf("no F08 reject from A (rejects %v): maxPacketAmount %d was not enforced", sent.Rejects, maxPacketAmount)
	}

	// What each packet must deliver: floor at A (alice → b), then floor at B (a → bob).
	rateA, rateB := rateFor(t, alice, bOnA), rateFor(t, aOnB, bob)
	var wantPackets []uint64
	var forwardedByA, wantTotal uint64
	for _, s := range sent.amounts {
		mid := forward(s, rateA)
		out := forward(mid, rateB)
		forwardedByA += mid
		wantTotal += out
		if out > 0 {
			wantPackets = append(wantPackets, out)
		}
	}
	t.Logf("rates: A %s, B %s; source packets %v; want delivered %v = %d", rateA.FloatString(15), rateB.FloatString(15), sent.amounts, wantPackets, wantTotal)
	// The closed form as a cross-check: n floors lose less than n·(rateB + 1) units in all.
	ideal := new(big.Rat).Mul(new(big.Rat).Mul(big.NewRat(payAmount, 1), rateA), rateB)
	lower := new(big.Rat).Sub(ideal, new(big.Rat).Mul(big.NewRat(int64(len(sent.amounts)), 1), new(big.Rat).Add(rateB, big.NewRat(1, 1))))
	if w := new(big.Rat).SetInt64(int64(wantTotal)); w.Cmp(ideal) > 0 || w.Cmp(lower) <= 0 {
		t.Errorf("expected total %d is outside (%s, %s]: the expectation itself is wrong", wantTotal, lower.FloatString(3), ideal.FloatString(3))
	}
	if sent.TotalDelivered != strconv.FormatUint(wantTotal, 10) {
		t.Errorf("sender's totalDelivered = %s, want %d", sent.TotalDelivered, wantTotal)
	}

	// Wait for what the sender says was delivered (not for the expectation, which may differ).
	delivered, err := strconv.ParseUint(sent.TotalDelivered, 10, 64)
	if err != nil {
		t.Fatalf("sender's totalDelivered %q: %v", sent.TotalDelivered, err)
	}
	got := recv.waitTotal(t, delivered, 10*time.Second)
	gotPackets := slices.Clone(got.packets)
	slices.Sort(gotPackets)
	slices.Sort(wantPackets)
	if !slices.Equal(gotPackets, wantPackets) {
		t.Errorf("receiver got packets %v, want %v (sorted)", gotPackets, wantPackets)
	}
	if got.total != wantTotal || got.streamTotal != wantTotal {
		t.Errorf("receiver got %d (stream total %d), want %d", got.total, got.streamTotal, wantTotal)
	}

	// Balances: positive means the account owes the connector.
	checkBalances(t, a, map[string]string{"alice": itoa(payAmount), "b": "-" + itoa(forwardedByA)})
	checkBalances(t, b, map[string]string{"a": itoa(forwardedByA), "bob": "-" + itoa(wantTotal)})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// checkBalances compares the connector's GET /balance with want.
func checkBalances(t *testing.T, c *connector, want map[string]string) {
	t.Helper()
	if !c.admin {
		t.Logf("NOTE: balances of %s not checked: its admin API does not answer; want %v", c.proc.name, want)
		return
	}
	got, err := balances(c.adminPort)
	if err != nil {
		t.Errorf("balances of %s: %v", c.proc.name, err)
		return
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: balance of %s = %q, want %s (all: %v)", c.proc.name, id, got[id], w, got)
		}
	}
}
