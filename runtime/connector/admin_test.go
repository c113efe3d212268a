package connector

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/admin"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

func TestAdminBackend(t *testing.T) {
	c, ml := startMem(t, coreConfig, nil)
	ml.get("down").connected.Store(false)
	ctx := context.Background()

	accts := c.Accounts()
	if len(accts) != 4 || accts[0].ID != "alice" || !accts[0].Connected || accts[1].ID != "bob" {
		t.Errorf("accounts %+v", accts)
	}
	for _, a := range accts {
		if a.ID == "down" && a.Connected {
			t.Error("down shown as connected")
		}
	}
	adjust := []struct {
		id      string
		diff    int64
		wantErr error
	}{
		{"alice", 500, nil},
		{"alice", 2000000, store.ErrAboveMaximum}, // alice's maximum is 1000000
		{"nobody", 1, admin.ErrUnknownAccount},
		{"bob", -200000000, store.ErrBelowMinimum},
	}
	for _, a := range adjust {
		if err := c.AdjustBalance(ctx, a.id, a.diff); !errors.Is(err, a.wantErr) || (a.wantErr == nil) != (err == nil) {
			t.Errorf("AdjustBalance(%s, %d) = %v, want %v", a.id, a.diff, err, a.wantErr)
		}
	}
	bs, err := c.Balances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs["alice"].Balance != 500 || *bs["alice"].Maximum != 1000000 || bs["alice"].Minimum != nil {
		t.Errorf("balances %+v (only accounts with balance settings, as JS)", bs)
	}
	routes := c.Routes()
	found := map[string]string{}
	for _, r := range routes {
		found[r.Prefix] = r.NextHop
	}
	if found["test.bob"] != "bob" || found["test.c.alice"] != "alice" {
		t.Errorf("routes %+v", routes)
	}
	if r := c.Rates(); r.Backend != "static" || r.Rates["EUR"] != "1" || r.Rates["USD"] != "1.25" {
		t.Errorf("rates %+v", r)
	}
	if len(c.Alerts()) != 0 || c.DismissAlert(1) {
		t.Error("alerts on a fresh connector")
	}
	if c.Address() != "test.c" || c.Gatherer() == nil {
		t.Error("address or gatherer missing")
	}
}

// TestAdjustBalanceChecksTheLimitItMovesToward: as JS modifyBalance, a rise is checked against
// the maximum and a fall against the minimum, so that a correction toward the limits (a
// settlement received after a reload lowered the maximum below the balance) always passes.
func TestAdjustBalanceChecksTheLimitItMovesToward(t *testing.T) {
	ctx := context.Background()
	c, _ := startMem(t, coreConfig, nil) // alice: maximum 1000000
	if err := c.AdjustBalance(ctx, "alice", 900000); err != nil {
		t.Fatal(err)
	}
	lowered := strings.Replace(coreConfig, `balance: {maximum: "1000000"}`, `balance: {maximum: "500000"}`, 1)
	if err := c.Apply(ctx, mustConfig(t, lowered)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		diff int64
		err  error
		want int64
	}{
		{diff: 1, err: store.ErrAboveMaximum, want: 900000},
		{diff: -100000, want: 800000}, // still above the maximum, but toward it
		{diff: -800000, want: 0},
		{diff: -1, want: -1}, // no minimum
	} {
		err := c.AdjustBalance(ctx, "alice", tt.diff)
		if !errors.Is(err, tt.err) {
			t.Errorf("AdjustBalance(%d): %v, want %v", tt.diff, err, tt.err)
		}
		if b, _ := c.Balance(ctx, "alice"); b != tt.want {
			t.Errorf("after AdjustBalance(%d): balance %d, want %d", tt.diff, b, tt.want)
		}
	}
}

// TestBalanceGaugeStartsAtTheStoredBalance: with a store that keeps balances (file, Redis),
// ilp_connector_balance shows the stored balance from the start, not 0 until the next packet.
func TestBalanceGaugeStartsAtTheStoredBalance(t *testing.T) {
	st := store.NewMemory()
	if _, err := st.AddWithin(context.Background(), "alice", 700, nil, nil); err != nil {
		t.Fatal(err)
	}
	c := start(t, coreConfig, Options{newLink: (&memLinks{}).factory, Store: st})
	if v, ok := metricValue(t, c, "ilp_connector_balance", map[string]string{"account": "alice"}); v != 700 {
		t.Errorf("ilp_connector_balance{account=alice} = %v (present %v), want the stored 700", v, ok)
	}
}

// TestRatesWithAnAssetTheTableLacks: GET /rates shows the rates the backend has, even when the
// account asset first in code order (ABC, which the ECB does not publish) has none.
func TestRatesWithAnAssetTheTableLacks(t *testing.T) {
	mirror, fetches := ecbMirror(t, "1.25")
	cfg := strings.Replace(ecbConfig(mirror.URL), "  down:\n", `  zed:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: ABC
    assetScale: 4
    options: {listener: {port: 7005, secret: s}}
  down:
`, 1)
	c, _ := startMem(t, cfg, nil)
	waitFor(t, func() bool { return fetches.Load() == 1 })
	r := c.Rates()
	if r.Rates["USD"] == "" || r.Rates["EUR"] == "" || r.Rates["ABC"] != "" {
		t.Errorf("rates %v; want USD and EUR, and no ABC", r.Rates)
	}
}
