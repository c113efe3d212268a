package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Exactly-once writes on Redis.
//
// A write whose reply is lost (the connection broke, the read timed out, the caller gave up)
// may or may not have been applied. go-redis sends such a command again on a new connection,
// and a Redis that applied it the first time would apply it twice: a raise counted twice, a
// reservation released twice (and a limit overspent), a packet ended twice. So every write is
// sent under a lane: a name this process holds for one write at a time, with a sequence number
// that grows with each write. The script records, per lane, the number and the reply of the
// last write it applied; a write sent again with the same number gets the recorded reply and
// changes nothing, and a late copy of an older write (still in a dead connection's buffer) is
// refused as stale.
//
// A write that failed, whatever the error (go-redis returns only its last attempt's, and an
// earlier attempt may have been applied), keeps its lane and number, and is sent again under
// them until Redis answers:
//   - a write whose caller acts on the reply (a due settlement, an incoming one, a key
//     created) is sent again in place while the caller waits, up to inPlaceFor;
//   - otherwise, or then, a resolver goroutine takes it over (resolveLater): a write the caller
//     must have applied (commit, release, end of packet, an add marked MustApply such as a
//     refund, and the former once their caller gave up) is applied, once; a write the caller
//     treats as refused when it fails (any other add, a reservation) is voided if it had not
//     been applied, and undone if it had, so that its error means "no change" once resolved.
//     A balance set is voided if it had not been applied, and left with a WARN if it had (a
//     replay would erase the writes made since).
//
// A conditional delete (DeleteKeyIf) whose outcome is still unknown when the store closes is
// not waited for, and its loss needs no reconciliation (call.mayBeLost).
//
// A write that must be applied but finds no free lane (all held by writes in flight or being
// resolved: Redis unreachable or overloaded) is deferred, and sent beside the heartbeats and
// on Close.
//
// Every write also carries the token of this process (a start-up token, then the running one:
// see start): a process that is not the instance's latest (a second one started under the same
// name, a runtime reclaimed by the others, or a late copy of a dead one's write) is refused
// (ErrFenced).

// ErrFenced refuses the writes of a process whose instance was taken over: by a newer process
// under the same name, or by another runtime that reclaimed it after missing its heartbeats
// (redis_instances.go). Its packets in flight were reverted; it must restart.
var ErrFenced = errors.New("store: redis: this runtime's instance was taken over (by a newer process under the same name, or reclaimed by another runtime after it missed its heartbeats); its packets in flight were reverted and it may no longer write: restart it, and give every runtime its own instance name")

// The script's result codes (redis.lua).
const (
	codeOK       = 0
	codeAboveMax = 1
	codeBelowMin = 2
	codeOverflow = 3
	codeInvalid  = 4
	codeOnce     = 5 // credit, create: the key was there before
	codeFenced   = 6
	codeStale    = 7 // a late copy of a write its lane has gone past
	codeVoided   = 8
	codeConflict = 9 // credit: a guarded entry's key changed
)

// laneWait bounds how long a write waits for a free lane (Redis.laneWait, shorter in tests):
// all lanes busy for that long means Redis is unreachable or overloaded.
const laneWait = 5 * time.Second

// resolveTimeout bounds each attempt of the resolver.
const resolveTimeout = 5 * time.Second

// inPlaceFor bounds how long an inPlace write is sent again while its caller waits (the
// settler's context lasts as long as the store).
const inPlaceFor = 10 * time.Second

// closeWait bounds Close (Redis.closeWait, shorter in tests): twice that for the writes in
// flight, the resolvers and the deferred writes together, once for leaving.
const closeWait = 5 * time.Second

type lane struct {
	id  string // the field in the lane hash
	seq int64  // of the last write sent; below 2^53, exact in Lua
}

// call is one script invocation, kept whole so that the resolver can send it again.
type call struct {
	op       string
	keys     []string // the account's hash, then the KV keys of settle and credit
	amount   string
	min, max *int64
	scoped   bool
	extra    []any
	account  string
	key      string    // the KV key of a write to the KV space alone (create, delif), for logs
	sc       *scope    // the packet's, for a scoped write
	as       *identity // the instance it is made for, when not this process (a reclaim)
	// mayBeLost: nothing is to be reconciled if Close leaves it unknown whether the write was
	// applied (a conditional delete: it happened or not, a late copy still compares first, and
	// no balance depends on it). Close does not wait for it, and its loss is a WARN that does
	// not keep the instance from leaving the registry (see lost).
	mayBeLost bool
}

