package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// CCP interop: ilpfleet and the JS ilp-connector peer over BTP with route broadcasting on and
// no static route. Each must learn the other's prefix over CCP (peer.route.control and
// peer.route.update), and a STREAM payment must cross the mixed chain
// alice (child) → A → B → bob (child).

func TestCCPIlpfleetToJSConnector(t *testing.T) {
	needIlpfleet(t)
	testCCPPayment(t, ilpfleet, jsConn)
}

func TestCCPJSConnectorToIlpfleet(t *testing.T) {
	needIlpfleet(t)
	testCCPPayment(t, jsConn, ilpfleet)
}

// startRoutedConnector starts impl like startConnector, but with no static route and with
// CCP on for its peers (the JS defaults: sendRoutes and receiveRoutes true for peers).
func startRoutedConnector(t *testing.T, i impl, address string, accounts []account, listenPorts []int) *connector {
	t.Helper()
	c := &connector{impl: i, adminPort: freePort(t)}
	accts := "{"
	for n, a := range accounts { // keep the order: it matters to ilp-connector
		o := a.json(i)
		delete(o, "sendRoutes")
		delete(o, "receiveRoutes")
		b, _ := json.Marshal(o)
		if n > 0 {
			accts += ","
		}
		accts += strconv.Quote(a.id) + ":" + string(b)
	}
	accts += "}"
	vars := map[string]string{
		"CONNECTOR_ENV":                      "test",
		"CONNECTOR_ILP_ADDRESS":              address,
		"CONNECTOR_ACCOUNTS":                 accts,
		"CONNECTOR_ROUTES":                   "[]",
		"CONNECTOR_ROUTE_BROADCAST_ENABLED":  "true",
		"CONNECTOR_ROUTE_BROADCAST_INTERVAL": "2000",
		"CONNECTOR_SPREAD":                   spread,
		"CONNECTOR_STORE":                    "memory",
		"CONNECTOR_ADMIN_API":                "true",
		"CONNECTOR_ADMIN_API_HOST":           "127.0.0.1",
		"CONNECTOR_ADMIN_API_PORT":           strconv.Itoa(c.adminPort),
	}
	var argv []string
	switch i {
	case ilpfleet:
		vars["CONNECTOR_BACKEND"] = "static"
		vars["CONNECTOR_BACKEND_CONFIG"] = fmt.Sprintf(`{"base":"EUR","rates":{"USD":%q}}`, usdPerEUR)
		vars["CONNECTOR_ROUTE_CLEANUP_INTERVAL"] = "100"
		argv = []string{env.ilpfleet, "connector"}
	case jsConn:
		vars["CONNECTOR_BACKEND"] = "one-to-one"
		vars["DEBUG"] = "connector*,ilp*,-*:trace"
		argv = []string{"node", filepath.Join(env.nodeModules, "ilp-connector", "dist", "index.js")}
	}
	c.proc = startProc(t, fmt.Sprintf("%s %s", i, address), childEnv(vars), nil, argv...)
	for _, port := range append(listenPorts, c.adminPort) {
		if err := waitPort(c.proc, port, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	c.admin = true
	return c
}

// jsRouting is the part of GET /routing the test reads (the JS shape, which ilpfleet copies).
type jsRouting struct {
	RoutingTableID    string `json:"routingTableId"`
	CurrentEpoch      uint32 `json:"currentEpoch"`
	LocalRoutingTable map[string]struct {
		NextHop string `json:"nextHop"`
		Path    string `json:"path"`
	} `json:"localRoutingTable"`
	Peers map[string]jsPeer `json:"peers"`
}

// jsPeer is one peer's CCP state in GET /routing.
type jsPeer struct {
	Send *struct {
		Epoch uint32 `json:"epoch"`
		Mode  string `json:"mode"`
	} `json:"send"`
	Receive *struct {
		RoutingTableID string `json:"routingTableId"`
		Epoch          uint32 `json:"epoch"`
	} `json:"receive"`
}

// waitRoute polls c's GET /routing until its local table routes prefix to nextHop along
// path, and returns the last /routing it read.
func waitRoute(t *testing.T, c *connector, prefix, nextHop, path string) jsRouting {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var r jsRouting
	var err error
	for ctx.Err() == nil {
		r = jsRouting{}
		if err = getJSON(ctx, c.adminPort, "/routing", &r); err == nil {
			if got, ok := r.LocalRoutingTable[prefix]; ok && got.NextHop == nextHop && got.Path == path {
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not learn %s → %s (path %q) over CCP within 30 s: last /routing %+v, error %v", c.proc.name, prefix, nextHop, path, r, err)
	return r
}

// waitSendSync polls c's GET /routing, up to 30 s, until its send state for peer is SYNC, and
// returns the peer's last state.
func waitSendSync(t *testing.T, c *connector, peer string) (p jsPeer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		var r jsRouting
		if err := getJSON(ctx, c.adminPort, "/routing", &r); err == nil {
			if p = r.Peers[peer]; p.Send != nil && p.Send.Mode == "SYNC" {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

func testCCPPayment(t *testing.T, implA, implB impl) {
	needNode(t)
	alice := account{id: "alice", relation: "child", plugin: "ilp-plugin-mini-accounts", assetCode: "USD", assetScale: 6,
		maxPacketAmount: strconv.Itoa(maxPacketAmount), listenPort: freePort(t)}
	bob := account{id: "bob", relation: "child", plugin: "ilp-plugin-btp", assetCode: "EUR", assetScale: 9,
		listenPort: freePort(t), secret: bobSecret}
	peerPort := freePort(t)
	aOnB := account{id: "a", relation: "peer", plugin: "ilp-plugin-btp", assetCode: "EUR", assetScale: 9,
		listenPort: peerPort, secret: peerSecret}
	bOnA := account{id: "b", relation: "peer", plugin: "ilp-plugin-btp", assetCode: "EUR", assetScale: 9,
		server: fmt.Sprintf("btp+ws://a:%s@127.0.0.1:%d", peerSecret, peerPort)}

	b := startRoutedConnector(t, implB, "test.b", []account{aOnB, bob}, []int{peerPort, bob.listenPort})
	a := startRoutedConnector(t, implA, "test.a", []account{alice, bOnA}, []int{alice.listenPort})
	a.waitConnected(t, "b")
	b.waitConnected(t, "a")

	ra := waitRoute(t, a, "test.b", "b", "test.b")
	rb := waitRoute(t, b, "test.a", "a", "test.a")
	t.Logf("%s (A) routing: table %s epoch %d, local %v, peers %+v", implA, ra.RoutingTableID, ra.CurrentEpoch, ra.LocalRoutingTable, ra.Peers["b"])
	t.Logf("%s (B) routing: table %s epoch %d, local %v", implB, rb.RoutingTableID, rb.CurrentEpoch, rb.LocalRoutingTable)
	// Each side's receive state names the other's table: the updates it applied came from it.
	if p := ra.Peers["b"]; p.Receive == nil || p.Receive.RoutingTableID != rb.RoutingTableID {
		t.Errorf("A's receive state for b: %+v, want B's routing table %s", p.Receive, rb.RoutingTableID)
	}
	if p := rb.Peers["a"]; p.Receive == nil || p.Receive.RoutingTableID != ra.RoutingTableID {
		t.Errorf("B's receive state for a: %+v, want A's routing table %s", p.Receive, ra.RoutingTableID)
	}
	// B's route control can reach a JS A before A tracks B as a peer (A rejects it: "non-peer");
	// B asks again after a back-off, so A's send state is polled, not read once.
	if p := waitSendSync(t, a, "b"); p.Send == nil || p.Send.Mode != "SYNC" {
		t.Errorf("A's send state for b: %+v, want SYNC (B asked for routes)", p.Send)
	}
	// Neither side re-advertised the other's own prefix back to it.
	if r, ok := ra.LocalRoutingTable["test.a"]; ok && r.NextHop != "" {
		t.Errorf("A routes its own prefix test.a to %q", r.NextHop)
	}

	recv := startReceiver(t, fmt.Sprintf("btp+ws://:%s@127.0.0.1:%d", bobSecret, bob.listenPort))
	if recv.ready.Address != "test.b.bob" {
		t.Fatalf("receiver's IL-DCP answer from %s: %+v, want test.b.bob", implB, recv.ready)
	}
	sent := runSender(t, fmt.Sprintf("btp+ws://:%s@127.0.0.1:%d", aliceToken, alice.listenPort),
		recv.ready.DestinationAccount, recv.ready.SharedSecret, payAmount)
	if sent.TotalSent != strconv.Itoa(payAmount) {
		t.Errorf("totalSent = %s, want %d", sent.TotalSent, payAmount)
	}
	delivered, err := strconv.ParseUint(sent.TotalDelivered, 10, 64)
	if err != nil || delivered == 0 {
		t.Fatalf("sender's totalDelivered %q: %v", sent.TotalDelivered, err)
	}
	got := recv.waitTotal(t, delivered, 10*time.Second)
	if got.total != delivered {
		t.Errorf("receiver got %d, the sender says %d was delivered", got.total, delivered)
	}
}
