package store

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/redis/go-redis/v9"
)

// openLease opens a store on the test's prefix with a lease of the test's choice.
func openLease(t *testing.T, url, instance string, lease time.Duration) *Redis {
	t.Helper()
	r, err := OpenRedis(context.Background(), RedisOptions{URL: url, Instance: instance, Prefix: "t:" + t.Name() + ":", lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// crash stops r as a process killed with its node would: no packet end, no leaving.
func (r *Redis) crash() {
	r.stop()
	r.waitIdle(context.Background())
	r.watching.Wait()
	_ = r.c.Close()
}

// TestRedisReclaimsADeadInstance: a runtime dies for good (its pod is replaced by one of
// another name) with a packet in flight and a reservation; a surviving runtime reverts both
// once the dead one's lease has passed, keeps its own reservation, and removes the dead
// instance's keys.
func TestRedisReclaimsADeadInstance(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const lease = 300 * time.Millisecond
	survivor := openLease(t, srv.URL(), "survivor", lease)
	dead := openLease(t, srv.URL(), "dead", lease)
	mustAdd(ctx, survivor, "alice", 1000)
	done := dead.BeginPacket(ctx) // a fulfilled packet: it stays
	mustAdd(done, dead, "alice", 10)
	if err := dead.EndPacket(done); err != nil {
		t.Fatal(err)
	}
	inflight := dead.BeginPacket(ctx) // in flight when the node died
	mustAdd(inflight, dead, "alice", 7)
	mustReserve(inflight, dead, "bob", 7)
	mustReserve(ctx, survivor, "bob", 4) // the survivor's own packet in flight
	dead.crash()

	eventually(t, "the dead instance's reservation to be released", func() bool {
		b, err := survivor.Get(ctx, "bob")
		return err == nil && b.Pending == 4
	})
	if b, _ := survivor.Get(ctx, "alice"); b != (AccountBalance{Balance: 1010}) {
		t.Fatalf("alice %+v, want 1010: the in-flight raise reverted, the fulfilled one kept", b)
	}
	eventually(t, "the dead instance to be forgotten", func() bool {
		n, _ := survivor.c.Exists(ctx, dead.me.key).Result()
		has, _ := survivor.c.HExists(ctx, survivor.registryKey(), "dead").Result()
		return n == 0 && !has
	})
	for _, f := range []string{"o:dead", "p:dead"} {
		for _, acct := range []string{"alice", "bob"} {
			if has, _ := survivor.c.HExists(ctx, survivor.accountKey(acct), f).Result(); has {
				t.Errorf("%s still has %s", acct, f)
			}
		}
	}
}

// TestRedisReclaimFencesAProcessStillAlive: a runtime not heard of for longer than the lease
// (a pause, a partition) is reclaimed; when it comes back its writes are refused and the store
// says it failed, instead of ending packets that were reverted.
func TestRedisReclaimFencesAProcessStillAlive(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	paused := openLease(t, srv.URL(), "paused", time.Hour) // heartbeats too rare to matter
	pctx := paused.BeginPacket(ctx)
	mustAdd(pctx, paused, "alice", 7)
	// Its last heartbeat, as the others see it, is a minute old.
	old := time.Now().Add(-time.Minute).UnixMilli()
	if err := paused.c.HSet(ctx, paused.registryKey(), "paused", strconv.FormatInt(old, 10)).Err(); err != nil {
		t.Fatal(err)
	}
	survivor := openLease(t, srv.URL(), "survivor", 300*time.Millisecond)
	eventually(t, "the paused instance to be reclaimed", func() bool {
		b, err := survivor.Get(ctx, "alice")
		return err == nil && b.Balance == 0
	})
	if err := paused.EndPacket(pctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("end of a reclaimed packet: %v, want ErrFenced", err)
	}
	select {
	case <-paused.Failed():
	default:
		t.Fatal("the store did not say it failed")
	}
	if _, err := paused.AddWithin(ctx, "alice", 1, nil, nil); !errors.Is(err, ErrFenced) {
		t.Fatalf("write after the reclaim: %v, want ErrFenced", err)
	}
	if b, _ := survivor.Get(ctx, "alice"); b.Balance != 0 {
		t.Fatalf("alice %+v after the fenced writes, want 0", b)
	}
}

// TestRedisCloseLeavesNothingToReclaim: a runtime that stops reverts what it has in flight and
// removes its instance, so no other runtime reclaims it later.
func TestRedisCloseLeavesNothingToReclaim(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	r := openLease(t, srv.URL(), "leaving", time.Hour)
	mustReserve(ctx, r, "bob", 3)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	other := openLease(t, srv.URL(), "other", time.Hour)
	if b, _ := other.Get(ctx, "bob"); b.Pending != 0 {
		t.Fatalf("bob %+v after the close, want no reservation", b)
	}
	n, _ := other.c.Exists(ctx, r.me.key).Result()
	has, _ := other.c.HExists(ctx, other.registryKey(), "leaving").Result()
	if n != 0 || has {
		t.Fatalf("the instance's keys (%d) or registry entry (%v) remain", n, has)
	}
}

// TestRedisLongRecoveryIsNotReclaimed: a runtime whose start-up recovery takes several leases
// (a large keyspace; here its SCAN held in the network) heartbeats meanwhile, so the others do
// not reclaim it, and it starts.
func TestRedisLongRecoveryIsNotReclaimed(t *testing.T) {
	srv := redistest.Start(t)
	const lease = time.Second // heartbeats every 167 ms: only a stalled machine misses a lease
	survivor := openLease(t, srv.URL(), "survivor", lease)
	proxy := redistest.StartProxy(t, srv)
	proxy.HoldCommands("\r\nscan\r\n", 1)
	go func() {
		time.Sleep(3 * lease)
		proxy.SendHeld()
	}()
	r, err := OpenRedis(context.Background(), RedisOptions{URL: proxy.URL(), Instance: "slow", Prefix: survivor.prefix, lease: lease})
	if err != nil {
		t.Fatalf("a start that recovered for 3 leases: %v", err)
	}
	defer r.Close()
	if _, err := r.AddWithin(context.Background(), "a", 1, nil, nil); err != nil {
		t.Fatalf("write after the start: %v", err)
	}
}

// TestRedisOneReclaimerAtATime: a takeover renews the dead instance's heartbeat, so a second
// runtime does not take it over while the first reclaims it.
func TestRedisOneReclaimerAtATime(t *testing.T) {
	srv := redistest.Start(t)
	const lease = 200 * time.Millisecond
	dead := openLease(t, srv.URL(), "dead", lease)
	dead.crash()
	ctx := context.Background()
	c := redisClient(t, srv)
	eventually(t, "the heartbeat to age past the lease", func() bool {
		now, _ := c.Time(ctx).Result()
		v, _ := c.HGet(ctx, dead.registryKey(), "dead").Int64()
		return now.UnixMilli()-v > lease.Milliseconds()
	})
	var took []int
	for _, token := range []string{"first", "second"} {
		id := newIdentity(dead.prefix, "dead", token)
		n, err := takeOverScript.Run(ctx, c, []string{id.key, dead.registryKey()}, "dead", id.token, lease.Milliseconds()).Int()
		if err != nil {
			t.Fatal(err)
		}
		took = append(took, n)
	}
	if took[0] != 1 || took[1] != 0 {
		t.Fatalf("takeovers %v, want the first only", took)
	}
}

func redisClient(t *testing.T, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRedisDrainBesideTheHeartbeat: the deferred writes are sent beside the heartbeats, so a
// Redis that stalls them (here: every end held in the network) does not stop the heartbeats
// and get a live runtime reclaimed.
func TestRedisDrainBesideTheHeartbeat(t *testing.T) {
	srv := redistest.Start(t)
	const lease = time.Second
	proxy := redistest.StartProxy(t, srv)
	r := openLease(t, proxy.URL(), "drainer", lease)
	openLease(t, srv.URL(), "survivor", lease)
	r.laneWait, r.closeWait = time.Millisecond, 100*time.Millisecond
	ctx := context.Background()
	p := r.BeginPacket(ctx)
	mustReserve(p, r, "b", 10)
	var held []*lane
	for len(r.lanes) > 0 {
		held = append(held, <-r.lanes)
	}
	if _, err := r.Commit(p, "b", 10); !errors.Is(err, errDeferred) {
		t.Fatalf("commit: %v, want deferred", err)
	}
	if err := r.EndPacket(p); err != nil { // the commit is not in the scope yet: nothing to end
		t.Fatal(err)
	}
	proxy.HoldCommands("\r\nend\r\n", -1) // the drained commit's end will stall
	for _, l := range held {
		r.lanes <- l
	}
	time.Sleep(3 * lease) // an observation window: the defect shows within it, never a false failure
	if tok, _ := redisClient(t, srv).HGet(ctx, r.me.key, "t").Result(); tok != r.self().token {
		t.Fatal("a live runtime was reclaimed while its deferred writes were being sent")
	}
}

// TestRedisLateStartupRecoveryIsRefused: the first copy of the start-up recovery, held in
// the network past go-redis's timeout (which sent it again), reaches Redis after the process
// began its packets; it is refused (it carries the start-up token), instead of reverting a
// live packet's raise and dropping live reservations.
func TestRedisLateStartupRecoveryIsRefused(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	prefix := "t:" + t.Name() + ":"
	peer := openRedisPrefix(t, srv.URL(), "peer", prefix)
	mustReserve(ctx, peer, "b", 10) // another runtime's packet in flight
	mustAdd(ctx, peer, "a", 1)
	proxy := redistest.StartProxy(t, srv)
	proxy.HoldCommands("\r\nrecover\r\n", 1)
	r := openRedisPrefix(t, proxy.URL(), "late", prefix)
	p := r.BeginPacket(ctx)
	mustAdd(p, r, "a", 10)
	mustReserve(p, r, "b", 5)
	before := proxy.SendHeld()
	eventually(t, "Redis to answer the late recovery", func() bool { return proxy.Replies() > before })
	if _, err := r.Commit(p, "b", 5); err != nil {
		t.Fatal(err)
	}
	if err := r.EndPacket(p); err != nil {
		t.Fatal(err)
	}
	checkBalances(t, r, map[string]AccountBalance{"a": {Balance: 11}, "b": {Balance: -5, Pending: 10}})
}

// TestRedisLateClaimIsRefused: the first copy of the start-up claim reaches Redis late, after
// a commit was applied and its reply lost; it changes nothing: the process keeps its instance,
// and the commit's replay finds its record and is not applied twice.
func TestRedisLateClaimIsRefused(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	proxy := redistest.StartProxy(t, srv)
	proxy.HoldCommands(claimScript.Hash(), 1)
	r := openRedis(t, proxy.URL(), "late")
	mustReserve(ctx, r, "b", 20)
	proxy.DropReplies("\r\ncommit\r\n", 1)
	proxy.FailCommands("\r\ncommit\r\n", -1, "LOADING Redis is loading the dataset in memory")
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := r.Commit(wctx, "b", 10); !errors.Is(err, errResolving) {
		t.Fatalf("commit: %v, want its outcome unknown", err)
	}
	before := proxy.SendHeld()
	eventually(t, "Redis to answer the late claim", func() bool { return proxy.Replies() > before })
	disarm(proxy)
	r.waitIdle(ctx)
	select {
	case <-r.Failed():
		t.Fatal("the late claim took the instance from its own process")
	default:
	}
	checkBalances(t, r, map[string]AccountBalance{"b": {Balance: -10, Pending: 10}})
}

// heartbeatAfterSwitch holds the start-up goroutine after the switch to the running token
// until the heartbeat goroutine has sent a heartbeat (with the start-up token it read
// before): what a descheduled start, or a lost switch reply that go-redis sends again, does.
type heartbeatAfterSwitch struct{ beat chan struct{} }

func (h heartbeatAfterSwitch) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h heartbeatAfterSwitch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h heartbeatAfterSwitch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil {
			return err
		}
		switch script(cmd) {
		case heartbeatScript.Hash():
			select {
			case h.beat <- struct{}{}:
			default:
			}
		case switchScript.Hash():
			select {
			case <-h.beat:
			case <-time.After(10 * time.Second): // bounded; the assertion below is not about time
			}
		}
		return err
	}
}

// script is the SHA of an EVALSHA command, or "".
func script(cmd redis.Cmder) string {
	if a := cmd.Args(); len(a) > 1 && cmd.Name() == "evalsha" {
		s, _ := a[1].(string)
		return s
	}
	return ""
}

// TestRedisHeartbeatDuringTheSwitch: a heartbeat sent with the start-up token that Redis runs
// after the switch to the running token is not taken for a takeover.
func TestRedisHeartbeatDuringTheSwitch(t *testing.T) {
	srv := redistest.Start(t)
	for _, sc := range []*redis.Script{switchScript, heartbeatScript} { // EVALSHA applies at once
		if err := sc.Load(context.Background(), redisClient(t, srv)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	h := heartbeatAfterSwitch{beat: make(chan struct{})}
	r, err := OpenRedis(context.Background(), RedisOptions{URL: srv.URL(), Instance: "solo", Prefix: "t:" + t.Name() + ":",
		lease: 300 * time.Millisecond, hook: h})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	time.Sleep(300 * time.Millisecond) // a few more beats with the running token
	select {
	case <-r.Failed():
		t.Fatal("the store failed: its own start-up heartbeat was taken for a takeover")
	default:
	}
}