// logArgs name c in a log line: its op, and the account and amount, or the KV key it writes.
func (c call) logArgs() []any {
	if c.key != "" {
		return []any{"op", c.op, "key", c.key}
	}
	return []any{"op", c.op, "account", c.account, "amount", c.amount}
}

// allMayBeLost reports whether calls are all writes that may be lost (call.mayBeLost).
func allMayBeLost(calls []call) bool {
	for _, c := range calls {
		if !c.mayBeLost {
			return false
		}
	}
	return len(calls) > 0
}

// class says what an unknown outcome becomes once resolved.
type class int

const (
	mustApply class = iota // applied once, in the background if need be
	checked                // failed for its caller: voided or undone in the background
	inPlace                // sent again in place while the caller waits, then as mustApply
)

func newLanes(n int) chan *lane {
	ch := make(chan *lane, n)
	for i := range n {
		ch <- &lane{id: strconv.Itoa(i)}
	}
	return ch
}

// takeLane returns a free lane, waiting at most laneWait.
func (r *Redis) takeLane(ctx context.Context) (*lane, error) {
	select {
	case l := <-r.lanes:
		return l, nil
	default:
	}
	t := time.NewTimer(r.laneWait)
	defer t.Stop()
	select {
	case l := <-r.lanes:
		return l, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("store: redis: waiting for a write lane: %w", context.Cause(ctx))
	case <-r.bg.Done():
		return nil, ErrClosed
	case <-t.C:
		return nil, fmt.Errorf("store: redis: no write lane freed for %s (all held by writes in flight or being resolved): Redis unreachable or overloaded", r.laneWait)
	}
}

// errResolving marks the error of a write whose outcome is unknown and which the resolver
// took over.
var errResolving = &appliedLaterError{"not known whether Redis applied it; resolving it in the background"}

// errDeferred marks the error of a write that must be applied but could not be sent: it is
// kept and sent once Redis is reachable.
var errDeferred = &appliedLaterError{"kept, and sent once Redis is reachable"}

// appliedLaterError is the type of errResolving and errDeferred.
type appliedLaterError struct{ msg string }

func (e *appliedLaterError) Error() string { return e.msg }

// AppliedLater marks the error for store.AppliedLater: the write is kept and applied once.
func (e *appliedLaterError) AppliedLater() bool { return true }

// AppliedLater reports whether err, from a write that must be applied (a commit, a release, a
// refund marked MustApply, a packet's end), says that the store will still apply it, once: its
// outcome was unknown and a resolver has it, or Redis could not be reached and it is deferred.
// Nothing is to be reconciled unless the store later logs that it was lost. It asks the first
// error in err's chain with a method AppliedLater() bool, as the Redis store's have (a store of
// another package, or a test's, may have its own); an error joining several writes' says true
// only when each of them is applied later (joinEnds).
func AppliedLater(err error) bool {
	var a interface{ AppliedLater() bool }
	return errors.As(err, &a) && a.AppliedLater()
}

// write sends c under a lane. A write that failed is handed to the resolver (after its
// retries in place, for inPlace) and fails with errResolving; a mustApply write that found no
// lane is deferred.
func (r *Redis) write(ctx context.Context, c call, cl class) (result, error) {
	if err := r.enterAs(cl, c); err != nil {
		return result{}, err
	}
	defer r.exit(c)
	l, err := r.takeLane(ctx)
	if err != nil {
		if cl == mustApply && r.deferWrite(c) {
			return result{}, fmt.Errorf("%w (%w)", err, errDeferred)
		}
		return result{}, err
	}
	l.seq++
	res, err := r.send(ctx, c, l, c.op)
	if err != nil && cl == inPlace {
		res, err = r.retryInPlace(ctx, c, l, err)
	}
	return r.afterSend(c, cl, l, res, err)
}

