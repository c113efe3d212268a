package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

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
	for name, open := range bothStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("accounts", func(t *testing.T) { testAccounts(t, open(t)) })
			t.Run("queue", func(t *testing.T) { testQueue(t, open(t)) })
			t.Run("credits", func(t *testing.T) { testCredits(t, open(t)) })
			t.Run("credit once", func(t *testing.T) { testCreditOnce(t, open(t)) })
			t.Run("leftover kept", func(t *testing.T) { testLeftoverKept(t, open(t)) })
			t.Run("attempts", func(t *testing.T) { testAttempts(t, open(t)) })
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
	if a := must[*engine.Attempt](t)(s.StartAttempt(ctx, "a", "x")); a != nil {
		t.Fatalf("queued amount of a deleted account taken: %+v", a)
	}
}

// taken takes what is queued for id as an attempt, then forgets the attempt, and returns
// its amount (0 for none).
func taken(t *testing.T, s engine.Store, id string) decimal.Decimal {
	t.Helper()
	ctx := context.Background()
	a := must[*engine.Attempt](t)(s.StartAttempt(ctx, id, "taken"))
	if a == nil {
		return decimal.Zero
	}
	if err := s.EndAttempt(ctx, id, a.ID, decimal.Zero); err != nil {
		t.Fatal(err)
	}
	return a.Amount
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
	if q := taken(t, s, "a"); !q.Equal(dec("3.005000000000000000001")) {
		t.Fatalf("taken %s", q)
	}
	if q := taken(t, s, "a"); !q.IsZero() {
		t.Fatalf("taken again %s, want 0", q)
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
		key, sid := "k"+string(rune('a'+i)), "sid"+string(rune('a'+i))
		c, ok, err := s.QueueCredit(ctx, "a", dec(st.amount), 2, key, sid)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (st.want != "") || ok && (c.Quantity.Amount != st.want || c.Quantity.Scale != 2 || c.Key != key || c.SettlementID != sid) {
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

// testCreditOnce: a settlement id is credited once per account (the peer's engine may send
// it again when it could not tell whether it arrived), below a unit or not; another
// account's same id is another settlement.
func testCreditOnce(t *testing.T, s engine.Store) {
	ctx := context.Background()
	steps := []struct {
		account, amount, sid string
		want                 string // units at scale 2; "" for none; "dup" for ErrCreditedBefore
	}{
		{"a", "1.5", "s1", "150"},
		{"a", "1.5", "s1", "dup"},
		{"b", "1.5", "s1", "150"},
		{"a", "0.004", "s2", ""},
		{"a", "0.004", "s2", "dup"}, // not added to the leftover again
		{"a", "0.006", "s3", "1"},   // 0.004 + 0.006
		{"a", "2", "", "200"},       // no id: no deduplication
		{"a", "2", "", "200"},
	}
	for i, st := range steps {
		c, ok, err := s.QueueCredit(ctx, st.account, dec(st.amount), 2, "key"+strconv.Itoa(i), st.sid)
		switch {
		case st.want == "dup" && !errors.Is(err, engine.ErrCreditedBefore):
			t.Fatalf("step %d: %+v %v %v, want ErrCreditedBefore", i, c, ok, err)
		case st.want == "dup":
		case err != nil || ok != (st.want != "") || ok && c.Quantity.Amount != st.want:
			t.Fatalf("step %d: %+v %v %v, want %q", i, c, ok, err, st.want)
		}
	}
}

// testLeftoverKept: money received below one unit stays when the account is deleted, as the
// queued credits do.
func testLeftoverKept(t *testing.T, s engine.Store) {
	ctx := context.Background()
	must[bool](t)(s.CreateAccount(ctx, "a"))
	if _, ok, err := s.QueueCredit(ctx, "a", dec("0.005"), 2, "k1", "s1"); ok || err != nil {
		t.Fatalf("%v %v, want the amount kept below a unit", ok, err)
	}
	if err := s.DeleteAccount(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if c, ok, err := s.QueueCredit(ctx, "a", dec("0.005"), 2, "k2", "s2"); !ok || err != nil || c.Quantity.Amount != "1" {
		t.Fatalf("%+v %v %v, want a credit of 1 (0.005 + 0.005)", c, ok, err)
	}
}

// testAttempts: an attempt takes the queue in the same step, is kept until it ends (what it
// did not pay queued again), and is dropped with its account.
func testAttempts(t *testing.T, s engine.Store) {
	ctx := context.Background()
	must[bool](t)(s.CreateAccount(ctx, "a"))
	queue := func(amount string) { must[*engine.Record](t)(s.QueueSettlement(ctx, "a", dec(amount), nil)) }
	steps := []struct {
		name string
		do   func() error
		want *engine.Attempt // kept after the step
	}{
		{"nothing queued: no attempt", func() error {
			_, err := s.StartAttempt(ctx, "a", "x")
			return err
		}, nil},
		{"queued: taken as an attempt in progress", func() error {
			queue("1")
			queue("0.25")
			_, err := s.StartAttempt(ctx, "a", "x")
			return err
		}, &engine.Attempt{ID: "x", Amount: dec("1.25"), InProgress: true}},
		{"one attempt at a time", func() error {
			queue("7")
			if _, err := s.StartAttempt(ctx, "a", "y"); !errors.Is(err, engine.ErrAttemptKept) {
				return fmt.Errorf("second attempt: %v, want ErrAttemptKept", err)
			}
			return nil
		}, &engine.Attempt{ID: "x", Amount: dec("1.25"), InProgress: true}},
		{"another attempt's update: nothing", func() error {
			return s.UpdateAttempt(ctx, "a", engine.Attempt{ID: "other", Amount: dec("9")})
		}, &engine.Attempt{ID: "x", Amount: dec("1.25"), InProgress: true}},
		{"outcome unknown", func() error {
			return s.UpdateAttempt(ctx, "a", engine.Attempt{ID: "x", Amount: dec("1.25")})
		}, &engine.Attempt{ID: "x", Amount: dec("1.25")}},
		{"another attempt's end: nothing", func() error {
			return s.EndAttempt(ctx, "a", "other", dec("5"))
		}, &engine.Attempt{ID: "x", Amount: dec("1.25")}},
		{"ended: the unpaid part queued again", func() error {
			return s.EndAttempt(ctx, "a", "x", dec("0.000000001"))
		}, nil},
		{"ended twice: queued once", func() error {
			return s.EndAttempt(ctx, "a", "x", dec("0.000000001"))
		}, nil},
		{"7 + 0.000000001 taken", func() error {
			_, err := s.StartAttempt(ctx, "a", "z")
			return err
		}, &engine.Attempt{ID: "z", Amount: dec("7.000000001"), InProgress: true}},
		{"dropped with the account", func() error { return s.DeleteAccount(ctx, "a") }, nil},
		{"ended after the account was deleted: nothing queued", func() error { return s.EndAttempt(ctx, "a", "z", dec("1")) }, nil},
		{"updated after the account was deleted: not kept again", func() error {
			return s.UpdateAttempt(ctx, "a", engine.Attempt{ID: "z", Amount: dec("7.000000001")})
		}, nil},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := must[*engine.Attempt](t)(s.Attempt(ctx, "a"))
		if (got == nil) != (st.want == nil) || got != nil && (got.ID != st.want.ID || !got.Amount.Equal(st.want.Amount) || got.InProgress != st.want.InProgress) {
			t.Fatalf("%s: attempt %+v, want %+v", st.name, got, st.want)
		}
	}
	must[bool](t)(s.CreateAccount(ctx, "a"))
	if q := taken(t, s, "a"); !q.IsZero() {
		t.Fatalf("%s queued for an account deleted then created again", q)
	}
}

// TestRedisDataOfEarlierVersions: a Redis store written by an earlier version loads — its
// attempt (then always of unknown outcome, never in progress) and its queue — and a queue
// that cannot be read stays queued, as the server's log says.
func TestRedisDataOfEarlierVersions(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := openRedis(t, srv.URL())
	rc := rawClient(t, srv.URL())
	p := "t:" + t.Name() + ":"
	for _, cmd := range [][]any{
		{"SADD", p + "accounts", "a", "b"},
		{"SET", p + "attempt:a", `{"id":"old-id","amount":"1.25"}`},
		{"RPUSH", p + "queue:a", "1", "0.005"},
		{"RPUSH", p + "queue:b", "1", "not a decimal"},
	} {
		if err := rc.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if a := must[*engine.Attempt](t)(r.Attempt(ctx, "a")); a == nil || a.ID != "old-id" || !a.Amount.Equal(dec("1.25")) || a.InProgress {
		t.Fatalf("earlier attempt read as %+v, want old-id 1.25 of unknown outcome", a)
	}
	if err := r.EndAttempt(ctx, "a", "old-id", decimal.Zero); err != nil {
		t.Fatal(err)
	}
	if q := taken(t, r, "a"); !q.Equal(dec("1.005")) {
		t.Fatalf("earlier queue taken as %s, want 1.005", q)
	}
	if a, err := r.StartAttempt(ctx, "b", "x"); err == nil {
		t.Fatalf("unreadable queue taken as %+v", a)
	}
	if q := rc.LRange(ctx, p+"queue:b", 0, -1).Val(); len(q) != 2 {
		t.Fatalf("unreadable queue left as %q, want it kept whole", q)
	}
	if a := must[*engine.Attempt](t)(r.Attempt(ctx, "b")); a != nil {
		t.Fatalf("attempt %+v from an unreadable queue", a)
	}
}

// TestIdempotencyKeptFromTheLastRequest: RFC 38 keeps a key at least 24 hours from the most
// recent request that carried it, not from the first.
func TestIdempotencyKeptFromTheLastRequest(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	mem := engine.NewMemory()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mem.SetClock(func() time.Time { return now })
	red := openRedis(t, srv.URL())
	rc := rawClient(t, srv.URL())
	idem := "t:" + t.Name() + ":idem:k1"
	rec := &engine.Record{Key: "k1", Hash: "h1", Status: 201, Body: []byte(`{}`)}
	for name, tc := range map[string]struct {
		s      engine.Store
		elapse func(time.Duration) // lets d of the key's life pass
	}{
		"memory": {mem, func(d time.Duration) { now = now.Add(d) }},
		"redis": {red, func(d time.Duration) {
			ttl := rc.TTL(ctx, idem).Val()
			if err := rc.Expire(ctx, idem, ttl-d).Err(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			must[bool](t)(tc.s.CreateAccount(ctx, "a"))
			if prev := must[*engine.Record](t)(tc.s.QueueSettlement(ctx, "a", dec("1"), rec)); prev != nil {
				t.Fatalf("first request replayed %+v", prev)
			}
			tc.elapse(20 * time.Hour)
			if prev := must[*engine.Record](t)(tc.s.QueueSettlement(ctx, "a", dec("1"), rec)); prev == nil {
				t.Fatal("retry after 20 h not replayed")
			}
			tc.elapse(20 * time.Hour) // 40 h after the first request, 20 h after the last
			if prev := must[*engine.Record](t)(tc.s.QueueSettlement(ctx, "a", dec("1"), rec)); prev == nil {
				t.Fatal("retry 20 h after the last one not replayed: the key expired 24 h after the first")
			}
			if q := taken(t, tc.s, "a"); !q.Equal(dec("1")) {
				t.Fatalf("queued %s, want 1 (once)", q)
			}
		})
	}
}
