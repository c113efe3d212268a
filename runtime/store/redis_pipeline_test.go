package store

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/redis/go-redis/v9"
)

// gatedPipelines holds every pipeline of balance scripts until open is closed, and records
// the number of scripts of each pipeline sent once it is.
type gatedPipelines struct {
	open    chan struct{}
	entered chan struct{} // one value per pipeline held

	mu    sync.Mutex
	sizes []int
}

func (g *gatedPipelines) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gatedPipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (g *gatedPipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if script(cmds[0]) != balanceScript.Hash() {
			return next(ctx, cmds)
		}
		select {
		case <-g.open:
			g.mu.Lock()
			g.sizes = append(g.sizes, len(cmds))
			g.mu.Unlock()
		default:
			g.entered <- struct{}{}
			<-g.open
		}
		return next(ctx, cmds)
	}
}

// TestRedisScriptsTravelTogether: the scripts queued while every sender waits for Redis go
// in as few pipelines as there are senders, and a script whose caller gave up while queued
// is not sent (its write is voided, not applied).
func TestRedisScriptsTravelTogether(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	g := &gatedPipelines{open: make(chan struct{}), entered: make(chan struct{}, pipelineSenders)}
	r, err := OpenRedis(ctx, RedisOptions{URL: srv.URL(), Instance: "gather", Prefix: "t:" + t.Name() + ":", hook: g})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })

	var wg sync.WaitGroup
	reserve := func(ctx context.Context) {
		wg.Go(func() {
			if _, err := r.Reserve(ctx, "a", 1, nil); err != nil {
				t.Errorf("reserve: %v", err)
			}
		})
	}
	for range pipelineSenders { // one each: every sender waits for its reply
		reserve(ctx)
		<-g.entered
	}
	const queued = 40
	for range queued {
		reserve(ctx)
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
	close(g.open)
	wg.Wait()
	r.waitIdle(ctx) // the abandoned reserve's void

	g.mu.Lock()
	sizes := g.sizes
	g.mu.Unlock()
	sent := 0
	for _, n := range sizes {
		sent += n
	}
	// Scripts queued are sent once the senders are free: the 40 reserves, and the void of the
	// abandoned one (which its caller's error made the resolver's), in one pipeline per sender
	// at most, and one more for the void should it come after the others were gathered.
	if sent != queued+1 || len(sizes) > pipelineSenders+1 {
		t.Fatalf("pipelines of %v scripts after the senders were freed; want %d scripts in at most %d pipelines", sizes, queued+1, pipelineSenders+1)
	}
	checkBalances(t, r, map[string]AccountBalance{"a": {Pending: pipelineSenders + queued}})
}