// retryInPlace sends c again under lane l until Redis answers, ctx ends or inPlaceFor passes.
func (r *Redis) retryInPlace(ctx context.Context, c call, l *lane, err error) (result, error) {
	giveUp := time.NewTimer(inPlaceFor)
	defer giveUp.Stop()
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		select {
		case <-ctx.Done():
			return result{}, err
		case <-r.bg.Done():
			return result{}, err
		case <-giveUp.C:
			return result{}, err
		case <-time.After(wait):
		}
		res, rerr := r.send(ctx, c, l, c.op)
		if rerr == nil {
			return res, nil
		}
		err = rerr
	}
}

// afterSend returns lane l after c was sent under it, unless c failed: then the resolver keeps
// it.
func (r *Redis) afterSend(c call, cl class, l *lane, res result, err error) (result, error) {
	if err != nil {
		if cl == inPlace {
			cl = mustApply
		}
		r.resolveLater(c, l, cl)
		return result{}, fmt.Errorf("%w (%w)", err, errResolving)
	}
	r.lanes <- l
	if res.code == codeFenced {
		r.fail()
		return result{}, ErrFenced
	}
	return res, nil
}

// writeAll sends the mustApply calls in pipelined round trips, each under its own lane, and
// returns each one's result and error (those without a lane are deferred).
func (r *Redis) writeAll(ctx context.Context, calls []call) ([]result, []error) {
	res, errs := make([]result, len(calls)), make([]error, len(calls))
	if len(calls) == 1 {
		res[0], errs[0] = r.write(ctx, calls[0], mustApply)
		return res, errs
	}
	if err := r.enterAs(mustApply, calls...); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return res, errs
	}
	defer r.exit(calls...)
	for done := 0; done < len(calls); {
		lanes, err := r.takeLanes(ctx, len(calls)-done)
		if err != nil {
			for i := done; i < len(calls); i++ {
				errs[i] = err
				if r.deferWrite(calls[i]) {
					errs[i] = fmt.Errorf("%w (%w)", err, errDeferred)
				}
			}
			break
		}
		r.pipeline(ctx, calls[done:done+len(lanes)], lanes, res[done:], errs[done:])
		done += len(lanes)
	}
	return res, errs
}

// deferWrite keeps a mustApply write that could not be sent, and reports whether it could
// (not once Close has begun: the write is counted as lost, and Close leaves the instance to
// a restart or a reclaim). Ends of packets add up per account, so that the list stays as short
// as the accounts whatever the number of packets; the other writes come from packets in
// flight when Redis became unreachable (a packet that starts then is refused at its first
// write).
func (r *Redis) deferWrite(c call) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		r.lost(c, "it could not be sent before the store closed", nil)
		return false
	}
	if c.op == "end" {
		for i := range r.deferred {
			if d := &r.deferred[i]; d.op == "end" && d.account == c.account {
				if sum, ok := addDecimal(d.amount, c.amount); ok {
					d.amount = sum
					return true
				}
			}
		}
	}
	r.deferred = append(r.deferred, c)
	return true
}

// addDecimal adds two int64 decimal strings, and reports whether the sum fits.
func addDecimal(a, b string) (string, bool) {
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(b, 10, 64)
	sum, ok := Add(x, y)
	if err1 != nil || err2 != nil || !ok {
		return "", false
	}
	return strconv.FormatInt(sum, 10), true
}

// drainDeferred sends the deferred writes, and finishes those applied as the resolver would.
func (r *Redis) drainDeferred(ctx context.Context) {
	r.mu.Lock()
	calls := r.deferred
	r.deferred = nil
	r.mu.Unlock()
	if len(calls) == 0 {
		return
	}
	res, errs := r.writeAll(ctx, calls)
	for i, err := range errs {
		if err == nil {
			r.afterResolve(calls[i], mustApply, res[i])
		}
	}
}

// drainDeferredFor is drainDeferred bounded by d and Close.
func (r *Redis) drainDeferredFor(d time.Duration) {
	ctx, cancel := context.WithTimeout(r.bg, d)
	defer cancel()
	r.drainDeferred(ctx)
}

