package store

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Automatic pipelining of the balance script.
//
// A packet makes four writes, each waiting for its reply. Sent one command per round trip,
// every write costs a write and a read system call on both sides and the wake-up of the
// goroutine waiting for it; on a machine whose cores the connector shares with Redis, that
// is most of the CPU a packet costs. So the scripts of concurrent packets travel together:
// each joins a queue, and a few senders each take whatever is queued and send it as one
// pipeline (one write, one read of the replies). Nothing waits for company: a sender that
// finds one script queued sends it alone at once, so a lone packet pays only the hand-off,
// and scripts gather only while the senders are busy.
//
// Scripts are applied in no particular order across the queue, as they were across the
// connections of the pool: each is atomic on its own, and a packet waits for each reply
// before its next write. A pipeline that fails fails each of its scripts, whose writes the
// lanes then resolve (redis_lanes.go), as for a single command.

// pipelineSenders is how many pipelines may be in flight at once (each holds a connection
// of the pool while it is). More than one so that a round trip in flight does not stall the
// scripts queued behind it; more than a few only splits the pipelines smaller.
const pipelineSenders = 2

// maxPipeline bounds the scripts of one pipeline, and so the replies a sender reads before
// it hands any of them out.
const maxPipeline = 128

// pipelineTimeout bounds one pipeline's round trip: the replies of every script in it.
const pipelineTimeout = 5 * time.Second

// scriptCall is one balance script waiting in the queue, and then its reply.
type scriptCall struct {
	keys []string
	args []any
	ctx  context.Context // the caller's: a script whose caller gave up is not sent
	cmd  *redis.Cmd
	done chan struct{} // closed once cmd is set
}

// autoPipeline queues balance scripts and sends them in pipelines.
type autoPipeline struct {
	c     *redis.Client
	bg    context.Context // ends the senders (the store's, cancelled by Close)
	queue chan *scriptCall
}

// startAutoPipeline starts the senders; they stop when bg ends, and wg waits for them.
func startAutoPipeline(bg context.Context, c *redis.Client, wg *sync.WaitGroup) *autoPipeline {
	p := &autoPipeline{c: c, bg: bg, queue: make(chan *scriptCall, 4*maxPipeline)}
	for range pipelineSenders {
		wg.Go(p.sender)
	}
	return p
}

// run sends the script with keys and args and returns its reply; the reply is an error when
// ctx ends or the store closes first (the script may still be sent: its lane resolves it).
func (p *autoPipeline) run(ctx context.Context, keys []string, args []any) *redis.Cmd {
	return p.wait(ctx, p.enqueue(ctx, keys, args))
}

// enqueue queues a script and returns it, or a call already failed if ctx or the store ended
// first.
func (p *autoPipeline) enqueue(ctx context.Context, keys []string, args []any) *scriptCall {
	sc := &scriptCall{keys: keys, args: args, ctx: ctx, done: make(chan struct{})}
	select {
	case p.queue <- sc:
	case <-ctx.Done():
		sc.fail(context.Cause(ctx))
	case <-p.bg.Done():
		sc.fail(ErrClosed)
	}
	return sc
}

// wait returns sc's reply once it has one, or an error when ctx or the store ends first.
func (p *autoPipeline) wait(ctx context.Context, sc *scriptCall) *redis.Cmd {
	select {
	case <-sc.done:
		return sc.cmd
	case <-ctx.Done():
		return failedCmd(ctx, context.Cause(ctx))
	case <-p.bg.Done():
		return failedCmd(ctx, ErrClosed)
	}
}

func failedCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

func (sc *scriptCall) fail(err error) {
	sc.cmd = failedCmd(sc.ctx, err)
	close(sc.done)
}

// sender sends what is queued, a pipeline at a time, until the store closes.
func (p *autoPipeline) sender() {
	batch := make([]*scriptCall, 0, maxPipeline)
	for {
		select {
		case <-p.bg.Done():
			return
		case sc := <-p.queue:
			batch = append(batch[:0], sc)
		}
	gather:
		for len(batch) < maxPipeline {
			select {
			case sc := <-p.queue:
				batch = append(batch, sc)
			default:
				break gather
			}
		}
		p.send(batch)
		clear(batch) // the calls belong to their callers now
	}
}

// send sends batch as one pipeline and hands each call its reply. Calls whose caller gave
// up are not sent. A script the server does not have (a restarted Redis, SCRIPT FLUSH) was
// not run: it is loaded and those calls sent again.
func (p *autoPipeline) send(batch []*scriptCall) {
	live := batch[:0] // in place: the sender's batch, read ahead of where it is written
	for _, sc := range batch {
		if err := sc.ctx.Err(); err != nil {
			sc.fail(context.Cause(sc.ctx))
			continue
		}
		live = append(live, sc)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(p.bg, pipelineTimeout)
	defer cancel()
	p.pipelined(ctx, live)
	again := live[:0:0]
	for _, sc := range live {
		if redis.HasErrorPrefix(sc.cmd.Err(), "NOSCRIPT") {
			again = append(again, sc)
		}
	}
	if len(again) > 0 && balanceScript.Load(ctx, p.c).Err() == nil {
		p.pipelined(ctx, again)
	}
	for _, sc := range live {
		close(sc.done)
	}
}

// pipelined sends calls in one round trip and sets each one's cmd.
func (p *autoPipeline) pipelined(ctx context.Context, calls []*scriptCall) {
	_, _ = p.c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, sc := range calls {
			sc.cmd = balanceScript.EvalSha(ctx, pl, sc.keys, sc.args...)
		}
		return nil
	})
}
