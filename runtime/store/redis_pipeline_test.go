package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/redis/go-redis/v9"
)

// gatedPipelines holds every pipeline of balance scripts, while hold is set, until open is
// closed, and records the ops of each pipeline it lets through at once.
type gatedPipelines struct {
	hold    atomic.Bool
	open    chan struct{}
	once    sync.Once
	entered chan struct{} // one value per pipeline held

	mu  sync.Mutex
	ops [][]string // of each pipeline let through at once, in order
}

// release lets the held pipelines go; a second call does nothing.
func (g *gatedPipelines) release() { g.once.Do(func() { close(g.open) }) }

func (g *gatedPipelines) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gatedPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (g *gatedPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if script(cmds[0]) != balanceScript.Hash() {
			return next(ctx, cmds)
		}
		select {
		case <-g.open:
		default:
			if g.hold.Load() {
				g.entered <- struct{}{}
				<-g.open
				return next(ctx, cmds)
			}
		}
		var ops []string
		for _, c := range cmds {
			ops = append(ops, fmt.Sprint(c.Args()[5])) // evalsha sha 2 key key op
		}
		g.mu.Lock()
		g.ops = append(g.ops, ops)
		g.mu.Unlock()
		return next(ctx, cmds)
	}
}

// sent is the ops of each pipeline let through at once, from the n-th on.
func (g *gatedPipelines) sent(n int) [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ops[n:])
}

// openGated opens a store on a new Redis whose pipelines g can hold (none held yet). The gate
// opens before the store closes, so that a test failing with the senders held ends.
func openGated(t *testing.T, instance string) (*Redis, *gatedPipelines) {
	t.Helper()
	srv := redistest.Start(t)
	g := &gatedPipelines{open: make(chan struct{}), entered: make(chan struct{}, pipelineSenders)}
	r, err := OpenRedis(context.Background(), RedisOptions{URL: srv.URL(), Instance: instance, Prefix: "t:" + t.Name() + ":", hook: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	t.Cleanup(g.release) // runs first
	return r, g
}

// holdSenders holds a reserve on every sender, so that what is written next queues.
func holdSenders(t *testing.T, r *Redis, g *gatedPipelines, wg *sync.WaitGroup) {
	g.hold.Store(true)
	for range pipelineSenders {
		wg.Go(func() {
			if _, err := r.Reserve(context.Background(), "held", 1, nil); err != nil {
				t.Errorf("reserve: %v", err)
			}
		})
		<-g.entered
	}
}

// TestRedisScriptsTravelTogether: the scripts queued while every sender waits for Redis go
// in as few pipelines as there are senders, and a script whose caller gave up while queued
// is not sent (its write is voided, not applied).
func TestRedisScriptsTravelTogether(t *testing.T) {
	ctx := context.Background()
	r, g := openGated(t, "gather")

	var wg sync.WaitGroup
	holdSenders(t, r, g, &wg)
	const queued = 40
	for range queued {
		wg.Go(func() {
			if _, err := r.Reserve(ctx, "a", 1, nil); err != nil {
				t.Errorf("reserve: %v", err)
			}
		})
	}
	gaveUp, cancel := context.WithCancel(ctx)
	abandoned := make(chan error, 1)
	go func() {
		_, err := r.Reserve(gaveUp, "a", 1000, nil)
		abandoned <- err
	}()
	eventually(t, "the scripts to queue", func() bool { return len(r.pipe.queue) == queued+1 })
	cancel()
	if err := <-abandoned; !errors.Is(err, context.Canceled) {
		t.Fatalf("a reserve whose caller gave up: %v, want its context's error", err)
	}
	g.release()
	wg.Wait()
	r.waitIdle(ctx) // the abandoned reserve's void

	sent := 0
	pipelines := g.sent(0)
	for _, ops := range pipelines {
		sent += len(ops)
	}
	// Scripts queued are sent once the senders are free: the 40 reserves, and the void of the
	// abandoned one (which its caller's error made the resolver's), in one pipeline per sender
	// at most, and one more for the void should it come after the others were gathered.
	if sent != queued+1 || len(pipelines) > pipelineSenders+1 {
		t.Fatalf("pipelines of %v after the senders were freed; want %d scripts in at most %d pipelines", pipelines, queued+1, pipelineSenders+1)
	}
	checkBalances(t, r, map[string]AccountBalance{"a": {Pending: queued}, "held": {Pending: pipelineSenders}})
}

// TestRedisPacketEndsTravelTogether: the ends of a packet (its changes of both accounts
// becoming final) are one call in the queue and reach Redis in one pipeline, never split
// across the senders: a process killed while sending them ends both or neither, so that its
// restart reverts the whole packet or none of it.
func TestRedisPacketEndsTravelTogether(t *testing.T) {
	ctx := context.Background()
	r, g := openGated(t, "ends")
	p := r.BeginPacket(ctx)
	mustAdd(p, r, "alice", 10)
	mustReserve(p, r, "bob", 10)
	if _, err := r.Commit(p, "bob", 10); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	holdSenders(t, r, g, &wg)
	from := len(g.sent(0))
	wg.Go(func() {
		if err := r.EndPacket(p); err != nil {
			t.Errorf("end of packet: %v", err)
		}
	})
	eventually(t, "the ends to queue", func() bool { return len(r.pipe.queue) > 0 })
	if n := len(r.pipe.queue); n != 1 {
		t.Fatalf("the ends of one packet are %d calls in the queue; want 1", n)
	}
	g.release()
	wg.Wait()
	if got := g.sent(from); !slices.ContainsFunc(got, func(ops []string) bool { return slices.Equal(ops, []string{"end", "end"}) }) {
		t.Fatalf("pipelines %v; want the packet's two ends in one", got)
	}
	checkBalances(t, r, map[string]AccountBalance{"alice": {Balance: 10}, "bob": {Balance: -10}, "held": {Pending: pipelineSenders}})
}
