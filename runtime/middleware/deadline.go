package middleware

import (
	"context"
	"reflect"
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
const (
	deadlineSlot       = time.Millisecond
	deadlineMaxParents = 64 // idle parents beyond this are forgotten
)

// deadlines is one pipeline's set of shared contexts: the newest slot per parent context.
type deadlines struct {
	mu  sync.Mutex
	cur map[context.Context]*deadlineEntry
}

type deadlineEntry struct {
	ctx    context.Context
	cancel context.CancelFunc
	parent context.Context
	slot   int64 // deadline, UnixNano rounded up to deadlineSlot
	refs   int
}

func newDeadlines() *deadlines {
	return &deadlines{cur: make(map[context.Context]*deadlineEntry)}
}

// lease is one packet's use of a deadline context: a shared entry, or a private context and
// its cancel func.
type lease struct {
	ctx    context.Context
	e      *deadlineEntry
	cancel context.CancelFunc
}

// acquire returns a context derived from parent that is done at the end of the slot holding
// now+left; call release with the lease when the packet is done.
func (d *deadlines) acquire(parent context.Context, left time.Duration) lease {
	at := time.Now().Add(left).UnixNano()
	slot := (at + int64(deadlineSlot) - 1) / int64(deadlineSlot) * int64(deadlineSlot)
	if !shareable(parent) {
		ctx, cancel := context.WithDeadline(parent, time.Unix(0, slot))
		return lease{ctx: ctx, cancel: cancel}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.cur[parent]
	if e != nil && e.slot == slot && e.ctx.Err() == nil {
		e.refs++
		return lease{ctx: e.ctx, e: e}
	}
	if e != nil && e.refs == 0 {
		e.cancel()
	}
	if e == nil && len(d.cur) >= deadlineMaxParents {
		d.forgetIdle()
	}
	ne := &deadlineEntry{parent: parent, slot: slot, refs: 1}
	ne.ctx, ne.cancel = context.WithDeadline(parent, time.Unix(0, slot))
	d.cur[parent] = ne
	return lease{ctx: ne.ctx, e: ne}
}

// shareable reports whether parent can key the map: pointers always can (the contexts of the
// standard library and of the links are pointers), and so can the Background and TODO
// contexts; any other type might hold a slice and panic as a key, so it gets a private context.
func shareable(parent context.Context) bool {
	return reflect.TypeOf(parent).Kind() == reflect.Pointer ||
		parent == context.Background() || parent == context.TODO()
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
	if e.refs == 0 && d.cur[e.parent] != e {
		e.cancel()
	}
}

// forgetIdle drops the entries no packet uses, so that a pipeline fed by many short-lived
// parents (connections) does not keep them.
func (d *deadlines) forgetIdle() {
	for p, e := range d.cur {
		if e.refs == 0 {
			e.cancel()
			delete(d.cur, p)
		}
	}
}
