package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// TestRedisSentinelFailover: a store opened through Redis Sentinel keeps its balances when the
// master dies: Sentinel promotes the replica, the store follows it, and the balances written
// before the crash (on the replica before each write returned: waitReplicas) are there, with
// new writes on top.
func TestRedisSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	sentinel := redistest.StartSentinel(t, master, "ilp")
	ctx := context.Background()
	waitSentinelSeesReplica(t, sentinel, "ilp")
	r, err := OpenRedis(ctx, RedisOptions{URL: "redis://" + sentinel.Addr + "/0?master_name=ilp", Instance: "a",
		DialTimeout: time.Second, WaitReplicas: 1, WaitTimeout: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 10 {
		if _, err := r.AddWithin(ctx, "alice", 7, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	master.Kill()
	deadline := time.Now().Add(30 * time.Second) // down after 300 ms, then the election
	for {
		// The new master has no replica left to wait for: ErrNotReplicated says the write is
		// on it, unreplicated. Other errors (refused, READONLY) wrote nothing.
		_, err := r.AddWithin(ctx, "alice", 1, nil, nil)
		if err == nil || errors.Is(err, ErrNotReplicated) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write through Sentinel 30 s after the master died: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b, err := r.Get(ctx, "alice"); err != nil || b.Balance != 71 {
		t.Fatalf("balance after the failover = %+v, %v; want 70 from before and 1 after", b, err)
	}
	promoted := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer promoted.Close()
	if role, err := promoted.Do(ctx, "ROLE").Slice(); err != nil || len(role) == 0 || role[0] != "master" {
		t.Errorf("the replica's role after the failover = %v, %v; want master", role, err)
	}
}

// waitSentinelSeesReplica waits until the Sentinel lists a connected replica of master, which
// it can promote (it learns replicas from the master, every few seconds at most).
func waitSentinelSeesReplica(t *testing.T, sentinel *redistest.Server, master string) {
	t.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		replicas, err := c.Replicas(context.Background(), master).Result()
		for _, r := range replicas {
			if flags := r["flags"]; flags == "slave" || flags == "replica" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Sentinel sees no connected replica of %s after 30 s: %v %v", master, replicas, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisWaitReplicas: with waitReplicas, every durable write is on the replica when it
// returns — a packet's balances at its end, and writes outside packets — and a master without
// the replicas it needs says so (ErrNotReplicated) instead of reporting a write it may lose.
func TestRedisWaitReplicas(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	ctx := context.Background()
	r, err := OpenRedis(ctx, RedisOptions{URL: "redis://" + master.Addr + "/0", Instance: "a", WaitReplicas: 1, WaitTimeout: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fromReplica := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer fromReplica.Close()
	onReplica := func(account string) string {
		return fromReplica.HGet(ctx, r.accountKey(account), "b").Val()
	}

	pctx := r.BeginPacket(ctx)
	if _, err := r.AddWithin(pctx, "alice", 5, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := r.EndPacket(pctx); err != nil {
		t.Fatalf("EndPacket: %v", err)
	}
	if got := onReplica("alice"); got != "5" {
		t.Errorf("alice on the replica after the packet = %q, want 5", got)
	}
	if err := r.Set(ctx, "bob", 9); err != nil {
		t.Fatal(err)
	}
	if got := onReplica("bob"); got != "9" {
		t.Errorf("bob on the replica after Set = %q, want 9", got)
	}
	if created, err := r.CreateKey(ctx, "k", []byte("v")); err != nil || !created {
		t.Fatalf("CreateKey: %v %v", created, err)
	}
	if got := fromReplica.Get(ctx, r.kvKey("k")).Val(); got != "v" {
		t.Errorf("key on the replica = %q, want v", got)
	}

	replica.Kill()
	short, err := OpenRedis(ctx, RedisOptions{URL: "redis://" + master.Addr + "/0", Instance: "b", WaitReplicas: 1, WaitTimeout: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if err := short.PutKey(ctx, "k2", []byte("v")); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("PutKey without a replica: %v, want ErrNotReplicated", err)
	}
	pctx = short.BeginPacket(ctx)
	if _, err := short.AddWithin(pctx, "alice", 1, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := short.EndPacket(pctx); !errors.Is(err, ErrNotReplicated) {
		t.Errorf("EndPacket without a replica: %v, want ErrNotReplicated", err)
	}
	if b, err := short.Get(ctx, "alice"); err != nil || b.Balance != 6 {
		t.Errorf("alice on the master = %+v, %v; want 6: the write stays, only its replication is missing", b, err)
	}
}
