package middleware

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDeadlinesShareASlot(t *testing.T) {
	d := newDeadlines()
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	left := time.Hour
	before := time.Now().Add(left)
	ls := acquireInOneSlot(t, d, []context.Context{parent, parent})
	after := time.Now().Add(left)
	a, b := ls[0], ls[1]
	if a.e != b.e {
		t.Fatal("two packets of one slot got different contexts")
	}
	dl, ok := a.ctx.Deadline()
	if !ok || dl.Before(before) || dl.After(after.Add(deadlineSlot)) {
		t.Fatalf("deadline %v, want within [%v, %v]", dl, before, after.Add(deadlineSlot))
	}
	d.release(a)
	if a.ctx.Err() != nil {
		t.Fatal("releasing one user cancelled the context the other still uses")
	}
	d.release(b)
	if b.ctx.Err() != nil {
		t.Fatal("the newest slot of a parent was cancelled while it can still be reused")
	}
}

func TestDeadlinesNewSlotRetiresTheOld(t *testing.T) {
	tests := []struct {
		name        string
		releaseOld  bool // before the next slot is taken
		wantOldDone bool // right after the next slot is taken
	}{
		{"old slot idle: cancelled at once", true, true},
		{"old slot in use: kept until released", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeadlines()
			old := d.acquireAt(context.Background(), time.Now().Add(time.Hour))
			if tt.releaseOld {
				d.release(old)
			}
			next := d.acquireAt(context.Background(), time.Now().Add(2*time.Hour))
			defer d.release(next)
			if (old.ctx.Err() != nil) != tt.wantOldDone {
				t.Fatalf("old context err = %v", old.ctx.Err())
			}
			if !tt.releaseOld {
				d.release(old)
				if !errors.Is(old.ctx.Err(), context.Canceled) {
					t.Fatalf("old context not cancelled after its last user: %v", old.ctx.Err())
				}
			}
		})
	}
}

func TestDeadlinesExpireAndFollowTheParent(t *testing.T) {
	d := newDeadlines()
	e := d.acquireAt(context.Background(), time.Now().Add(5*time.Millisecond))
	select {
	case <-e.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("shared context never expired")
	}
	if !errors.Is(e.ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", e.ctx.Err())
	}
	d.release(e)
	if again := d.acquireAt(context.Background(), time.Now().Add(5*time.Millisecond)); again.e == e.e {
		t.Fatal("an expired context was handed out again")
	}

	parent, cancel := context.WithCancel(context.Background())
	p := d.acquireAt(parent, time.Now().Add(time.Hour))
	cancel()
	if !errors.Is(p.ctx.Err(), context.Canceled) {
		t.Fatalf("parent cancel not seen: %v", p.ctx.Err())
	}
	d.release(p)
}

type ctxKey string

// acquireInOneSlot acquires a lease per parent, all within one slot (1 ms): a slow machine
// (the race detector) can cross a slot boundary between two acquires, which then rightly get
// different slots; it tries again, a bounded number of times.
func acquireInOneSlot(t *testing.T, d *deadlines, parents []context.Context) []lease {
	t.Helper()
	for range 100 {
		leases := make([]lease, len(parents))
		same := true
		for i, p := range parents {
			leases[i] = d.acquireAt(p, time.Now().Add(time.Hour))
			same = same && leases[i].e != nil && leases[i].e.slot == leases[0].e.slot
		}
		if same {
			return leases
		}
		for _, l := range leases {
			d.release(l)
		}
	}
	t.Fatal("no acquires within one slot in 100 tries")
	return nil
}

// sliceCtx is not comparable: it could not be a map key itself.
type sliceCtx struct {
	context.Context
	tags []string
}

func TestDeadlinesShareAcrossPacketValues(t *testing.T) {
	d := newDeadlines()
	link, stop := context.WithCancel(context.Background())
	defer stop()
	parents := []context.Context{
		context.WithValue(link, ctxKey("packet"), "a"),
		context.WithValue(link, ctxKey("packet"), "b"),
		sliceCtx{Context: context.WithValue(link, ctxKey("packet"), "c"), tags: []string{"x"}},
	}
	leases := acquireInOneSlot(t, d, parents)
	for i, parent := range parents {
		l := leases[i]
		if l.e == nil || l.e != leases[0].e {
			t.Fatalf("packet %d of one link and slot did not share the deadline context", i)
		}
		if got := l.ctx.Value(ctxKey("packet")); got != parent.Value(ctxKey("packet")) {
			t.Fatalf("packet %d sees value %v, want its own %v", i, got, parent.Value(ctxKey("packet")))
		}
	}
	if len(d.cur) != 1 {
		t.Fatalf("one link, one slot: the set holds %d entries", len(d.cur))
	}
	// A context derived from a packet's view follows the shared deadline context.
	child, cancelChild := context.WithCancel(leases[1].ctx)
	defer cancelChild()
	stop()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a context derived from a packet's view missed the link's cancellation")
	}
	for _, l := range leases {
		if !errors.Is(l.ctx.Err(), context.Canceled) {
			t.Fatalf("err = %v, want Canceled", l.ctx.Err())
		}
		d.release(l)
	}
}

