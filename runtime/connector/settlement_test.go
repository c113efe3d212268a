package connector

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
)

// settledPair is startPair's two connectors with a settlement engine on each side of the peer
// link (the framework's mock, which settles to two decimal places): A settles what it owes B
// once A.b falls below -10000 (1 EUR at scale 4).
func settledPair(t *testing.T) *pair {
	t.Helper()
	ports := map[string]int{"PB": freePort(t), "PKA": freePort(t), "PKB": freePort(t),
		"PSA": freePort(t), "PSB": freePort(t), "PEA": freePort(t), "PEB": freePort(t)}
	a := strings.Replace(configA, `    balance: {minimum: "-1000000000000", maximum: "1000000000000"}`,
		`    balance: {minimum: "-1000000000000", maximum: "1000000000000", settleThreshold: "-10000", settleTo: "0"}
    settlementEngine: {url: "http://127.0.0.1:%PEA%"}`, 1) + "settlementApiPort: %PSA%\n"
	b := strings.Replace(configB, `    balance: {minimum: "-1000000000000", maximum: "1000000000000"}`,
		`    balance: {minimum: "-1000000000000", maximum: "1000000000000"}
    settlementEngine: {url: "http://127.0.0.1:%PEB%"}`, 1) + "settlementApiPort: %PSB%\n"
	for side, cfg := range map[string][2]string{"A": {"PSA", "PEA"}, "B": {"PSB", "PEB"}} {
		srv, err := engine.Start(context.Background(), mock.Connect(2), engine.NewMemory(), engine.Config{
			ConnectorURL: "http://127.0.0.1:" + itoa(ports[cfg[0]]), Addr: "127.0.0.1:" + itoa(ports[cfg[1]]),
			AssetScale: 4, RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
			Log: slog.New(slog.DiscardHandler).With("engine", side)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close(context.Background()) })
	}
	p := &pair{bobF: &fulfiller{}}
	p.pb, p.pka = ports["PB"], ports["PKA"]
	p.b = startBTP(t, b, ports)
	p.a = startBTP(t, a, ports)
	p.bob = child(t, ports["PKB"], "bob", bobRemote(p.bobF))
	p.alice = child(t, p.pka, "alice", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.a.kids.alice", "alice takes no payments")
	})
	waitFor(t, func() bool { return p.a.Connected("kids") && p.b.Connected("kids") && p.b.Connected("a") })
	return p
}

// TestSettlementBetweenTwoConnectors: A pays B over BTP until it owes more than the threshold;
// A's settler raises A.b to settleTo and asks its engine, the engine's message crosses the
// peer link in a peer.settle Prepare, B's engine credits B, and B.a drops by what the mock
// settled — all of it but the part below its two decimal places, which waits as a leftover.
func TestSettlementBetweenTwoConnectors(t *testing.T) {
	p := settledPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pay := func(i int) {
		t.Helper()
		pr := prepare("test.b.kids.bob", 100, time.Now(), 10*time.Second) // 7920 at scale 4 on the peer link
		pr.Data = []byte{byte(i)}
		if _, err := p.alice.Send(ctx, pr); err != nil {
			t.Fatalf("payment %d: %v", i, err)
		}
	}
	pay(1)
	if got := p.balances(t); got["A.b"] != -7920 || got["B.a"] != 7920 {
		t.Fatalf("after one payment %v: above the threshold, nothing to settle", got)
	}
	pay(2) // A.b = -15840 < -10000: A settles 1.5840 EUR; the mock sends 1.58
	waitFor(t, func() bool { b := p.balances(t); return b["A.b"] == 0 && b["B.a"] == 40 })
	// The balance gauges follow the settlements on both sides, without waiting for a packet.
	waitFor(t, func() bool {
		ga, _ := metricValue(t, p.a, "ilp_connector_balance", map[string]string{"account": "b"})
		gb, _ := metricValue(t, p.b, "ilp_connector_balance", map[string]string{"account": "a"})
		return ga == 0 && gb == 40
	})

	// The 0.0040 left over goes with the next settlement: 15840 more owed, 1.5880 queued,
	// 1.58 sent, 0.0080 left.
	pay(3)
	pay(4)
	waitFor(t, func() bool { b := p.balances(t); return b["A.b"] == 0 && b["B.a"] == 80 })
}

// TestAdminBalanceChangeSettles: lowering a balance below the threshold through the admin
// API (POST /balance) settles as a packet would, without waiting for the next packet.
func TestAdminBalanceChangeSettles(t *testing.T) {
	p := settledPair(t)
	if err := p.a.AdjustBalance(context.Background(), "b", -15840); err != nil {
		t.Fatal(err)
	}
	// A settles 1.5840 EUR, the mock sends 1.58 and B credits it; 0.0040 waits at A's engine.
	waitFor(t, func() bool { b := p.balances(t); return b["A.b"] == 0 && b["B.a"] == -15800 })
}
