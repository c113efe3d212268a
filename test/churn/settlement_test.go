package churn

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
)

// settledAccount is a peer account on a BTP listener (every one on port, secret tok-settle)
// with the settlement engine at enginePort: it settles to 0 once we owe more than 1.00.
func settledAccount(id string, port, enginePort int) string {
	return fmt.Sprintf("  %s:\n    relation: peer\n    plugin: ilp-plugin-btp\n    assetCode: USD\n    assetScale: 2\n"+
		"    sendRoutes: false\n    receiveRoutes: false\n"+
		"    balance: {minimum: \"-1000000\", maximum: \"1000000\", settleThreshold: \"-100\", settleTo: \"0\"}\n"+
		"    settlementEngine: {url: \"http://127.0.0.1:%d\"}\n"+
		"    options: {listener: {host: 127.0.0.1, port: %d, secret: tok-settle}}\n", id, enginePort, port)
}

// peerEngineAcks plays the peer's side of the mock's settlement messages: every peer.settle
// Prepare is taken (its reply is the peer engine's answer, which the mock does not read).
func peerEngineAcks(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if p.Destination == "peer.settle" {
		return &ilp.Fulfill{Fulfillment: [32]byte{}, Data: []byte(`{"type":"ack"}`)}, nil
	}
	return fulfill(ctx, p)
}

// TestChurnSettlementAccounts: accounts with a settlement engine (the framework's mock, in
// process) are added, settle once, and are removed, each under a new id. The settler's
// worker, the engine's client and every settlement series of a removed account must be gone.
func TestChurnSettlementAccounts(t *testing.T) {
	ps, psa, pe, pss := port(t), port(t), port(t), port(t)
	srv, err := engine.Start(context.Background(), mock.Connect(2), engine.NewMemory(), engine.Config{
		ConnectorURL: "http://127.0.0.1:" + strconv.Itoa(psa), Addr: "127.0.0.1:" + strconv.Itoa(pe), AssetScale: 2,
		RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })

	base := []string{btpListener("sink", "child", ps, "")}
	with := func(id string) string {
		return doc(psa, append(append([]string{}, base...), settledAccount(id, pss, pe)), nil)
	}
	without := doc(psa, base, nil)
	r := newRig(t, with("s-warm"))
	peer := newClient(t, pss, "peer", "tok-settle") // reconnects to every account on pss
	if err := peer.Start(context.Background(), peerEngineAcks); err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	settleOnce := func(id string) {
		t.Helper()
		waitFor(t, "peer connected to "+id, func() bool { return r.c.Connected(id) })
		if err := r.c.AdjustBalance(context.Background(), id, -150); err != nil {
			t.Fatalf("AdjustBalance %s: %v", id, err)
		}
		waitFor(t, "settlement of "+id+" accepted by the engine", func() bool {
			b, err := r.c.Balance(context.Background(), id)
			return err == nil && b == 0 && len(seriesOf(t, r.c, func(a string) bool { return a == id })) > 0 && pending(t, r) == 0
		})
	}
	settleOnce("s-warm")
	r.apply(without)
	r.baseline()

	// Half the usual count: each cycle settles through the engine, and every leak looked for
	// here is exact (series, store keys) or far above the slack.
	for i := range minIterations / 2 {
		id := "s" + strconv.Itoa(i)
		r.apply(with(id))
		settleOnce(id)
		r.apply(without)
	}
	r.check("settlement accounts added, settled and removed", same())

	checkSettlementSeries(t, r, func(id string) bool { return strings.HasPrefix(id, "s") && id != "sink" })
}

// checkSettlementSeries fails the test with the series left of the removed accounts.
func checkSettlementSeries(t *testing.T, r *rig, removed func(string) bool) {
	t.Helper()
	if left := seriesOf(t, r.c, removed); len(left) > 0 {
		t.Errorf("%d series of removed accounts, e.g. %v; a removed account's settlement series (%s, %s, %s, %s) must go with it as its packet series do",
			len(left), left[:min(len(left), 4)], settlement.MetricSettlements, settlement.MetricSettlementValue,
			settlement.MetricSettlementFailure, settlement.MetricSettlementPending)
	}
}

// TestChurnSettlementEngineDown: accounts whose settlement engine is down are added, fall
// below their threshold, and are removed while the settler retries telling the engine about
// them (a settlement is recorded only once the engine knows the account). The settler's
// worker and every series of a removed account must be gone.
func TestChurnSettlementEngineDown(t *testing.T) {
	ps, psa, pss, dead := port(t), port(t), port(t), port(t)
	base := []string{btpListener("sink", "child", ps, "")}
	with := func(id string) string {
		return doc(psa, append(append([]string{}, base...), settledAccount(id, pss, dead)), nil)
	}
	without := doc(psa, base, nil)
	r := newRig(t, with("d-warm"))
	peer := newClient(t, pss, "peer", "tok-settle")
	if err := peer.Start(context.Background(), peerEngineAcks); err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	cycle := func(id string) {
		t.Helper()
		waitFor(t, "peer connected to "+id, func() bool { return r.c.Connected(id) })
		if err := r.c.AdjustBalance(context.Background(), id, -150); err != nil {
			t.Fatalf("AdjustBalance %s: %v", id, err)
		}
		waitFor(t, "a failure to reach the engine of "+id, func() bool {
			return len(seriesOf(t, r.c, func(a string) bool { return a == id })) > 0
		})
		r.apply(without)
	}
	cycle("d-warm")
	r.baseline()
	for i := range minIterations / 2 {
		id := "d" + strconv.Itoa(i)
		r.apply(with(id))
		cycle(id)
	}
	r.check("accounts with an engine down, removed while retrying", same())
	if n := pending(t, r); n != 0 {
		t.Errorf("%d settlements recorded for accounts whose engine never answered", n)
	}
	checkSettlementSeries(t, r, func(id string) bool { return strings.HasPrefix(id, "d") })
}

// pending is the number of settlements recorded but not yet accepted by an engine.
func pending(t *testing.T, r *rig) int {
	t.Helper()
	s, err := r.c.Settlements(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(s)
}
