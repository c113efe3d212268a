package connector

import (
	"context"
	"errors"
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
