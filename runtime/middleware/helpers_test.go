package middleware

import (
	"context"
	"crypto/sha256"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/internal/testclock"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

const testAddr ilp.Address = "test.conn"

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type testEnv struct {
	Env
	clock *testclock.Clock
	mem   *store.Memory
	reg   *prometheus.Registry
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(t0)
	mem := store.NewMemory()
	return &testEnv{
		Env: Env{
			Address: func() ilp.Address { return testAddr },
			Clock:   clock,
			Store:   mem,
			State:   NewState(),
			Metrics: m,
			Alerts:  NewAlerts(clock),
		},
		clock: clock, mem: mem, reg: reg,
	}
}

var (
	goodFulfillment = [32]byte{1, 2, 3}
	goodCondition   = sha256.Sum256(goodFulfillment[:])
)

// prepare returns a Prepare expiring 10 s after the fake clock's start.
func prepare(amount uint64) *ilp.Prepare {
	return &ilp.Prepare{Amount: amount, ExpiresAt: t0.Add(10 * time.Second), ExecutionCondition: goodCondition,
		Destination: "test.bob", Data: []byte("hello")}
}

// counting is a downstream handler that counts its calls.
type counting struct {
	calls atomic.Int64
	h     ilp.Handler
}

func (c *counting) handle(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	c.calls.Add(1)
	return c.h(ctx, p)
}

func fulfillH(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
	return &ilp.Fulfill{Fulfillment: goodFulfillment}, nil
}

func rejectH(code ilp.ErrorCode, msg string) ilp.Handler {
	return func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, &ilp.Reject{Code: code, TriggeredBy: "test.peer", Message: msg}
	}
}

func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

// onlyEnabled returns the disable list that keeps just the named built-ins.
func onlyEnabled(keep ...string) []string {
	var out []string
	for _, n := range Builtins {
		found := false
		for _, k := range keep {
			found = found || k == n
		}
		if !found {
			out = append(out, n)
		}
	}
	return out
}

func mustBuild(t testing.TB, env Env, id string, acct config.Account, disabled []string) *Pipelines {
	t.Helper()
	p, err := BuildPipelines(env, id, acct, disabled)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func wantReject(t *testing.T, err error, code ilp.ErrorCode, msg string) *ilp.Reject {
	t.Helper()
	r, ok := err.(*ilp.Reject)
	if !ok {
		t.Fatalf("want *ilp.Reject %s, got %T %v", code, err, err)
	}
	if r.Code != code || (msg != "" && r.Message != msg) {
		t.Fatalf("reject = %s %q, want %s %q", r.Code, r.Message, code, msg)
	}
	if r.TriggeredBy == "" {
		t.Fatalf("reject without triggeredBy: %+v", r)
	}
	return r
}

func balanceOf(t *testing.T, s store.Balances, id string) store.AccountBalance {
	t.Helper()
	b, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
