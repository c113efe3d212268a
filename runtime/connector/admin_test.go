package connector

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

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
	// GET /rates leaves out the pairs with zed (JS would answer 500 for the whole matrix).
	for _, tt := range []struct {
		from string
		want []string
	}{
		{"alice", []string{"bob", "down", "huge"}},
		{"zed", nil},
	} {
		row, err := c.AccountRates(context.Background(), tt.from)
		if got := slices.Sorted(maps.Keys(row)); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("row %s: %v (%v), want the accounts %v", tt.from, got, err, tt.want)
		}
	}
}

// TestAccountRatesAreWhatPacketsConvertAt: GET /rates shows, for each pair of accounts, the
// rate that a packet between them is converted at — spread and asset scales included, to the
// 15 digits JS rounds to — so that floor(amount × shown rate) is what the next hop receives.
func TestAccountRatesAreWhatPacketsConvertAt(t *testing.T) {
	// USD 1.0835 makes USD→EUR rates that the 15-digit rounding cuts.
	c, ml := startMem(t, strings.Replace(coreConfig, `USD: "1.25"`, `USD: "1.0835"`, 1), nil)
	got := &fulfiller{}
	for _, id := range []string{"alice", "bob", "huge"} {
		ml.get(id).setRemote(got.handle)
	}
	ctx := context.Background()
	dest := map[string]string{"alice": "test.alice-again.x", "bob": "test.bob.x", "huge": "test.huge.x"}
	tests := []struct {
		from, to string
		want     string // computed apart, as JS: toPrecision(15)(dstPrice·10^dstScale / (srcPrice·10^srcScale) × 0.99)
		amount   uint64
	}{
		{"alice", "bob", "91.3705583756345", 12345}, // USD 2 → EUR 4
		{"alice", "huge", "9137055837563450", 7},    // USD 2 → EUR 18
		{"bob", "alice", "0.01072665", 4999999},     // EUR 4 → USD 2
		{"bob", "huge", "99000000000000", 12345},    // same asset, scale 4 → 18
		{"huge", "bob", "0.0000000000000099", 123456789012345678},
		{"huge", "alice", "0.0000000000000001072665", 123456789012345678},
	}
	for _, tt := range tests {
		t.Run(tt.from+"→"+tt.to, func(t *testing.T) {
			row, err := c.AccountRates(ctx, tt.from)
			if err != nil {
				t.Fatal(err)
			}
			shown, ok := row[tt.to]
			if !ok || shown.String() != tt.want {
				t.Fatalf("rate %s→%s shown %s (present %v), want %s", tt.from, tt.to, shown, ok, tt.want)
			}
			if _, err := ml.get(tt.from).inject(ctx, prepare(dest[tt.to], tt.amount, time.Now(), 10*time.Second)); err != nil {
				t.Fatalf("packet %s→%s: %v", tt.from, tt.to, err)
			}
			want := decimal.NewFromUint64(tt.amount).Mul(shown).Floor()
			if fwd := got.lastPrepare().Amount; want.String() != strconv.FormatUint(fwd, 10) {
				t.Errorf("%d from %s: %s got %d, want floor(%d × %s) = %s", tt.amount, tt.from, tt.to, fwd, tt.amount, shown, want)
			}
		})
	}
}

// TestAccountRatesRows: a row lists every other account, connected or not, as JS does, never
// the account itself; an unknown account is ErrUnknownAccount (404).
func TestAccountRatesRows(t *testing.T) {
	c, ml := startMem(t, coreConfig, nil)
	ml.get("down").connected.Store(false)
	ctx := context.Background()
	for _, tt := range []struct {
		from string
		want map[string]string
	}{
		{"alice", map[string]string{"bob": "79.2", "down": "79.2", "huge": "7920000000000000"}},
		{"down", map[string]string{"alice": "0.012375", "bob": "0.99", "huge": "99000000000000"}},
	} {
		row, err := c.AccountRates(ctx, tt.from)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for id, r := range row {
			got[id] = r.String()
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("row %s = %v, want %v", tt.from, got, tt.want)
		}
	}
	if _, err := c.AccountRates(ctx, "nobody"); !errors.Is(err, admin.ErrUnknownAccount) {
		t.Errorf("AccountRates(nobody) = %v, want ErrUnknownAccount", err)
	}
}
