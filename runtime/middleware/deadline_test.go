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
	a := d.acquire(parent, left)
	b := d.acquire(parent, left)
	after := time.Now().Add(left)
	if a.e != b.e && a.e.slot == b.e.slot {
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
			old := d.acquire(context.Background(), time.Hour)
			if tt.releaseOld {
				d.release(old)
			}
			next := d.acquire(context.Background(), 2*time.Hour)
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
	e := d.acquire(context.Background(), 5*time.Millisecond)
	select {
	case <-e.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("shared context never expired")
	}
	if !errors.Is(e.ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", e.ctx.Err())
	}
	d.release(e)
	if again := d.acquire(context.Background(), 5*time.Millisecond); again.e == e.e {
		t.Fatal("an expired context was handed out again")
	}

	parent, cancel := context.WithCancel(context.Background())
	p := d.acquire(parent, time.Hour)
	cancel()
	if !errors.Is(p.ctx.Err(), context.Canceled) {
		t.Fatalf("parent cancel not seen: %v", p.ctx.Err())
	}
	d.release(p)
}

type valueCtx struct {
	context.Context
	tags []string // makes the type unusable as a map key
}

func TestDeadlinesNonPointerParent(t *testing.T) {
	d := newDeadlines()
	parent := valueCtx{Context: context.Background(), tags: []string{"x"}}
	e := d.acquire(parent, time.Hour)
	if e.e != nil || len(d.cur) != 0 {
		t.Fatal("a non-pointer parent was used as a map key")
	}
	if e.ctx.Value("missing") != nil || e.ctx.Err() != nil {
		t.Fatal("private context is not derived from its parent")
	}
	d.release(e)
	if !errors.Is(e.ctx.Err(), context.Canceled) {
		t.Fatal("private context not cancelled on release")
	}
}

func TestDeadlinesForgetIdleParents(t *testing.T) {
	d := newDeadlines()
	busy := context.WithValue(context.Background(), struct{}{}, 0)
	held := d.acquire(busy, time.Hour)
	for i := range 3 * deadlineMaxParents {
		p, cancel := context.WithCancel(context.Background())
		d.release(d.acquire(p, time.Hour))
		cancel()
		if len(d.cur) > deadlineMaxParents+1 {
			t.Fatalf("after %d parents the set holds %d", i+1, len(d.cur))
		}
	}
	if d.cur[busy] != held.e || held.ctx.Err() != nil {
		t.Fatal("an entry in use was forgotten")
	}
	d.release(held)
}
