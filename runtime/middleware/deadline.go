package middleware

import (
	"context"
	"sync"
	"time"
)

// Shared expiry deadlines. A context.WithTimeout per packet costs a timer, four allocations
// and an insert into the parent context's child set (under the parent's lock, which every
// packet of a link shares). Packets forwarded within the same deadlineSlot of each other have
// nearly the same expiry, so the expire middleware gives them one context whose deadline is
// the end of their slot: never earlier than any of their expiries, at most deadlineSlot later.
// Contexts are reference-counted and cancelled as soon as no packet uses them and a newer
// slot has taken their place, so only slots with packets in flight hold a timer.
//
// Packets share by cancellation, not by context: the set is keyed by the parent's Done
// channel, which every context of one link has in common even when each packet carries values
// of its own (a persistent store's packet scope wraps every packet's context). A packet whose
// parent is not the one the shared context was made from gets a thin view of it (packetCtx):
// the shared deadline and cancellation, its own values.
const (
	deadlineSlot       = time.Millisecond
	deadlineMaxParents = 64 // idle cancellation keys beyond this are forgotten
)

// deadlines is one pipeline's set of shared contexts: the newest slot per parent cancellation.
type deadlines struct {
	mu   sync.Mutex
	cur  map[<-chan struct{}]*deadlineEntry
	idle int // entries in cur with no packet: forgetIdle has work only when this is > 0
}

type deadlineEntry struct {
	ctx    context.Context
	cancel context.CancelFunc
	parent context.Context // the context ctx was derived from
	// sameOK says parent == another context cannot panic (Comparable): packets of one key
	// share Done but may come with contexts of an incomparable type.
	sameOK bool
	done   <-chan struct{} // parent.Done(): the key in cur
	slot   int64           // deadline, UnixNano rounded up to deadlineSlot
	refs   int
}

func newDeadlines() *deadlines {
	return &deadlines{cur: make(map[<-chan struct{}]*deadlineEntry)}
}

// lease is one packet's use of a deadline context: a shared entry, or a private context and
// its cancel func.
type lease struct {
	ctx    context.Context
	e      *deadlineEntry
	cancel context.CancelFunc
}

// acquireAt returns a context derived from parent that is done at the end of the slot holding
// deadline (a time of the system clock, which a caller has just read: one clock read less per
// packet) and carries parent's values; call release with the lease when the packet is done.
func (d *deadlines) acquireAt(parent context.Context, deadline time.Time) lease {
	at := deadline.UnixNano()
	slot := (at + int64(deadlineSlot) - 1) / int64(deadlineSlot) * int64(deadlineSlot)
	done := parent.Done()
	if !shareable(parent, done) {
		ctx, cancel := context.WithDeadline(parent, time.Unix(0, slot))
		return lease{ctx: ctx, cancel: cancel}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.cur[done]
	if e != nil && e.slot == slot && e.ctx.Err() == nil {
		if e.refs == 0 {
			d.idle--
		}
		e.refs++
		return lease{ctx: e.view(parent), e: e}
	}
	if e != nil && e.refs == 0 {
		d.idle--
		e.cancel()
	}
	if e == nil && len(d.cur) >= deadlineMaxParents {
		if d.idle == 0 { // every key has packets in flight: do not grow the set, nor scan it
			ctx, cancel := context.WithDeadline(parent, time.Unix(0, slot))
			return lease{ctx: ctx, cancel: cancel}
		}
		d.forgetIdle()
	}
	ne := &deadlineEntry{parent: parent, sameOK: Comparable(parent), done: done, slot: slot, refs: 1}
	ne.ctx, ne.cancel = context.WithDeadline(parent, time.Unix(0, slot))
	d.cur[done] = ne
	return lease{ctx: ne.ctx, e: ne}
}

// shareable reports whether parent's cancellation can key the set. A parent that is never
// cancelled (nil Done) shares only when it has no deadline either: the standard library's
// Background, TODO and WithoutCancel contexts.
func shareable(parent context.Context, done <-chan struct{}) bool {
	if done != nil {
		return true
	}
	_, has := parent.Deadline()
	return !has
}

// release ends one packet's use of its context; the last user of a slot that is no longer the
// newest stops its timer.
func (d *deadlines) release(l lease) {
	if l.e == nil {
		l.cancel()
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := l.e
	e.refs--
	switch {
	case e.refs > 0:
	case d.cur[e.done] != e:
		e.cancel()
	default:
		d.idle++
	}
}

// forgetIdle drops the entries no packet uses, so that a pipeline fed by many short-lived
// parents (connections) does not keep them.
func (d *deadlines) forgetIdle() {
	for k, e := range d.cur {
		if e.refs == 0 {
			e.cancel()
			delete(d.cur, k)
		}
	}
	d.idle = 0
}

// view returns the shared context as seen by a packet whose context is parent.
func (e *deadlineEntry) view(parent context.Context) context.Context {
	if e.sameOK && parent == e.parent {
		return e.ctx
	}
	return &packetCtx{Context: e.ctx, values: parent}
}

// packetCtx is a shared deadline context (Deadline, Done, Err) with one packet's values. Its
// AfterFunc method lets contexts derived from it register on the shared context directly, as
// they would on a standard one, instead of each starting a goroutine to watch Done.
type packetCtx struct {
	context.Context
	values context.Context
}

func (c *packetCtx) Value(key any) any { return c.values.Value(key) }

func (c *packetCtx) AfterFunc(f func()) func() bool { return context.AfterFunc(c.Context, f) }
