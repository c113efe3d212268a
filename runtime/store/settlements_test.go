package store

import (
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// openStore opens a new, empty store for one subtest.
type openStore func(t *testing.T) Store

// testSettlements is the Settlements contract, and KV's CreateKey and DeleteKeyIf that
// settlement claims and their pruning rely on, run by each store's tests.
func testSettlements(t *testing.T, open openStore) {
	t.Run("CreateKey", func(t *testing.T) { testCreateKey(t, open) })
	t.Run("DeleteKeyIf", func(t *testing.T) { testDeleteKeyIf(t, open) })
	t.Run("concurrent DeleteKeyIf", func(t *testing.T) { testDeleteKeyIfRace(t, open) })
	t.Run("SettleDue", func(t *testing.T) { testSettleDue(t, open) })
	t.Run("CreditOnce", func(t *testing.T) { testCreditOnce(t, open) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, open) })
	t.Run("concurrent CreditOnce", func(t *testing.T) { testCreditOnceRace(t, open) })
}

// race runs 32 calls of try at once and counts those that report a win.
func race(t *testing.T, try func(i int) (bool, error)) int64 {
	var wg sync.WaitGroup
	var won atomic.Int64
	for i := range 32 {
		wg.Go(func() {
			ok, err := try(i)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	return won.Load()
}

// testCreditOnceRace: of many CreditOnce calls racing with one key, exactly one counts.
func testCreditOnceRace(t *testing.T, open openStore) {
	ctx := context.Background()
	s := open(t)
	won := race(t, func(i int) (bool, error) {
		return s.CreditOnce(ctx, "a", -10, "in:race", []byte(strconv.Itoa(i)))
	})
	if won != 1 {
		t.Fatalf("%d calls counted, want 1", won)
	}
	if b, _ := s.Get(ctx, "a"); b.Balance != -10 {
		t.Fatalf("balance %d, want -10", b.Balance)
	}
}

// testCreateKey: a key is created once, keeps its first value, and of many calls racing with
// one key exactly one creates it; a deleted key can be created again.
func testCreateKey(t *testing.T, open openStore) {
	ctx := context.Background()
	s := open(t)
	won := race(t, func(i int) (bool, error) { return s.CreateKey(ctx, "claim", []byte(strconv.Itoa(i))) })
	if won != 1 {
		t.Fatalf("%d calls created the key, want 1", won)
	}
	first, err := s.GetKey(ctx, "claim")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CreateKey(ctx, "claim", []byte("later")); ok || err != nil {
		t.Fatalf("second CreateKey: %v %v", ok, err)
	}
	if v, _ := s.GetKey(ctx, "claim"); string(v) != string(first) {
		t.Fatalf("value %q after a second CreateKey, want the first %q", v, first)
	}
	if err := s.DeleteKey(ctx, "claim"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CreateKey(ctx, "claim", []byte("again")); !ok || err != nil {
		t.Fatalf("CreateKey after DeleteKey: %v %v", ok, err)
	}
	if b, err := s.Get(ctx, "claim"); err != nil || b != (AccountBalance{}) {
		t.Fatalf("an account named like the key: %+v %v; CreateKey touches no balance", b, err)
	}
}

// testDeleteKeyIf: a key is deleted only while it holds exactly the value given.
func testDeleteKeyIf(t *testing.T, open openStore) {
	ctx := context.Background()
	tests := []struct {
		name    string
		value   []byte // the key's value before; nil: absent
		was     []byte
		deleted bool
	}{
		{"absent", nil, []byte("v"), false},
		{"absent, nil was", nil, nil, false},
		{"unchanged", []byte("v"), []byte("v"), true},
		{"changed", []byte("v2"), []byte("v"), false},
		{"longer", []byte("vv"), []byte("v"), false},
		{"shorter", []byte("v"), []byte("vv"), false},
		{"binary unchanged", []byte("a\x00b\xff"), []byte("a\x00b\xff"), true},
		{"binary changed", []byte("a\x00b\xff"), []byte("a\x00c\xff"), false},
		{"empty, nil was", []byte{}, nil, true},
		{"empty, empty was", []byte{}, []byte{}, true},
		{"a value, nil was", []byte("v"), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			if tt.value != nil {
				if err := s.PutKey(ctx, "k", tt.value); err != nil {
					t.Fatal(err)
				}
			}
			ok, err := s.DeleteKeyIf(ctx, "k", tt.was)
			if ok != tt.deleted || err != nil {
				t.Fatalf("DeleteKeyIf = %v %v, want %v", ok, err, tt.deleted)
			}
			v, err := s.GetKey(ctx, "k")
			switch {
			case tt.value == nil || tt.deleted:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("after: %q %v, want absent", v, err)
				}
			case err != nil || string(v) != string(tt.value):
				t.Fatalf("after: %q %v, want %q kept", v, err, tt.value)
			}
			var want []string // Keys agrees with GetKey
			if tt.value != nil && !tt.deleted {
				want = []string{"k"}
			}
			if keys, err := s.Keys(ctx, ""); err != nil || !slices.Equal(keys, want) {
				t.Fatalf("keys %q %v, want %q", keys, err, want)
			}
		})
	}
}

// testDeleteKeyIfRace: of many DeleteKeyIf calls racing with one key and value, exactly one
// deletes it; and none deletes a newer value put back meanwhile.
func testDeleteKeyIfRace(t *testing.T, open openStore) {
	ctx := context.Background()
	s := open(t)
	if err := s.PutKey(ctx, "k", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if won := race(t, func(int) (bool, error) { return s.DeleteKeyIf(ctx, "k", []byte("old")) }); won != 1 {
		t.Fatalf("%d calls deleted the key, want 1", won)
	}
	if err := s.PutKey(ctx, "k", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if won := race(t, func(int) (bool, error) { return s.DeleteKeyIf(ctx, "k", []byte("old")) }); won != 0 {
		t.Fatalf("%d calls deleted a newer value, want none", won)
	}
	if v, err := s.GetKey(ctx, "k"); err != nil || string(v) != "new" {
		t.Fatalf("after: %q %v, want the newer value", v, err)
	}
}

func testSettleDue(t *testing.T, open openStore) {
	ctx := context.Background()
	tests := []struct {
		name                string
		balance, pending    int64
		threshold, settleTo int64
		want                int64
		wantErr             error
		wantBalance         int64
	}{
		{"not due above threshold", 10, 0, 5, 20, 0, nil, 10},
		{"not due at threshold", 5, 0, 5, 20, 0, nil, 5},
		{"due", -30, 0, -10, 0, 30, nil, 0},
		{"due to a positive settleTo", -5, 0, 0, 100, 105, nil, 100},
		{"due keeps pending", -30, 7, -10, 0, 30, nil, 0},
		{"due beyond 2^53", -(1 << 53) - 1, 0, 0, 1 << 53, 1<<54 + 1, nil, 1 << 53},
		{"due up to the int64 range", math.MinInt64 + 1, 0, 0, 0, math.MaxInt64, nil, 0},
		{"overflow", math.MinInt64, 0, 0, 1, 0, ErrOverflow, math.MinInt64},
		{"due from the int64 minimum", math.MinInt64, 0, -1, -1, math.MaxInt64, nil, -1},
		{"overflow from the int64 minimum", math.MinInt64, 0, 0, 0, 0, ErrOverflow, math.MinInt64},
		{"threshold above settleTo", -30, 0, 10, 0, 0, ErrInvalidAmount, -30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			setBalance(t, s, "a", tt.balance, tt.pending)
			got, err := s.SettleDue(ctx, "a", tt.threshold, tt.settleTo, "settle:a:1")
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("amount = %d, want %d", got, tt.want)
			}
			wantBal := AccountBalance{Balance: tt.wantBalance, Pending: tt.pending}
			if b, err := s.Get(ctx, "a"); err != nil || b != wantBal {
				t.Fatalf("state = %+v %v, want %+v", b, err, wantBal)
			}
			wantKV := map[string]string{}
			if tt.want != 0 {
				wantKV["settle:a:1"] = strconv.FormatInt(tt.want, 10)
			}
			checkKV(t, s, "settle:", wantKV)
		})
	}
}

// creditCall is one CreditOnce call and what it must return.
type creditCall struct {
	delta   int64
	key     string
	value   string
	entries []Entry
	ok      bool
	err     error
}

func testCreditOnce(t *testing.T, open openStore) {
	ctx := context.Background()
	tests := []struct {
		name             string
		balance, pending int64
		before           map[string]string // KV written first
		calls            []creditCall
		wantBalance      int64
		wantKV           map[string]string // every key, none other
	}{
		{"credit", 100, 0, nil,
			[]creditCall{{delta: -40, key: "in:1", value: "v", ok: true}},
			60, map[string]string{"in:1": "v"}},
		{"repeated key counts once", 100, 5, nil,
			[]creditCall{
				{delta: -40, key: "in:1", value: "v1", ok: true},
				{delta: -40, key: "in:1", value: "v2"},
				{delta: -1, key: "in:1", value: "v3"},
			},
			60, map[string]string{"in:1": "v1"}},
		{"other keys count each", 0, 0, nil,
			[]creditCall{
				{delta: 1 << 53, key: "in:1", value: "v", ok: true},
				{delta: 1, key: "in:2", value: "v", ok: true},
			},
			1<<53 + 1, map[string]string{"in:1": "v", "in:2": "v"}},
		{"empty value is a record", 0, 0, nil,
			[]creditCall{
				{delta: 3, key: "in:1", value: "", ok: true},
				{delta: 3, key: "in:1", value: ""},
			},
			3, map[string]string{"in:1": ""}},
		{"key written before", 0, 0, map[string]string{"in:1": "x"},
			[]creditCall{{delta: 3, key: "in:1", value: "v", entries: []Entry{{Key: "in:e", Value: []byte("e")}}}},
			0, map[string]string{"in:1": "x"}},
		{"entries set and delete", 0, 0, map[string]string{"in:old": "o", "in:keep": "k"},
			[]creditCall{{delta: 2, key: "in:1", value: "v", ok: true, entries: []Entry{
				{Key: "in:new", Value: []byte("n")}, {Key: "in:old", Value: nil}, {Key: "in:gone", Value: nil},
			}}},
			2, map[string]string{"in:1": "v", "in:new": "n", "in:keep": "k"}},
		{"guard holds", 0, 0, map[string]string{"in:left": "0.4"},
			[]creditCall{{delta: 2, key: "in:1", value: "v", ok: true, entries: []Entry{
				{Key: "in:left", Value: []byte("0.1"), Guard: true, Was: []byte("0.4")},
			}}},
			2, map[string]string{"in:1": "v", "in:left": "0.1"}},
		{"guard on an absent key holds", 0, 0, nil,
			[]creditCall{{delta: 2, key: "in:1", value: "v", ok: true, entries: []Entry{
				{Key: "in:left", Value: []byte("0.1"), Guard: true},
			}}},
			2, map[string]string{"in:1": "v", "in:left": "0.1"}},
		{"guarded delete", 0, 0, map[string]string{"in:left": ""},
			[]creditCall{{delta: 2, key: "in:1", value: "v", ok: true, entries: []Entry{
				{Key: "in:left", Guard: true, Was: []byte("")},
			}}},
			2, map[string]string{"in:1": "v"}},
		{"changed key changes nothing", 0, 0, map[string]string{"in:left": "0.5"},
			[]creditCall{{delta: 2, key: "in:1", value: "v", err: ErrConflict, entries: []Entry{
				{Key: "in:other", Value: []byte("o")},
				{Key: "in:left", Value: []byte("0.1"), Guard: true, Was: []byte("0.4")},
			}}},
			0, map[string]string{"in:left": "0.5"}},
		{"key that appeared changes nothing", 0, 0, map[string]string{"in:left": "0.5"},
			[]creditCall{{delta: 2, key: "in:1", value: "v", err: ErrConflict, entries: []Entry{
				{Key: "in:left", Value: []byte("0.1"), Guard: true},
			}}},
			0, map[string]string{"in:left": "0.5"}},
		{"recorded key wins over a guard", 0, 0, map[string]string{"in:1": "x", "in:left": "0.5"},
			[]creditCall{{delta: 2, key: "in:1", value: "v", entries: []Entry{
				{Key: "in:left", Value: []byte("0.1"), Guard: true, Was: []byte("0.4")},
			}}},
			0, map[string]string{"in:1": "x", "in:left": "0.5"}},
		{"overflow changes nothing", math.MaxInt64, 0, nil,
			[]creditCall{{delta: 1, key: "in:1", value: "v", err: ErrOverflow, entries: []Entry{{Key: "in:e", Value: []byte("e")}}}},
			math.MaxInt64, map[string]string{}},
		{"available overflow changes nothing", math.MinInt64 + 1, 1, nil,
			[]creditCall{{delta: -1, key: "in:1", value: "v", err: ErrOverflow}},
			math.MinInt64 + 1, map[string]string{}},
		{"retry after overflow", math.MaxInt64, 0, nil,
			[]creditCall{
				{delta: 1, key: "in:1", value: "v", err: ErrOverflow},
				{delta: -1, key: "in:1", value: "v", ok: true},
			},
			math.MaxInt64 - 1, map[string]string{"in:1": "v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			setBalance(t, s, "a", tt.balance, tt.pending)
			for k, v := range tt.before {
				if err := s.PutKey(ctx, k, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			for i, c := range tt.calls {
				ok, err := s.CreditOnce(ctx, "a", c.delta, c.key, []byte(c.value), c.entries...)
				if ok != c.ok || !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
					t.Fatalf("call %d: %v %v, want %v %v", i, ok, err, c.ok, c.err)
				}
			}
			wantBal := AccountBalance{Balance: tt.wantBalance, Pending: tt.pending}
			if b, err := s.Get(ctx, "a"); err != nil || b != wantBal {
				t.Fatalf("state = %+v %v, want %+v", b, err, wantBal)
			}
			checkKV(t, s, "in:", tt.wantKV)
		})
	}
}

func testKeys(t *testing.T, open openStore) {
	ctx := context.Background()
	s := open(t)
	for _, k := range []string{"s:c", "s:a", "s:b", "t:x", "s", "s*x", "sx", "s?y", "s[1]", `s\z`, "s:d"} {
		if err := s.PutKey(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteKey(ctx, "s:d"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreditOnce(ctx, "a", 1, "s:e", nil, Entry{Key: "s:b", Value: nil}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"s:", []string{"s:a", "s:c", "s:e"}},
		{"", []string{"s", "s*x", "s:a", "s:c", "s:e", "s?y", "s[1]", `s\z`, "sx", "t:x"}},
		{"s*", []string{"s*x"}}, // not a glob: "sx" and "s:a" do not match
		{"s?", []string{"s?y"}},
		{"s[", []string{"s[1]"}},
		{`s\`, []string{`s\z`}},
		{"t:x", []string{"t:x"}},
		{"zz", nil},
	}
	for _, tt := range tests {
		got, err := s.Keys(ctx, tt.prefix)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Keys(%q) = %q %v, want %q", tt.prefix, got, err, tt.want)
		}
	}
}

// setBalance gives a fresh account its committed balance and pending amount.
func setBalance(t *testing.T, s Store, account string, balance, pending int64) {
	t.Helper()
	ctx := context.Background()
	if err := s.Set(ctx, account, balance); err != nil {
		t.Fatal(err)
	}
	if pending > 0 {
		if _, err := s.Reserve(ctx, account, pending, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// checkKV requires the keys with prefix to be exactly want, with those values.
func checkKV(t *testing.T, s Store, prefix string, want map[string]string) {
	t.Helper()
	ctx := context.Background()
	keys, err := s.Keys(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := slices.Sorted(maps.Keys(want))
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("keys %q, want %q", keys, wantKeys)
	}
	for k, v := range want {
		got, err := s.GetKey(ctx, k)
		if err != nil || string(got) != v {
			t.Fatalf("%s = %q %v, want %q", k, got, err, v)
		}
	}
}
