package engine_test

import (
	"context"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/shopspring/decimal"
)

func openRedis(t *testing.T, url string) *engine.Redis {
	t.Helper()
	r, err := engine.OpenRedis(context.Background(), url, "t:"+t.Name()+":")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// TestStores runs the same steps on both stores.
func TestStores(t *testing.T) {
	srv := redistest.Start(t)
	stores := map[string]func(t *testing.T) engine.Store{
		"memory": func(*testing.T) engine.Store { return engine.NewMemory() },
		"redis":  func(t *testing.T) engine.Store { return openRedis(t, srv.URL()) },
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Run("accounts", func(t *testing.T) { testAccounts(t, open(t)) })
			t.Run("queue", func(t *testing.T) { testQueue(t, open(t)) })
			t.Run("credits", func(t *testing.T) { testCredits(t, open(t)) })
		})
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func testAccounts(t *testing.T, s engine.Store) {
	ctx := context.Background()
	if !must[bool](t)(s.CreateAccount(ctx, "a")) || must[bool](t)(s.CreateAccount(ctx, "a")) {
		t.Fatal("CreateAccount: want new, then not new")
	}
	if !must[bool](t)(s.HasAccount(ctx, "a")) || must[bool](t)(s.HasAccount(ctx, "b")) {
		t.Fatal("HasAccount")
	}
	if ids := must[[]string](t)(s.Accounts(ctx)); len(ids) != 1 || ids[0] != "a" {
		t.Fatalf("Accounts = %v", ids)
	}
	must[*engine.Record](t)(s.QueueSettlement(ctx, "a", dec("1"), nil))
	if err := s.DeleteAccount(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if must[bool](t)(s.HasAccount(ctx, "a")) {
		t.Fatal("deleted account still there")
	}
	if q := must[decimal.Decimal](t)(s.TakeQueued(ctx, "a")); !q.IsZero() {
		t.Fatalf("queued amount of a deleted account = %s", q)
	}
}

func testQueue(t *testing.T, s engine.Store) {
	ctx := context.Background()
	rec := func(key, hash string) *engine.Record {
		return &engine.Record{Key: key, Hash: hash, Status: 201, Body: []byte(`{"x":1}`)}
	}
	if _, err := s.QueueSettlement(ctx, "a", dec("1"), rec("k0", "h")); err != engine.ErrNoAccount {
		t.Fatalf("unknown account: err = %v", err)
	}
	must[bool](t)(s.CreateAccount(ctx, "a"))
	steps := []struct {
		amount   string
		rec      *engine.Record
		wantPrev string // hash of the record returned, "" for none
	}{
		{"1.005", rec("k1", "h1"), ""},
		{"1.005", rec("k1", "h1"), "h1"}, // replay: not queued again
		{"7", rec("k1", "other"), "h1"},  // reuse: the kept record
		{"0.000000000000000000001", nil, ""},
		{"2", rec("k2", "h2"), ""},
	}
	for i, st := range steps {
		prev := must[*engine.Record](t)(s.QueueSettlement(ctx, "a", dec(st.amount), st.rec))
		switch {
		case st.wantPrev == "" && prev != nil, st.wantPrev != "" && (prev == nil || prev.Hash != st.wantPrev):
			t.Fatalf("step %d: prev = %+v, want hash %q", i, prev, st.wantPrev)
		case prev != nil && (prev.Status != 201 || string(prev.Body) != `{"x":1}`):
			t.Fatalf("step %d: record not kept whole: %+v", i, prev)
		}
	}
	if q := must[decimal.Decimal](t)(s.TakeQueued(ctx, "a")); !q.Equal(dec("3.005000000000000000001")) {
		t.Fatalf("TakeQueued = %s", q)
	}
	if q := must[decimal.Decimal](t)(s.TakeQueued(ctx, "a")); !q.IsZero() {
		t.Fatalf("TakeQueued again = %s, want 0", q)
	}
}

func testCredits(t *testing.T, s engine.Store) {
	ctx := context.Background()
	steps := []struct {
		amount string
		want   string // units at scale 2, "" for no credit
	}{
		{"1.005", "100"},
		{"0.004", ""}, // 0.009 below a unit
		{"0.001", "1"},
		{"12.3456", "1234"},
		{"0.0044", "1"}, // 0.0056 + 0.0044
	}
	var keys []string
	for i, st := range steps {
		key := "k" + string(rune('a'+i))
		c, ok, err := s.QueueCredit(ctx, "a", dec(st.amount), 2, key, "sid")
		if err != nil {
			t.Fatal(err)
		}
		if ok != (st.want != "") || ok && (c.Quantity.Amount != st.want || c.Quantity.Scale != 2 || c.Key != key || c.SettlementID != "sid") {
			t.Fatalf("step %d: credit %+v ok=%v, want %q", i, c, ok, st.want)
		}
		if ok {
			keys = append(keys, key)
		}
	}
	if cs := must[[]engine.Credit](t)(s.Credits(ctx)); len(cs) != len(keys) {
		t.Fatalf("Credits = %+v, want %d", cs, len(keys))
	}
	for _, k := range keys {
		if err := s.AckCredit(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if cs := must[[]engine.Credit](t)(s.Credits(ctx)); len(cs) != 0 {
		t.Fatalf("Credits after ack = %+v", cs)
	}
	if _, _, err := s.QueueCredit(ctx, "a", dec("1e30"), 2, "big", ""); err == nil {
		t.Fatal("a credit beyond int64 units was queued")
	}
}
