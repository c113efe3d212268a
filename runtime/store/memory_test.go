package store

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
)

func p(v int64) *int64 { return &v }

func TestApplyAdd(t *testing.T) {
	tests := []struct {
		name     string
		start    AccountBalance
		delta    int64
		min, max *int64
		want     int64
		err      error
	}{
		{"no limits", AccountBalance{}, 5, nil, nil, 5, nil},
		{"at maximum", AccountBalance{Balance: 5}, 5, nil, p(10), 10, nil},
		{"above maximum", AccountBalance{Balance: 6}, 5, nil, p(10), 6, ErrAboveMaximum},
		{"below minimum counts pending", AccountBalance{Balance: 0, Pending: 5}, -1, p(-5), nil, 0, ErrBelowMinimum},
		{"at minimum", AccountBalance{Balance: 0, Pending: 4}, -1, p(-5), nil, -1, nil},
		{"overflow up", AccountBalance{Balance: math.MaxInt64}, 1, nil, nil, math.MaxInt64, ErrOverflow},
		{"overflow down", AccountBalance{Balance: math.MinInt64}, -1, nil, nil, math.MinInt64, ErrOverflow},
		{"available overflow", AccountBalance{Balance: math.MinInt64 + 1, Pending: 1}, -1, nil, nil, math.MinInt64 + 1, ErrOverflow},
		{"unchecked refund below minimum", AccountBalance{Balance: 0}, -100, nil, nil, -100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.start.ApplyAdd("a", tt.delta, tt.min, tt.max)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got.Balance != tt.want {
				t.Fatalf("balance = %d, want %d", got.Balance, tt.want)
			}
		})
	}
}

func TestApplyReserveCommitRelease(t *testing.T) {
	tests := []struct {
		name    string
		start   AccountBalance
		op      func(AccountBalance) (AccountBalance, error)
		want    AccountBalance
		wantErr error
	}{
		{"reserve within minimum", AccountBalance{Balance: 10},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyReserve("a", 10, p(0)) },
			AccountBalance{Balance: 10, Pending: 10}, nil},
		{"reserve below minimum", AccountBalance{Balance: 10, Pending: 5},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyReserve("a", 6, p(0)) },
			AccountBalance{Balance: 10, Pending: 5}, ErrBelowMinimum},
		{"reserve unbounded", AccountBalance{},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyReserve("a", 7, nil) },
			AccountBalance{Pending: 7}, nil},
		{"reserve zero", AccountBalance{},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyReserve("a", 0, nil) },
			AccountBalance{}, ErrInvalidAmount},
		{"reserve overflow", AccountBalance{Balance: math.MinInt64 + 3},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyReserve("a", 4, nil) },
			AccountBalance{Balance: math.MinInt64 + 3}, ErrOverflow},
		{"commit", AccountBalance{Balance: 10, Pending: 7},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyCommit(7) },
			AccountBalance{Balance: 3}, nil},
		{"commit more than pending clamps", AccountBalance{Balance: 10, Pending: 2},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyCommit(7) },
			AccountBalance{Balance: 3}, nil},
		{"commit overflow", AccountBalance{Balance: math.MinInt64, Pending: 1},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyCommit(1) },
			AccountBalance{Balance: math.MinInt64, Pending: 1}, ErrOverflow},
		{"release", AccountBalance{Balance: 10, Pending: 7},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyRelease(7) },
			AccountBalance{Balance: 10}, nil},
		{"release negative", AccountBalance{Pending: 7},
			func(b AccountBalance) (AccountBalance, error) { return b.ApplyRelease(-1) },
			AccountBalance{Pending: 7}, ErrInvalidAmount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.op(tt.start)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("state = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLimitErrorDetails(t *testing.T) {
	_, err := AccountBalance{Balance: 9}.ApplyAdd("alice", 2, nil, p(10))
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("want *LimitError, got %T", err)
	}
	if le.Account != "alice" || le.Balance != 9 || le.Proposed != 11 || le.Limit != 10 {
		t.Fatalf("details: %+v", le)
	}
}

func TestMemoryBalances(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	if b, err := m.Get(ctx, "nobody"); err != nil || b != (AccountBalance{}) {
		t.Fatalf("unknown account: %+v %v", b, err)
	}
	if v, err := m.AddWithin(ctx, "a", 100, nil, p(100)); err != nil || v != 100 {
		t.Fatalf("add: %d %v", v, err)
	}
	if _, err := m.AddWithin(ctx, "a", 1, nil, p(100)); !errors.Is(err, ErrAboveMaximum) {
		t.Fatalf("want above maximum, got %v", err)
	}
	if avail, err := m.Reserve(ctx, "a", 60, p(0)); err != nil || avail != 40 {
		t.Fatalf("reserve: %d %v", avail, err)
	}
	if _, err := m.Reserve(ctx, "a", 41, p(0)); !errors.Is(err, ErrBelowMinimum) {
		t.Fatalf("want below minimum, got %v", err)
	}
	if v, err := m.Commit(ctx, "a", 60); err != nil || v != 40 {
		t.Fatalf("commit: %d %v", v, err)
	}
	if err := m.Set(ctx, "a", -3); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.Get(ctx, "a"); b != (AccountBalance{Balance: -3}) {
		t.Fatalf("after set: %+v", b)
	}
	_ = m.Close()
	if _, err := m.AddWithin(ctx, "a", 1, nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// TestMemoryConcurrentLimits checks that the limit holds under concurrency: 64 goroutines race
// to reserve 10 each from a balance that allows exactly 25 reservations.
func TestMemoryConcurrentLimits(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	_ = m.Set(ctx, "a", 250)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Reserve(ctx, "a", 10, p(0)); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok != 25 {
		t.Fatalf("%d reservations succeeded, want 25", ok)
	}
	if b, _ := m.Get(ctx, "a"); b.Pending != 250 {
		t.Fatalf("pending = %d", b.Pending)
	}
}

func TestMemoryKV(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	if _, err := m.GetKey(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
	v := []byte("one")
	_ = m.PutKey(ctx, "k", v)
	v[0] = 'X' // the store must have copied
	got, err := m.GetKey(ctx, "k")
	if err != nil || string(got) != "one" {
		t.Fatalf("get: %q %v", got, err)
	}
	got[0] = 'Y'
	if again, _ := m.GetKey(ctx, "k"); string(again) != "one" {
		t.Fatalf("returned slice aliases the store: %q", again)
	}
	_ = m.DeleteKey(ctx, "k")
	_ = m.DeleteKey(ctx, "k")
	if _, err := m.GetKey(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestMemorySettlements(t *testing.T) {
	testSettlements(t, func(*testing.T) Store { return NewMemory() })
}

func TestCheckedMath(t *testing.T) {
	tests := []struct {
		a, b     int64
		add, sub bool
	}{
		{1, 2, true, true},
		{math.MaxInt64, 1, false, true},
		{math.MinInt64, 1, true, false},
		{math.MinInt64, -1, false, true},
		{-1, math.MaxInt64, true, true},
		{0, math.MinInt64, true, false},
	}
	for _, tt := range tests {
		if _, ok := Add(tt.a, tt.b); ok != tt.add {
			t.Errorf("Add(%d,%d) ok=%v", tt.a, tt.b, ok)
		}
		if _, ok := Sub(tt.a, tt.b); ok != tt.sub {
			t.Errorf("Sub(%d,%d) ok=%v", tt.a, tt.b, ok)
		}
	}
}

func BenchmarkMemoryReserveCommit(b *testing.B) {
	ctx := context.Background()
	m := NewMemory()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Reserve(ctx, "a", 1, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := m.Commit(ctx, "a", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