func TestDeadlinesPrivate(t *testing.T) {
	tests := []struct {
		name   string
		parent func() (context.Context, context.CancelFunc)
	}{
		{"never cancelled but with a deadline", func() (context.Context, context.CancelFunc) {
			return deadlineOnly{Context: context.Background(), at: time.Now().Add(time.Hour)}, func() {}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeadlines()
			parent, cancel := tt.parent()
			defer cancel()
			e := d.acquireAt(parent, time.Now().Add(2*time.Hour))
			if e.e != nil || len(d.cur) != 0 {
				t.Fatal("the parent was shared")
			}
			d.release(e)
			if !errors.Is(e.ctx.Err(), context.Canceled) {
				t.Fatal("private context not cancelled on release")
			}
		})
	}
}

// deadlineOnly has a deadline but no Done channel, which no standard context does.
type deadlineOnly struct {
	context.Context
	at time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.at, true }

func TestDeadlinesFullOfBusyKeys(t *testing.T) {
	d := newDeadlines()
	var held []lease
	for range deadlineMaxParents {
		p, cancel := context.WithCancel(context.Background())
		defer cancel()
		held = append(held, d.acquireAt(p, time.Now().Add(time.Hour)))
	}
	p, cancel := context.WithCancel(context.Background())
	defer cancel()
	extra := d.acquireAt(p, time.Now().Add(time.Hour))
	if extra.e != nil || len(d.cur) != deadlineMaxParents {
		t.Fatalf("with every key busy the set grew to %d (want %d and a private context)", len(d.cur), deadlineMaxParents)
	}
	d.release(extra)
	for _, l := range held {
		d.release(l)
	}
	if d.idle != deadlineMaxParents {
		t.Fatalf("idle = %d after every packet ended, want %d", d.idle, deadlineMaxParents)
	}
	q, cancelQ := context.WithCancel(context.Background())
	defer cancelQ()
	l := d.acquireAt(q, time.Now().Add(time.Hour))
	if l.e == nil || len(d.cur) != 1 || d.idle != 0 {
		t.Fatalf("idle keys were not forgotten for a new one: %d entries, idle %d", len(d.cur), d.idle)
	}
	d.release(l)
}

func TestDeadlinesForgetIdleParents(t *testing.T) {
	d := newDeadlines()
	type busyKey struct{}
	busy := context.WithValue(context.Background(), busyKey{}, 0)
	held := d.acquireAt(busy, time.Now().Add(time.Hour))
	for i := range 3 * deadlineMaxParents {
		p, cancel := context.WithCancel(context.Background())
		d.release(d.acquireAt(p, time.Now().Add(time.Hour)))
		cancel()
		if len(d.cur) > deadlineMaxParents+1 {
			t.Fatalf("after %d parents the set holds %d", i+1, len(d.cur))
		}
	}
	if d.cur[busy.Done()] != held.e || held.ctx.Err() != nil {
		t.Fatal("an entry in use was forgotten")
	}
	d.release(held)
}

// TestDeadlinesIncomparableParents: two packets whose contexts share Done but are of a type
// that == cannot compare (a struct holding a func) share the slot without a panic, each
// seeing its own values.
func TestDeadlinesIncomparableParents(t *testing.T) {
	d := newDeadlines()
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	one := incomparableCtx{context.WithValue(base, ctxKey("k"), "one"), nil}
	two := incomparableCtx{context.WithValue(base, ctxKey("k"), "two"), nil}
	at := time.Now().Add(time.Minute)
	l1 := d.acquireAt(one, at)
	defer d.release(l1)
	l2 := d.acquireAt(two, at) // panicked: comparing two incomparableCtx values
	defer d.release(l2)
	if got := l2.ctx.Value(ctxKey("k")); got != "two" {
		t.Errorf("second packet sees %v, want its own value", got)
	}
	if l1.e != l2.e {
		t.Error("packets with the same Done and slot do not share the deadline")
	}
}
