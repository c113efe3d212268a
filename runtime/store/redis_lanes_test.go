package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// laneCase is one write made through a proxy that loses replies: setup runs normally, write
// is the one whose reply is lost, check looks at the store afterwards.
type laneCase struct {
	name  string
	setup func(ctx context.Context, r *Redis) context.Context
	write func(ctx context.Context, r *Redis) error
	want  map[string]AccountBalance
}

func i64(v int64) *int64 { return &v }

// TestRedisLostReplyIsAppliedOnce: Redis applies a write, its reply is lost, go-redis sends it
// again on a new connection; the write counts once and the caller gets the first reply.
func TestRedisLostReplyIsAppliedOnce(t *testing.T) {
	srv := redistest.Start(t)
	cases := []laneCase{
		{name: "checked raise in a packet", setup: packet, write: func(ctx context.Context, r *Redis) error {
			_, err := r.AddWithin(ctx, "a", 10, nil, i64(1000))
			return errors.Join(err, r.EndPacket(ctx))
		}, want: map[string]AccountBalance{"a": {Balance: 10}}},
		{name: "reservation", write: func(ctx context.Context, r *Redis) error {
			_, err := r.Reserve(ctx, "a", 10, i64(-1000))
			return err
		}, want: map[string]AccountBalance{"a": {Pending: 10}}},
		{name: "commit", setup: reserve20, write: func(ctx context.Context, r *Redis) error {
			_, err := r.Commit(ctx, "a", 10)
			return err
		}, want: map[string]AccountBalance{"a": {Balance: -10, Pending: 10}}},
		{name: "release", setup: reserve20, write: func(ctx context.Context, r *Redis) error {
			return r.Release(ctx, "a", 10)
		}, want: map[string]AccountBalance{"a": {Pending: 10}}},
		{name: "end of packet", setup: func(ctx context.Context, r *Redis) context.Context {
			ctx = r.BeginPacket(ctx)
			mustAdd(ctx, r, "a", 10)
			mustReserve(ctx, r, "b", 10)
			_, _ = r.Commit(ctx, "b", 10)
			return ctx
		}, write: func(ctx context.Context, r *Redis) error { return r.EndPacket(ctx) },
			want: map[string]AccountBalance{"a": {Balance: 10}, "b": {Balance: -10}}},
		{name: "settlement due", setup: func(ctx context.Context, r *Redis) context.Context {
			_ = r.Set(ctx, "a", -100)
			return ctx
		}, write: func(ctx context.Context, r *Redis) error {
			amount, err := r.SettleDue(ctx, "a", -50, 0, "out/k")
			if err == nil && amount != 100 {
				return fmt.Errorf("settled %d, want 100", amount)
			}
			return err
		}, want: map[string]AccountBalance{"a": {Balance: 0}}},
		{name: "incoming settlement", write: func(ctx context.Context, r *Redis) error {
			done, err := r.CreditOnce(ctx, "a", -5, "in/k", []byte("v"))
			if err == nil && !done {
				return errors.New("CreditOnce reported the credit recorded before")
			}
			return err
		}, want: map[string]AccountBalance{"a": {Balance: -5}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proxy := redistest.StartProxy(t, srv)
			r := openRedis(t, proxy.URL(), "lanes")
			ctx := context.Background()
			if _, err := r.Get(ctx, "warm-up"); err != nil { // loads the script
				t.Fatal(err)
			}
			if tc.setup != nil {
				ctx = tc.setup(ctx, r)
			}
			proxy.DropReplies(1)
			if err := tc.write(ctx, r); err != nil {
				t.Fatal(err)
			}
			if proxy.Dropped() != 1 {
				t.Fatalf("%d replies dropped, want 1", proxy.Dropped())
			}
			checkBalances(t, r, tc.want)
		})
	}
}

func packet(ctx context.Context, r *Redis) context.Context { return r.BeginPacket(ctx) }

func reserve20(ctx context.Context, r *Redis) context.Context {
	mustReserve(ctx, r, "a", 20)
	return ctx
}

// checkBalances requires the balances and that no packet change is left open.
func checkBalances(t *testing.T, r *Redis, want map[string]AccountBalance) {
	t.Helper()
	ctx := context.Background()
	for acct, w := range want {
		got, err := r.Get(ctx, acct)
		if err != nil || got != w {
			t.Errorf("%s: %+v (%v), want %+v", acct, got, err, w)
		}
		h, _ := r.c.HGetAll(ctx, r.accountKey(acct)).Result()
		if o, open := h["o:"+r.me.name]; open {
			t.Errorf("%s: packet change %s left open", acct, o)
		}
	}
}

