package store

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/redis/go-redis/v9"
)

func openRedis(t *testing.T, url, instance string) *Redis {
	t.Helper()
	return openRedisPrefix(t, url, instance, "t:"+t.Name()+":")
}

// openRedisPrefix opens a store on a prefix of the test's choice, closed when it ends.
func openRedisPrefix(t *testing.T, url, instance, prefix string) *Redis {
	t.Helper()
	r, err := OpenRedis(context.Background(), RedisOptions{URL: url, Instance: instance, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// interesting are the amounts the agreement test draws from: the edges of int64 and of the
// 2^53 range where Lua's doubles would round.
var interesting = []int64{0, 1, -1, 2, 7, -7, 100, -100, 1 << 53, 1<<53 + 1, -(1 << 53) - 1,
	math.MaxInt64, math.MaxInt64 - 1, math.MinInt64, math.MinInt64 + 1, math.MaxInt64 / 2, math.MinInt64 / 2}

func draw(rng *rand.Rand) int64 {
	if rng.IntN(3) == 0 {
		return rng.Int64N(1000) - 500
	}
	return interesting[rng.IntN(len(interesting))]
}

func drawLimit(rng *rand.Rand) *int64 {
	if rng.IntN(3) == 0 {
		return nil
	}
	v := draw(rng)
	return &v
}

// TestRedisAgreesWithTransitions runs the same random operations on the Redis store (Lua) and
// on the memory store (transitions.go) and requires the same result, error and state after
// each one, including at the edges of int64.
func TestRedisAgreesWithTransitions(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := openRedis(t, srv.URL(), "agree")
	m := NewMemory()
	rng := rand.New(rand.NewPCG(1, 2))
	const steps = 3000
	for i := range steps {
		acct := []string{"a", "b", "c"}[rng.IntN(3)]
		amt, lo, hi := draw(rng), drawLimit(rng), drawLimit(rng)
		var got, want int64
		var gerr, werr error
		op := rng.IntN(6)
		switch op {
		case 0:
			got, gerr = r.AddWithin(ctx, acct, amt, lo, hi)
			want, werr = m.AddWithin(ctx, acct, amt, lo, hi)
		case 1:
			got, gerr = r.Reserve(ctx, acct, amt, lo)
			want, werr = m.Reserve(ctx, acct, amt, lo)
		case 2:
			got, gerr = r.Commit(ctx, acct, amt)
			want, werr = m.Commit(ctx, acct, amt)
		case 3:
			gerr = r.Release(ctx, acct, amt)
			werr = m.Release(ctx, acct, amt)
		case 4:
			gerr = r.Set(ctx, acct, amt)
			werr = m.Set(ctx, acct, amt)
		case 5: // a packet's worth, scoped, ended: the same as unscoped
			pctx := r.BeginPacket(ctx)
			got, gerr = r.AddWithin(pctx, acct, amt, lo, hi)
			want, werr = m.AddWithin(ctx, acct, amt, lo, hi)
			if err := r.EndPacket(pctx); err != nil {
				t.Fatal(err)
			}
		}
		if !sameErr(gerr, werr) || (werr == nil && got != want) {
			t.Fatalf("step %d op %d %s amount %d min %v max %v: redis %d %v, memory %d %v",
				i, op, acct, amt, deref(lo), deref(hi), got, gerr, want, werr)
		}
		var gle, wle *LimitError
		if errors.As(gerr, &gle) && errors.As(werr, &wle) && *gle != *wle {
			t.Fatalf("step %d: limit errors differ: %+v vs %+v", i, gle, wle)
		}
		gb, _ := r.Get(ctx, acct)
		wb, _ := m.Get(ctx, acct)
		if gb != wb {
			t.Fatalf("step %d op %d: state redis %+v, memory %+v", i, op, gb, wb)
		}
	}
}

func sameErr(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	for _, e := range []error{ErrAboveMaximum, ErrBelowMinimum, ErrOverflow, ErrInvalidAmount} {
		if errors.Is(a, e) != errors.Is(b, e) {
			return false
		}
	}
	return true
}

func deref(v *int64) any {
	if v == nil {
		return "none"
	}
	return *v
}

// TestRedisTwoClientsNeverOverspend is two runtimes sharing one Redis: each has its own
// client and instance name, and together they race to reserve from a balance that allows
// exactly 25 reservations of 10.
func TestRedisTwoClientsNeverOverspend(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := openRedis(t, srv.URL(), "runtime-a")
	b := openRedis(t, srv.URL(), "runtime-b")
	if err := a.Set(ctx, "peer", 250); err != nil {
		t.Fatal(err)
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 128 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			pctx := s.BeginPacket(ctx)
			defer func() { _ = s.EndPacket(pctx) }()
			if _, err := s.Reserve(pctx, "peer", 10, p(0)); err == nil {
				ok.Add(1)
				if _, err := s.Commit(pctx, "peer", 10); err != nil {
					t.Error(err)
				}
			} else if !errors.Is(err, ErrBelowMinimum) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 25 {
		t.Fatalf("%d reservations succeeded, want 25", ok.Load())
	}
	if got, _ := a.Get(ctx, "peer"); got != (AccountBalance{Balance: 0}) {
		t.Fatalf("state: %+v", got)
	}
}

// TestRedisRecoveryStaysInItsPrefix: a store whose prefix holds glob characters recovers its
// own accounts only, not those of a fleet whose prefix the pattern would match.
func TestRedisRecoveryStaysInItsPrefix(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	open := func(prefix string) *Redis { return openRedisPrefix(t, srv.URL(), "i", prefix) }
	other := open("fx:")
	inflight := other.BeginPacket(ctx) // the other fleet's packet in flight, same instance name
	mustAdd(inflight, other, "alice", 7)
	open("f?:") // its recovery must not revert fx:'s packet
	if got, _ := other.Get(ctx, "alice"); got.Balance != 7 {
		t.Fatalf("the other fleet's alice: %+v, want 7 (its packet still in flight)", got)
	}
	if err := other.EndPacket(inflight); err != nil {
		t.Fatal(err)
	}
}

// TestRedisRecovery: instance a dies with a packet in flight and a reservation; instance b is
// alive with a reservation of its own. When a comes back, its in-flight raise and reservation
// are gone and b's reservation is kept.
func TestRedisRecovery(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := openRedis(t, srv.URL(), "runtime-a")
	b := openRedis(t, srv.URL(), "runtime-b")
	mustAdd(ctx, a, "alice", 1000) // final
	done := a.BeginPacket(ctx)     // a fulfilled packet, ended
	mustAdd(done, a, "alice", 10)
	mustReserve(done, a, "bob", 10)
	if _, err := a.Commit(done, "bob", 10); err != nil {
		t.Fatal(err)
	}
	if err := a.EndPacket(done); err != nil {
		t.Fatal(err)
	}
	rejected := a.BeginPacket(ctx) // raise and refund: nothing open
	mustAdd(rejected, a, "alice", 5)
	mustAdd(rejected, a, "alice", -5)
	_ = a.EndPacket(rejected)
	inflight := a.BeginPacket(ctx) // in flight at the crash
	mustAdd(inflight, a, "alice", 7)
	mustReserve(inflight, a, "bob", 7)
	committed := a.BeginPacket(ctx) // committed, but the end was never reached
	mustAdd(committed, a, "alice", 3)
	mustReserve(committed, a, "bob", 3)
	if _, err := a.Commit(committed, "bob", 3); err != nil {
		t.Fatal(err)
	}
	mustReserve(ctx, b, "bob", 4) // the other runtime's packet in flight
	_ = a.Close()                 // "crash": no EndPacket

	a2 := openRedis(t, srv.URL(), "runtime-a")
	if got, _ := a2.Get(ctx, "alice"); got != (AccountBalance{Balance: 1010}) {
		t.Fatalf("alice: %+v, want 1010", got)
	}
	if got, _ := a2.Get(ctx, "bob"); got != (AccountBalance{Balance: -10, Pending: 4}) {
		t.Fatalf("bob: %+v, want -10 with b's 4 pending", got)
	}
	if err := b.Release(ctx, "bob", 4); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(ctx, "bob"); got.Pending != 0 {
		t.Fatalf("bob pending after b's release: %+v", got)
	}
}

func TestRedisKV(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := openRedis(t, srv.URL(), "kv")
	if _, err := r.GetKey(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
	_ = r.PutKey(ctx, "k", []byte("v"))
	if v, err := r.GetKey(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("get: %q %v", v, err)
	}
	_ = r.DeleteKey(ctx, "k")
	if _, err := r.GetKey(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestParseRedisOptionsURL: the URL comes from url, from the ioredis fields of a JS
// ilp-store-redis storeConfig, or from CONNECTOR_STORE_PATH.
func TestParseRedisOptionsURL(t *testing.T) {
	tests := []struct{ name, path, config, want string }{
		{"url", "/ignored", `{"url":"redis://r:6380/2"}`, "redis://r:6380/2"},
		{"store path", "redis://r/1", ``, "redis://r/1"},
		{"store path is a socket", "/run/redis.sock", `{}`, "unix:///run/redis.sock"},
		{"ioredis defaults", "", `{"port":6379,"prefix":"x"}`, "redis://localhost:6379/0"},
		{"ioredis host and port", "", `{"host":"10.0.0.5","port":6390,"db":3}`, "redis://10.0.0.5:6390/3"},
		{"ioredis IPv6 host", "", `{"host":"::1"}`, "redis://[::1]:6379/0"},
		{"ioredis password", "", `{"host":"r","password":"p@ss/w:rd"}`, "redis://:p%40ss%2Fw%3Ard@r:6379/0"},
		{"ioredis user and password", "", `{"host":"r","username":"u","password":"p"}`, "redis://u:p@r:6379/0"},
		{"ioredis socket", "", `{"path":"/run/redis.sock","db":1}`, "unix:///run/redis.sock?db=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseRedisOptions(tt.path, []byte(tt.config))
			if err != nil || o.URL != tt.want {
				t.Fatalf("URL %q, %v; want %q", o.URL, err, tt.want)
			}
			if _, err := redis.ParseURL(o.URL); err != nil {
				t.Fatalf("go-redis cannot read %q: %v", o.URL, err)
			}
		})
	}
}

func TestRedisOpenErrors(t *testing.T) {
	tests := []struct {
		name, path, config, message string
	}{
		{"no url", "", `{}`, "needs a URL"},
		{"unknown field", "", `{"url":"redis://127.0.0.1:1","tls":{}}`, `unknown field "tls"`},
		{"url and ioredis fields", "", `{"url":"redis://127.0.0.1:1","host":"x"}`, "either url or the ioredis fields"},
		{"bad url", "", `{"url":"http://127.0.0.1:1"}`, "redis url"},
		{"bad url keeps its password", "", `{"url":"http://u:s3cret@127.0.0.1:1"}`, `"http://u:xxxxx@127.0.0.1:1"`},
		{"unparsable url keeps its password", "", `{"url":"redis://u:s3cret%zz@h:6379/0"}`, `invalid URL escape`},
		{"bad port keeps its password", "", `{"url":"redis://u:s3cret@h:port/0"}`, `redis url`},
		{"bad Sentinel URL keeps the master's password", "", `{"url":"redis://h:26379/0?master_name=m&password=s3cret&addr=bad"}`, `unable to parse addr param`},
		{"unreachable", "redis://127.0.0.1:1/0", `{}`, "cannot reach Redis at 127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseRedisOptions(tt.path, []byte(tt.config))
			if err == nil {
				o.DialTimeout = time.Second
				var r *Redis
				if r, err = OpenRedis(context.Background(), o); err == nil {
					_ = r.Close()
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err %v does not say %q", err, tt.message)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("err %v shows the password", err)
			}
		})
	}
}

// BenchmarkRedisPacket is one packet's store work on Redis: raise, reserve, commit, end.
func BenchmarkRedisPacket(b *testing.B) {
	srv := redistest.Start(b)
	r, err := OpenRedis(context.Background(), RedisOptions{URL: srv.URL(), Instance: "bench", PoolSize: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	benchPacket(b, r)
}

// TestRedisEndAfterScriptFlush: a Redis that lost its scripts (restart, SCRIPT FLUSH) still
// ends packets, the pipelined path included.
func TestRedisEndAfterScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := openRedis(t, srv.URL(), "flush")
	pctx := r.BeginPacket(ctx)
	mustAdd(pctx, r, "alice", 10)
	mustReserve(pctx, r, "bob", 10)
	if _, err := r.Commit(pctx, "bob", 10); err != nil {
		t.Fatal(err)
	}
	if err := r.c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.EndPacket(pctx); err != nil {
		t.Fatal(err)
	}
	for _, acct := range []string{"alice", "bob"} {
		h, _ := r.c.HGetAll(ctx, r.accountKey(acct)).Result()
		if _, open := h["o:flush"]; open || len(r.deferred) != 0 {
			t.Fatalf("%s still open after the end: %v", acct, h)
		}
	}
}

func TestRedisSettlements(t *testing.T) {
	srv := redistest.Start(t)
	testSettlements(t, func(t *testing.T) Store { return openRedis(t, srv.URL(), "settle") })
}

// TestRedisKeysPrefixIsNotAGlob: the store's own prefix is escaped too, so that a store whose
// prefix holds glob characters lists its keys only.
func TestRedisKeysPrefixIsNotAGlob(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	open := func(prefix string) *Redis { return openRedisPrefix(t, srv.URL(), "i", prefix) }
	glob, plain := open("g[xy]*:"), open("gx:")
	for _, kv := range []struct {
		r   *Redis
		key string
	}{{glob, "a"}, {glob, "b"}, {plain, "c"}} {
		if err := kv.r.PutKey(ctx, kv.key, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		r    *Redis
		want []string
	}{{glob, []string{"a", "b"}}, {plain, []string{"c"}}}
	for _, tt := range tests {
		if got, err := tt.r.Keys(ctx, ""); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("prefix %q: keys %q %v, want %q", tt.r.prefix, got, err, tt.want)
		}
	}
}

// TestRedisSettleDuringPacket: SettleDue compares the committed balance, which includes this
// instance's packets in flight, and a restart reverts those packets but not the settlement.
func TestRedisSettleDuringPacket(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := openRedis(t, srv.URL(), "one")
	setBalance(t, r, "out", -30, 0)
	pctx := r.BeginPacket(ctx)
	mustAdd(pctx, r, "out", 10) // in flight, never ended: -20
	if amt, err := r.SettleDue(ctx, "out", -10, 5, "out:1"); err != nil || amt != 25 {
		t.Fatalf("SettleDue: %d %v", amt, err)
	}
	if amt, err := r.SettleDue(ctx, "out", -10, 5, "out:2"); err != nil || amt != 0 {
		t.Fatalf("SettleDue when not due: %d %v", amt, err)
	}
	r2 := openRedis(t, srv.URL(), "one") // the restart of instance one
	if b, _ := r2.Get(ctx, "out"); b != (AccountBalance{Balance: -5}) {
		t.Fatalf("after restart: %+v, want -5", b)
	}
	checkKV(t, r2, "out:", map[string]string{"out:1": "25"})
}