// lost counts a write left unapplied or unresolved by Close (which then leaves the instance to
// a restart or a reclaim), and says so; one that may be lost (call.mayBeLost) is only said.
func (r *Redis) lost(c call, why string, err error) {
	if c.mayBeLost {
		r.log.Warn("store: redis: a write is lost: "+why+"; harmless, nothing depends on it",
			append(c.logArgs(), "err", err)...)
		return
	}
	r.cutOff.Add(1)
	r.log.Error("store: redis: a write is lost: "+why+"; RECONCILIATION REQUIRED", append(c.logArgs(), "err", err)...)
}

// enterAs counts writes of class cl in flight (as one), unless Close has begun: then they are
// refused, and those that must apply are lost.
func (r *Redis) enterAs(cl class, calls ...call) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closing {
		r.inflight++
		if allMayBeLost(calls) {
			r.mayLose++
		}
		return nil
	}
	if cl == mustApply {
		for _, c := range calls {
			r.lost(c, "it came after the store closed", nil)
		}
	}
	return ErrClosed
}

// exit ends what enterAs(_, calls...) began.
func (r *Redis) exit(calls ...call) {
	r.mu.Lock()
	r.inflight--
	if allMayBeLost(calls) {
		r.mayLose--
	}
	r.mu.Unlock()
}

// waitIdle waits until no write is in flight and no resolver runs, or for ctx, and reports
// whether it got there. It polls: a shutdown path, where writes may still start meanwhile.
func (r *Redis) waitIdle(ctx context.Context) bool { return r.waitWrites(ctx, false) }

// waitNeeded is waitIdle without the writes that may be lost (call.mayBeLost), which Close
// stops rather than waits for.
func (r *Redis) waitNeeded(ctx context.Context) bool { return r.waitWrites(ctx, true) }

func (r *Redis) waitWrites(ctx context.Context, needed bool) bool {
	for {
		r.mu.Lock()
		n := r.inflight + r.resolvers
		if needed {
			n -= r.mayLose
		}
		r.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// takeLanes returns between 1 and n free lanes: it waits for the first one only, so that
// writers never hold lanes while they wait for more.
func (r *Redis) takeLanes(ctx context.Context, n int) ([]*lane, error) {
	l, err := r.takeLane(ctx)
	if err != nil {
		return nil, err
	}
	lanes := []*lane{l}
	for len(lanes) < n {
		select {
		case l := <-r.lanes:
			lanes = append(lanes, l)
			continue
		default:
		}
		break
	}
	return lanes, nil
}

// pipeline sends calls in one pipeline, calls[i] under lanes[i], and sets res[i], errs[i].
// They travel together: the ends of a packet reach Redis in one write (redis_pipeline.go).
func (r *Redis) pipeline(ctx context.Context, calls []call, lanes []*lane, res []result, errs []error) {
	scripts := make([]evalScript, len(calls))
	for i, c := range calls {
		lanes[i].seq++
		scripts[i].keys, scripts[i].args = r.scriptArgs(c, lanes[i], c.op)
	}
	for i, cmd := range r.pipe.runAll(ctx, scripts) {
		got, err := r.reply(calls[i], cmd)
		res[i], errs[i] = r.afterSend(calls[i], mustApply, lanes[i], got, err)
	}
}

// resolveLater sends c again under the same lane and number until Redis answers, then releases
// the lane and finishes c (afterResolve); a checked write is sent as 'void'. It gives up when
// the store closes; a write left unresolved then is, if applied, reverted by the next start of
// this instance when it was part of a packet (see Redis), and lost otherwise.
func (r *Redis) resolveLater(c call, l *lane, cl class) {
	op := c.op
	if cl == checked {
		op = "void"
	}
	r.mu.Lock()
	if r.closing { // Close is about to stop the resolvers
		r.mu.Unlock()
		r.lost(c, "it failed while the store closed, and its outcome cannot be resolved", nil)
		return
	}
	r.resolvers++
	if c.mayBeLost {
		r.mayLose++
	}
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			r.resolvers--
			if c.mayBeLost {
				r.mayLose--
			}
			r.mu.Unlock()
		}()
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			ctx, cancel := context.WithTimeout(r.bg, resolveTimeout)
			res, err := r.send(ctx, c, l, op)
			cancel()
			if err == nil {
				r.lanes <- l
				r.afterResolve(c, cl, res)
				return
			}
			select {
			case <-r.bg.Done():
				r.lost(c, "the store closed before its outcome was known", err)
				return
			case <-time.After(wait):
			}
		}
	}()
}