// resolveCase is a write whose outcome stays unknown to its caller: its replies are all lost
// (applied) or its command held in the network (not applied, arriving late afterwards).
type resolveCase struct {
	name    string
	setup   func(ctx context.Context, r *Redis) context.Context
	write   func(ctx context.Context, r *Redis) error
	applied bool // the command reached Redis before the caller gave up
	want    map[string]AccountBalance
}

// TestRedisUnknownOutcomeIsResolved: the caller of a write gets an error that says its
// outcome is unknown; once Redis answers again, the resolver leaves the state as if the write
// had failed (a checked raise, a reservation) or succeeded once (a commit, a release), whether
// Redis had applied it or not, and a late copy of the command changes nothing.
func TestRedisUnknownOutcomeIsResolved(t *testing.T) {
	srv := redistest.Start(t)
	raise := func(ctx context.Context, r *Redis) error {
		_, err := r.AddWithin(ctx, "a", 10, nil, i64(1000))
		return err
	}
	reserve := func(ctx context.Context, r *Redis) error {
		_, err := r.Reserve(ctx, "a", 10, i64(-1000))
		return err
	}
	commit := func(ctx context.Context, r *Redis) error {
		_, err := r.Commit(ctx, "a", 10)
		return errors.Join(err, r.EndPacket(ctx))
	}
	release := func(ctx context.Context, r *Redis) error { return r.Release(ctx, "a", 10) }
	inPacket := func(ctx context.Context, r *Redis) context.Context {
		ctx = r.BeginPacket(ctx)
		mustReserve(ctx, r, "a", 20)
		return ctx
	}
	var cases []resolveCase
	for _, applied := range []bool{true, false} {
		cases = append(cases,
			resolveCase{name: "checked raise", write: raise, applied: applied, want: map[string]AccountBalance{"a": {}}},
			resolveCase{name: "reservation", write: reserve, applied: applied, want: map[string]AccountBalance{"a": {}}},
			resolveCase{name: "commit in a packet", setup: inPacket, write: commit, applied: applied,
				want: map[string]AccountBalance{"a": {Balance: -10, Pending: 10}}},
			resolveCase{name: "release", setup: reserve20, write: release, applied: applied,
				want: map[string]AccountBalance{"a": {Pending: 10}}},
		)
	}
	for _, tc := range cases {
		name := tc.name + "/not applied"
		if tc.applied {
			name = tc.name + "/applied"
		}
		t.Run(name, func(t *testing.T) { resolveOne(t, srv, tc) })
	}
}

func resolveOne(t *testing.T, srv *redistest.Server, tc resolveCase) {
	proxy := redistest.StartProxy(t, srv)
	r := openRedis(t, proxy.URL(), "resolve")
	ctx := context.Background()
	if _, err := r.Get(ctx, "warm-up"); err != nil { // loads the script
		t.Fatal(err)
	}
	if tc.setup != nil {
		ctx = tc.setup(ctx, r)
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if tc.applied {
		proxy.DropReplies(-1)
	} else {
		proxy.HoldCommands(1)
	}
	err := tc.write(wctx, r)
	if !errors.Is(err, errResolving) {
		t.Fatalf("write: %v, want an error saying the outcome is unknown", err)
	}
	proxy.DropReplies(0)
	eventually(t, "the resolver to release its lane", func() bool { return len(r.lanes) == cap(r.lanes) })
	checkBalances(t, r, tc.want)
	if !tc.applied {
		for range cap(r.lanes) { // every lane goes past the held command's number
			mustAdd(ctx, r, "other", 1)
		}
		before := proxy.SendHeld() // the late copy
		eventually(t, "Redis to answer the late copy", func() bool { return proxy.Replies() > before })
		checkBalances(t, r, tc.want)
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestRedisFencesAnEarlierProcess: a second process opened under the same instance name makes
// the first one's writes fail, rather than both reverting each other's packets.
func TestRedisFencesAnEarlierProcess(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	first := openRedis(t, srv.URL(), "same")
	mustAdd(ctx, first, "a", 5)
	second := openRedis(t, srv.URL(), "same")
	if _, err := first.AddWithin(ctx, "a", 1, nil, nil); !errors.Is(err, ErrFenced) {
		t.Fatalf("the first process wrote after the second opened: %v", err)
	}
	if err := first.Release(ctx, "a", 1); !errors.Is(err, ErrFenced) {
		t.Fatalf("release: %v, want ErrFenced", err)
	}
	mustAdd(ctx, second, "a", 2)
	if got, _ := second.Get(ctx, "a"); got.Balance != 7 {
		t.Fatalf("balance %d, want 7", got.Balance)
	}
}
