package store

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// TestRedisSentinelFailover: a store opened through Redis Sentinel keeps its balances when the
// master dies: Sentinel promotes the replica, the store follows it, and the balances written
// before the crash (replicated: WAIT) are there, with new writes on top.
func TestRedisSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	sentinel := redistest.StartSentinel(t, master, "ilp")
	ctx := context.Background()
	r, err := OpenRedis(ctx, RedisOptions{URL: "redis://" + sentinel.Addr + "/0?master_name=ilp", Instance: "a", DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 10 {
		if _, err := r.AddWithin(ctx, "alice", 7, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Redis replicates asynchronously: make sure the replica has the writes before the crash.
	direct := redis.NewClient(&redis.Options{Addr: master.Addr})
	if n, err := direct.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT: %d replicas, %v", n, err)
	}
	_ = direct.Close()

	waitSentinelSeesReplica(t, sentinel, "ilp")

	master.Kill()
	deadline := time.Now().Add(30 * time.Second) // down after 300 ms, then the election
	for {
		_, err := r.AddWithin(ctx, "alice", 1, nil, nil)
		if err == nil {
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