// afterResolve finishes c once Redis answered the resolver (or a deferred write was sent): a
// checked write that had been applied is undone (its caller was told it failed); an applied
// scoped write joins its packet. Its writes stop with Close.
func (r *Redis) afterResolve(c call, cl class, res result) {
	log := r.log.With(c.logArgs()...)
	switch {
	case res.code == codeFenced:
		r.fail()
		log.Error("store: redis: a write whose reply was lost could not be resolved; RECONCILIATION REQUIRED", "err", ErrFenced)
		return
	case res.code == codeVoided:
		log.Info("store: redis: a write whose reply was lost had not been applied; voided")
		return
	case res.code != 0 && cl == checked:
		log.Info("store: redis: a write whose reply was lost had been refused", "code", res.code)
		return
	case res.code != 0:
		log.Error("store: redis: a write that must apply was refused; RECONCILIATION REQUIRED", "code", res.code)
		return
	}
	ctx := r.bg
	var undo call
	switch {
	case cl == checked && c.op == "set":
		log.Warn("store: redis: a balance set whose reply was lost had been applied although its caller was told it failed")
		return
	case cl == checked && c.op == "reserve":
		undo = call{op: "release", keys: c.keys, amount: c.amount, account: c.account}
	case cl == checked:
		undo = call{op: "add", keys: c.keys, amount: neg(c.amount), scoped: c.scoped, account: c.account}
	case c.sc != nil: // not an undo, whose scoped change cancels the original's in the script
		if err := r.inScope(ctx, c); err != nil {
			log.Error("store: redis: ending a resolved write's packet change failed", "err", err)
		}
		return
	default:
		log.Info("store: redis: a write whose reply was lost had been applied, once")
		return
	}
	log.Info("store: redis: a write whose reply was lost had been applied although its caller was told it failed; undoing it")
	if _, err := r.write(ctx, undo, mustApply); err != nil && !errors.Is(err, errResolving) {
		log.Error("store: redis: undoing it failed; RECONCILIATION REQUIRED", "err", err)
	}
}

// neg is the decimal string of −v for the decimal string of v > math.MinInt64.
func neg(v string) string {
	if v == "0" {
		return v
	}
	if v[0] == '-' {
		return v[1:]
	}
	return "-" + v
}

// send runs the script for c as op under lane l (nil: no lane, for writes that may run
// twice).
func (r *Redis) send(ctx context.Context, c call, l *lane, op string) (result, error) {
	keys, args := r.scriptArgs(c, l, op)
	return r.reply(c, r.pipe.run(ctx, keys, args))
}

// scriptArgs are the KEYS and ARGV of redis.lua for c as op under lane l.
func (r *Redis) scriptArgs(c call, l *lane, op string) ([]string, []any) {
	sc := "0"
	if c.scoped {
		sc = "1"
	}
	keys := make([]string, 0, 1+len(c.keys))
	name, key, token := r.me.name, r.me.key, *r.tok.Load()
	if c.as != nil {
		name, key, token = c.as.name, c.as.key, c.as.token
	}
	keys = append(keys, c.keys[0], key)
	keys = append(keys, c.keys[1:]...)
	laneID, seq := "", int64(0)
	if l != nil {
		laneID, seq = l.id, l.seq
	}
	args := make([]any, 0, 9+len(c.extra))
	args = append(args, op, c.amount, limitArg(c.min), limitArg(c.max), name, sc, token, laneID, seq)
	return keys, append(args, c.extra...)
}

// reply reads the script's reply to c.
func (r *Redis) reply(c call, cmd *redis.Cmd) (result, error) {
	v, err := cmd.Slice()
	if err != nil {
		return result{}, fmt.Errorf("store: redis %s: %w", c.op, err)
	}
	return parseResult(c.op, c.keys[0], v)
}
