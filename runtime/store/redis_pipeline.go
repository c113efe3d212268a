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
// before its next write. The scripts of one call travel in one pipeline, never split across
// two senders: a packet's ends (its changes of both accounts becoming final) reach Redis in
// one write, so that a process killed while sending them ends both or neither, as the
// recovery of its instance expects (redis.go). A pipeline that fails fails each of its
// scripts, whose writes the lanes then resolve (redis_lanes.go), as for a single command.

// pipelineSenders is how many pipelines may be in flight at once (each holds a connection
// of the pool while it is). More than one so that a round trip in flight does not stall the
// scripts queued behind it; more than a few only splits the pipelines smaller.
const pipelineSenders = 2

// maxPipeline bounds the scripts of one pipeline, and so the replies a sender reads before
// it hands any of them out.
const maxPipeline = 128

// pipelineTimeout bounds one pipeline's round trip: the replies of every script in it.
const pipelineTimeout = 5 * time.Second

// evalScript is one balance script and, once sent, its reply.
type evalScript struct {
	keys []string
	args []any
	cmd  *redis.Cmd
}

// scriptCall is the scripts of one call, sent together in one pipeline, waiting in the queue
// and then for their replies.
type scriptCall struct {
	scripts []evalScript
	ctx     context.Context // the caller's: a call whose caller gave up is not sent
	done    chan struct{}   // closed once every cmd is set
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
	return p.runAll(ctx, []evalScript{{keys: keys, args: args}})[0]
}

// runAll sends scripts together, in one pipeline, and returns their replies, in order, as
// run does.
func (p *autoPipeline) runAll(ctx context.Context, scripts []evalScript) []*redis.Cmd {
	sc := &scriptCall{scripts: scripts, ctx: ctx, done: make(chan struct{})}
	select {
	case p.queue <- sc:
		select {
		case <-sc.done:
		case <-ctx.Done():
			return failedCmds(ctx, len(scripts), context.Cause(ctx))
		case <-p.bg.Done():
			return failedCmds(ctx, len(scripts), ErrClosed)
		}
	case <-ctx.Done():
		return failedCmds(ctx, len(scripts), context.Cause(ctx))
	case <-p.bg.Done():
		return failedCmds(ctx, len(scripts), ErrClosed)
	}
	cmds := make([]*redis.Cmd, len(scripts))
	for i := range scripts {
		cmds[i] = scripts[i].cmd
	}
	return cmds
}

func failedCmds(ctx context.Context, n int, err error) []*redis.Cmd {
	cmds := make([]*redis.Cmd, n)
	for i := range cmds {
		cmds[i] = failedCmd(ctx, err)
	}
	return cmds
}

func failedCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// fail ends a call whose caller gave up: it was not sent.
func (sc *scriptCall) fail(err error) {
	for i := range sc.scripts {
		sc.scripts[i].cmd = failedCmd(sc.ctx, err)
	}
	close(sc.done)
}

// sender sends what is queued, a pipeline at a time, until the store closes. A pipeline
// takes calls whole: it may pass maxPipeline by the scripts of its last call.
func (p *autoPipeline) sender() {
	batch := make([]*scriptCall, 0, maxPipeline)
	for {
		select {
		case <-p.bg.Done():
			return
		case sc := <-p.queue:
			batch = append(batch[:0], sc)
		}
		n := len(batch[0].scripts)
	gather:
		for n < maxPipeline {
			select {
			case sc := <-p.queue:
				batch = append(batch, sc)
				n += len(sc.scripts)
			default:
				break gather
			}
		}
		p.send(batch)
		clear(batch) // the calls belong to their callers now
	}
}

// send sends batch as one pipeline and hands each call its replies. Calls whose caller gave
// up are not sent. A script the server does not have (a restarted Redis, SCRIPT FLUSH) was
// not run: it is loaded and those scripts sent again, together.
func (p *autoPipeline) send(batch []*scriptCall) {
	var scripts []*evalScript
	live := batch[:0] // in place: the sender's batch, read ahead of where it is written
	for _, sc := range batch {
		if err := sc.ctx.Err(); err != nil {
			sc.fail(context.Cause(sc.ctx))
			continue
		}
		live = append(live, sc)
		for i := range sc.scripts {
			scripts = append(scripts, &sc.scripts[i])
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(p.bg, pipelineTimeout)
	defer cancel()
	p.pipelined(ctx, scripts)
	var again []*evalScript
	for _, s := range scripts {
		if redis.HasErrorPrefix(s.cmd.Err(), "NOSCRIPT") {
			again = append(again, s)
		}
	}
	if len(again) > 0 && balanceScript.Load(ctx, p.c).Err() == nil {
		p.pipelined(ctx, again)
	}
	for _, sc := range live {
		close(sc.done)
	}
}

// pipelined sends scripts in one round trip and sets each one's cmd.
func (p *autoPipeline) pipelined(ctx context.Context, scripts []*evalScript) {
	_, _ = p.c.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, s := range scripts {
			s.cmd = balanceScript.EvalSha(ctx, pl, s.keys, s.args...)
		}
		return nil
	})
}
