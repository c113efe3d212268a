package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"
)

// openLeased opens a Redis store on prefix with lease and a log of its own.
func openLeased(ctx context.Context, t *testing.T, url, prefix string, lease time.Duration, log *logBuffer) (*engine.Redis, error) {
	t.Helper()
	r, err := engine.OpenRedisWith(ctx, url, prefix, engine.RedisOptions{Lease: lease, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err == nil {
		t.Cleanup(func() { _ = r.Close() })
	}
	return r, err
}

func rawClient(t *testing.T, url string) *redis.Client {
	rc := redis.NewClient(must[*redis.Options](t)(redis.ParseURL(url)))
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// TestRedisLeaseOneProcessPerPrefix: a second process on a prefix waits, saying so, while the
// first holds it (a second replica, or the pod started while the one it replaces drains), and
// starts only once the first closed: it never sees the first's attempt in progress, which it
// would take for one a stopped process left. Another prefix does not wait.
func TestRedisLeaseOneProcessPerPrefix(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	prefix := "t:" + t.Name() + ":"
	first := must[*engine.Redis](t)(openLeased(ctx, t, srv.URL(), prefix, 0, &logBuffer{}))
	must[bool](t)(first.CreateAccount(ctx, "peer"))
	must[*engine.Record](t)(first.QueueSettlement(ctx, "peer", dec("5"), nil))
	must[*engine.Attempt](t)(first.StartAttempt(ctx, "peer", "running")) // Settle runs

	secondLog := &logBuffer{}
	opened := make(chan *engine.Redis, 1)
	go func() {
		r, err := openLeased(ctx, t, srv.URL(), prefix, 0, secondLog)
		if err != nil {
			t.Error(err)
		}
		opened <- r
	}()
	eventually(t, "the second process says it waits", func() bool {
		return strings.Contains(secondLog.String(), "level=INFO msg=\"settlement engine: another process holds this Redis prefix; waiting")
	})

	other, err := openLeased(waitCtx(t), t, srv.URL(), "t:"+t.Name()+":other:", 0, &logBuffer{})
	if err != nil {
		t.Fatalf("a store on another prefix waited for this one: %v", err)
	}
	_ = other.Close()

	select {
	case <-opened:
		t.Fatal("the second process took the prefix while the first held it")
	default:
	}
	if err := first.EndAttempt(ctx, "peer", "running", dec("2")); err != nil { // Settle paid 3
		t.Fatal(err)
	}
	select {
	case <-opened:
		t.Fatal("the second process took the prefix before the first closed")
	default:
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	var second *engine.Redis
	select {
	case second = <-opened:
	case <-waitCtx(t).Done():
		t.Fatal("the second process still waits after the first closed")
	}
	if second == nil {
		t.FailNow()
	}
	if at := must[*engine.Attempt](t)(second.Attempt(ctx, "peer")); at != nil {
		t.Fatalf("the second process sees the attempt %+v of the first", at)
	}
	if q := taken(t, second, "peer"); !q.Equal(dec("2")) {
		t.Fatalf("the second process took %s, want the 2 left unpaid", q)
	}
}

// waitCtx bounds a wait that should end soon, generously.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRedisLeaseWaitEndsWithCtx: the wait for the prefix ends with the caller's ctx (the
// CLI's: SIGTERM), with an error that says what it waited for.
func TestRedisLeaseWaitEndsWithCtx(t *testing.T) {
	srv := redistest.Start(t)
	prefix := "t:" + t.Name() + ":"
	must[*engine.Redis](t)(openLeased(context.Background(), t, srv.URL(), prefix, 0, &logBuffer{}))
	log := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := openLeased(ctx, t, srv.URL(), prefix, 0, log); done <- err }()
	eventually(t, "waiting", func() bool { return strings.Contains(log.String(), "waiting") })
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for the process holding prefix") {
		t.Fatalf("err %v, want one saying it was waiting, wrapping context.Canceled", err)
	}
}

// TestRedisLeaseLost: a process whose lease is gone or another's (it stalled beyond the TTL
// and another process took the prefix) takes no attempt from then on, nor writes anything —
// Redis itself refuses, before the renewal notices — and says so (Failed, an ERROR); its
// Close does not delete another process's lease.
func TestRedisLeaseLost(t *testing.T) {
	srv := redistest.Start(t)
	rc := rawClient(t, srv.URL())
	takeOvers := map[string]func(ctx context.Context, key string) error{
		"deleted":     func(ctx context.Context, key string) error { return rc.Del(ctx, key).Err() },
		"overwritten": func(ctx context.Context, key string) error { return rc.Set(ctx, key, "another", 0).Err() },
	}
	for _, tc := range []struct {
		name     string
		takeOver string
		renewal  bool // the renewal notices first; else a write does
	}{
		{"deleted/renewal notices", "deleted", true},
		{"deleted/write refused", "deleted", false},
		{"overwritten/renewal notices", "overwritten", true},
		{"overwritten/write refused", "overwritten", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			prefix := "t:" + t.Name() + ":"
			log := &logBuffer{}
			r := must[*engine.Redis](t)(openLeased(ctx, t, srv.URL(), prefix, 3*time.Second, log))
			must[bool](t)(r.CreateAccount(ctx, "peer"))
			must[*engine.Record](t)(r.QueueSettlement(ctx, "peer", dec("5"), nil))
			if err := takeOvers[tc.takeOver](ctx, prefix+"lease"); err != nil {
				t.Fatal(err)
			}
			if tc.renewal {
				waitFailed(t, r)
			}
			if a, err := r.StartAttempt(ctx, "peer", "x"); !errors.Is(err, engine.ErrLeaseLost) {
				t.Fatalf("attempt %+v, %v taken without the lease", a, err)
			}
			if _, err := r.QueueSettlement(ctx, "peer", dec("1"), nil); !errors.Is(err, engine.ErrLeaseLost) {
				t.Fatalf("queued without the lease: %v", err)
			}
			if err := r.AckCredit(ctx, "k"); !errors.Is(err, engine.ErrLeaseLost) {
				t.Fatalf("wrote without the lease: %v", err)
			}
			if q := rc.LRange(ctx, prefix+"queue:peer", 0, -1).Val(); len(q) != 1 || q[0] != "5" {
				t.Fatalf("queue %q, want the 5 left as it was", q)
			}
			waitFailed(t, r)
			if !errors.Is(r.Err(), engine.ErrLeaseLost) || !strings.Contains(log.String(), "level=ERROR msg=\"settlement engine: redis: LEASE LOST") {
				t.Fatalf("Err %v; log:\n%s", r.Err(), log)
			}
			if _, err := r.Attempt(ctx, "peer"); !errors.Is(err, engine.ErrLeaseLost) {
				t.Fatalf("read after the loss: %v", err)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if got, err := rc.Get(ctx, prefix+"lease").Result(); tc.takeOver == "overwritten" && got != "another" {
				t.Fatalf("lease after Close %q, %v: Close deleted another process's lease", got, err)
			}
		})
	}
}

// TestRedisLeaseExpiresUnrenewed: a process that cannot renew its lease (it stalls, Redis is
// out of reach) for a whole TTL gives the prefix up: it fails, and the next process takes
// the prefix once Redis expired the lease.
func TestRedisLeaseExpiresUnrenewed(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv)
	prefix := "t:" + t.Name() + ":"
	log := &logBuffer{}
	r := must[*engine.Redis](t)(openLeased(ctx, t, proxy.URL(), prefix, time.Second, log))
	must[bool](t)(r.CreateAccount(ctx, "peer"))
	proxy.FailCommands(prefix+"lease", -1, "ERR injected: Redis out of reach") // the renewals, and every write
	waitFailed(t, r)
	if !strings.Contains(log.String(), "not renewed for longer than its TTL") {
		t.Fatalf("log does not say why:\n%s", log)
	}
	next := must[*engine.Redis](t)(openLeased(waitCtx(t), t, srv.URL(), prefix, time.Second, &logBuffer{}))
	must[*engine.Record](t)(next.QueueSettlement(ctx, "peer", dec("5"), nil))
	if _, err := r.StartAttempt(ctx, "peer", "x"); !errors.Is(err, engine.ErrLeaseLost) {
		t.Fatalf("the process that lost the lease took an attempt: %v", err)
	}
	if a := must[*engine.Attempt](t)(next.StartAttempt(ctx, "peer", "y")); a == nil || !a.Amount.Equal(decimal.NewFromInt(5)) {
		t.Fatalf("the next process took %+v, want 5", a)
	}
}

func waitFailed(t *testing.T, r *engine.Redis) {
	t.Helper()
	select {
	case <-r.Failed():
	case <-waitCtx(t).Done():
		t.Fatal("Failed not closed")
	}
}

// TestServerSettlesNothingOnceTheLeaseIsLost: a server whose store lost its lease calls
// Settle no more — not even for the attempt it was retrying — while the process that took
// the prefix over may.
func TestServerSettlesNothingOnceTheLeaseIsLost(t *testing.T) {
	srv := redistest.Start(t)
	rc := rawClient(t, srv.URL())
	prefix := "t:" + t.Name() + ":"
	store := must[*engine.Redis](t)(openLeased(context.Background(), t, srv.URL(), prefix, 3*time.Second, &logBuffer{}))
	never := &unsure{unknown: 1 << 30} // retried with the same id, again and again
	log := &logBuffer{}
	s := startLogged(t, never, store, log)
	do(t, s, "POST", "/accounts", "", `{"id":"peer"}`)
	if st, b := do(t, s, "POST", "/accounts/peer/settlements", "k1", `{"amount":"500","scale":2}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "tried again", func() bool { return len(never.got()) >= 2 })
	if err := rc.Set(context.Background(), prefix+"lease", "another", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFailed(t, store)
	refused := func() int { return strings.Count(log.String(), "lost the lease") }
	eventually(t, "a retry refused", func() bool { return refused() >= 1 })
	calls := len(never.got()) // a Settle running when the loss was noticed may have ended since
	n := refused()
	eventually(t, "more retries refused", func() bool { return refused() >= n+3 })
	if got := len(never.got()); got != calls {
		t.Fatalf("Settle called %d times after the lease was lost, and after retries were refused", got-calls)
	}
	if st, _ := do(t, s, "POST", "/accounts/peer/settlements", "k2", `{"amount":"100","scale":2}`); st == 201 {
		t.Fatal("a settlement accepted without the lease")
	}
}
