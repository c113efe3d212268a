package middleware

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

func TestBalanceIncoming(t *testing.T) {
	errDown := errors.New("link broke")
	tests := []struct {
		name   string
		start  int64
		amount uint64
		down   ilp.Handler
		code   ilp.ErrorCode // "" for a Fulfill
		msg    string
		want   int64
		called bool
	}{
		{"fulfilled keeps the raise", 0, 60, fulfillH, "", "", 60, true},
		{"up to the maximum", 40, 60, fulfillH, "", "", 100, true},
		{"above the maximum", 41, 60, fulfillH, ilp.CodeInsufficientLiquidity, "exceeded maximum balance.", 41, false},
		{"rejected downstream is refunded", 10, 60, rejectH(ilp.CodeUnreachable, "no"), ilp.CodeUnreachable, "no", 10, true},
		{"downstream error is refunded", 10, 60,
			func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, errDown },
			ilp.CodeInternalError, msgInternal, 10, true},
		{"zero amount skips the store", 100, 0, fulfillH, "", "", 100, true},
		{"amount beyond int64", 0, math.MaxInt64 + 1, fulfillH, ilp.CodeInsufficientLiquidity, msgOverflow, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			_ = env.mem.Set(context.Background(), "src", tt.start)
			acct := config.Account{Balance: &config.Balance{Maximum: i64(100)}}
			down := &counting{h: tt.down}
			h := mustBuild(t, env.Env, "src", acct, onlyEnabled(NameErrorHandler, NameBalance)).Incoming(down.handle)
			_, err := h(context.Background(), prepare(tt.amount))
			if tt.code == "" && err != nil {
				t.Fatal(err)
			}
			if tt.code != "" {
				wantReject(t, err, tt.code, tt.msg)
			}
			if b := balanceOf(t, env.mem, "src"); b.Balance != tt.want {
				t.Fatalf("balance = %d, want %d", b.Balance, tt.want)
			}
			if (down.calls.Load() == 1) != tt.called {
				t.Fatalf("downstream calls = %d", down.calls.Load())
			}
		})
	}
}

func TestBalanceOutgoing(t *testing.T) {
	tests := []struct {
		name   string
		start  int64
		amount uint64
		down   ilp.Handler
		code   ilp.ErrorCode
		want   int64
		called bool
	}{
		{"fulfilled commits", 0, 60, fulfillH, "", -60, true},
		{"down to the minimum", -40, 60, fulfillH, "", -100, true},
		{"below the minimum is refused before sending", -41, 60, fulfillH, ilp.CodeInsufficientLiquidity, -41, false},
		{"rejected downstream releases", 0, 60, rejectH(ilp.CodeTemporaryApplicationError, "x"), ilp.CodeTemporaryApplicationError, 0, true},
		{"downstream error releases", 0, 60,
			func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, errors.New("gone") }, ilp.CodeInternalError, 0, true},
		{"bad fulfillment releases", 0, 60,
			func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return &ilp.Fulfill{}, nil }, ilp.CodeWrongCondition, 0, true},
		{"timeout releases", 0, 60,
			func(ctx context.Context, _ *ilp.Prepare) (*ilp.Fulfill, error) { <-ctx.Done(); return nil, ctx.Err() },
			ilp.CodeTransferTimedOut, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			_ = env.mem.Set(context.Background(), "next", tt.start)
			acct := config.Account{Balance: &config.Balance{Minimum: i64(-100)}}
			var pendingSeen int64
			down := &counting{h: func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
				pendingSeen = balanceOf(t, env.mem, "next").Pending
				return tt.down(ctx, p)
			}}
			pl := mustBuild(t, env.Env, "next", acct, onlyEnabled(NameBalance, NameExpire, NameValidateFulfillment))
			eh := mustBuild(t, env.Env, "src", config.Account{}, onlyEnabled(NameErrorHandler))
			p := prepare(tt.amount)
			p.ExpiresAt = t0.Add(30 * time.Millisecond) // the fake clock stands still; real timers run
			_, err := eh.Incoming(pl.Outgoing(down.handle))(context.Background(), p)
			if tt.code == "" && err != nil {
				t.Fatal(err)
			}
			if tt.code != "" {
				wantReject(t, err, tt.code, "")
			}
			if b := balanceOf(t, env.mem, "next"); b.Balance != tt.want || b.Pending != 0 {
				t.Fatalf("balance = %+v, want %d and nothing pending", b, tt.want)
			}
			if (down.calls.Load() == 1) != tt.called {
				t.Fatalf("downstream calls = %d", down.calls.Load())
			}
			if tt.called && pendingSeen != int64(tt.amount) {
				t.Fatalf("pending while in flight = %d, want %d", pendingSeen, tt.amount)
			}
		})
	}
}

// TestBalanceBothSides runs a packet through the source's incoming and the next hop's outgoing
// pipelines, as the connector does.
func TestBalanceBothSides(t *testing.T) {
	env := newTestEnv(t)
	var changes []int64
	env.OnBalance = func(_ string, b int64) { changes = append(changes, b) }
	lim := config.Account{Balance: &config.Balance{Minimum: i64(-1000), Maximum: i64(1000)}}
	src := mustBuild(t, env.Env, "src", lim, nil)
	dst := mustBuild(t, env.Env, "dst", lim, nil)
	h := src.Incoming(dst.Outgoing(fulfillH))
	if _, err := h(context.Background(), prepare(70)); err != nil {
		t.Fatal(err)
	}
	if s, d := balanceOf(t, env.mem, "src"), balanceOf(t, env.mem, "dst"); s.Balance != 70 || d.Balance != -70 {
		t.Fatalf("src %+v dst %+v", s, d)
	}
	if len(changes) != 2 || changes[0] != 70 || changes[1] != -70 {
		t.Fatalf("OnBalance calls = %v", changes)
	}
}

// failingStore makes chosen operations fail.
type failingStore struct {
	store.Balances
	commit, release, refund bool
	err                     error // what the failing writes return; nil: errStore
}

var errStore = errors.New("disk full")

func (f *failingStore) failure() error {
	if f.err != nil {
		return f.err
	}
	return errStore
}

// appliedLater is an error of a write the store still applies (store.AppliedLater), as the
// Redis store's through an outage.
type appliedLater struct{}

func (appliedLater) Error() string      { return "kept, applied once the store is back" }
func (appliedLater) AppliedLater() bool { return true }

func (f *failingStore) Commit(ctx context.Context, a string, amt int64) (int64, error) {
	if f.commit {
		return 0, f.failure()
	}
	return f.Balances.Commit(ctx, a, amt)
}

func (f *failingStore) Release(ctx context.Context, a string, amt int64) error {
	if f.release {
		return f.failure()
	}
	return f.Balances.Release(ctx, a, amt)
}

func (f *failingStore) AddWithin(ctx context.Context, a string, d int64, min, max *int64) (int64, error) {
	if f.refund && d < 0 {
		return 0, f.failure()
	}
	return f.Balances.AddWithin(ctx, a, d, min, max)
}

func TestStoreErrorsAfterOutcome(t *testing.T) {
	tests := []struct {
		name  string
		fs    failingStore
		down  ilp.Handler
		code  ilp.ErrorCode
		op    string
		inBal int64
	}{
		{"commit fails, fulfill still passes", failingStore{commit: true}, fulfillH, "", opCommit, 50},
		{"release fails, reject passes", failingStore{release: true}, rejectH(ilp.CodeUnreachable, "x"), ilp.CodeUnreachable, opRelease, 0},
		{"refund fails, reject passes", failingStore{refund: true}, rejectH(ilp.CodeUnreachable, "x"), ilp.CodeUnreachable, opRefund, 50},
		// The store applies these later: nothing to reconcile, nothing counted.
		{"commit applied later", failingStore{commit: true, err: appliedLater{}}, fulfillH, "", "", 50},
		{"refund applied later", failingStore{refund: true, err: appliedLater{}}, rejectH(ilp.CodeUnreachable, "x"), ilp.CodeUnreachable, "", 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			fs := tt.fs
			fs.Balances = env.mem
			env.Store = &fs
			acct := config.Account{AssetCode: "USD", AssetScale: 2, Balance: &config.Balance{Minimum: i64(-100), Maximum: i64(100)}}
			src := mustBuild(t, env.Env, "src", acct, nil)
			dst := mustBuild(t, env.Env, "dst", acct, nil)
			f, err := src.Incoming(dst.Outgoing(tt.down))(context.Background(), prepare(50))
			if tt.code == "" {
				if err != nil || f == nil || f.Fulfillment != goodFulfillment {
					t.Fatalf("fulfill lost: %v %v", f, err)
				}
			} else {
				wantReject(t, err, tt.code, "")
			}
			if b := balanceOf(t, env.mem, "src"); b.Balance != tt.inBal {
				t.Fatalf("source balance = %d, want %d", b.Balance, tt.inBal)
			}
			acctLabel := "dst"
			if tt.op == opRefund {
				acctLabel = "src"
			}
			for _, op := range storeErrorOps {
				for _, acct := range []string{"src", "dst"} {
					want := 0.0
					if op == tt.op && acct == acctLabel {
						want = 1
					}
					labels := map[string]string{"operation": op, "account": acct}
					if got := counterValue(t, env.reg, MetricBalanceStoreErrors, labels); got != want {
						t.Errorf("store error counter %v = %v, want %v", labels, got, want)
					}
				}
			}
		})
	}
}

// TestStoreErrorSeriesStartAtZero: every operation's series exists at 0 from the account's
// first pipeline, so that an alert on increase() sees the first store error, not the second.
func TestStoreErrorSeriesStartAtZero(t *testing.T) {
	env := newTestEnv(t)
	mustBuild(t, env.Env, "src", config.Account{AssetCode: "USD", AssetScale: 2}, nil)
	for _, op := range []string{opRefund, opCommit, opRelease, OpEndPacket} {
		v, ok := seriesValue(t, env.reg, MetricBalanceStoreErrors, map[string]string{"account": "src", "operation": op})
		if !ok || v != 0 {
			t.Errorf("%s{operation=%q} = %v (exists: %v), want 0", MetricBalanceStoreErrors, op, v, ok)
		}
	}
}

// TestBalanceLimitMetrics: the limit gauges follow the limits the balance middleware
// enforces, through reloads: set, changed, removed, the middleware disabled, the account gone.
func TestBalanceLimitMetrics(t *testing.T) {
	env := newTestEnv(t)
	acct := func(min, max *int64) config.Account {
		return config.Account{AssetCode: "USD", AssetScale: 2, Balance: &config.Balance{Minimum: min, Maximum: max}}
	}
	steps := []struct {
		name     string
		acct     config.Account
		disabled []string
		min, max *int64 // want; nil: no series
	}{
		{"both limits", acct(i64(-100), i64(500)), nil, i64(-100), i64(500)},
		{"maximum raised", acct(i64(-100), i64(900)), nil, i64(-100), i64(900)},
		{"minimum removed", acct(nil, i64(900)), nil, nil, i64(900)},
		{"no balance settings", config.Account{AssetCode: "USD", AssetScale: 2}, nil, nil, nil},
		{"limits back", acct(i64(-1), i64(1)), nil, i64(-1), i64(1)},
		{"balance middleware disabled", acct(i64(-1), i64(1)), []string{NameBalance}, nil, nil},
		{"enabled again", acct(i64(-1), i64(1)), nil, i64(-1), i64(1)},
	}
	for _, st := range steps {
		mustBuild(t, env.Env, "peer", st.acct, st.disabled)
		for _, g := range []struct {
			name string
			want *int64
		}{{MetricBalanceMinimum, st.min}, {MetricBalanceMaximum, st.max}} {
			v, ok := seriesValue(t, env.reg, g.name, map[string]string{"account": "peer", "asset": "USD", "scale": "2"})
			switch {
			case g.want == nil && ok:
				t.Errorf("%s: %s = %v, want no series", st.name, g.name, v)
			case g.want != nil && (!ok || v != float64(*g.want)):
				t.Errorf("%s: %s = %v (exists: %v), want %d", st.name, g.name, v, ok, *g.want)
			}
		}
	}
	env.Metrics.Forget("peer")
	for _, name := range []string{MetricBalanceMinimum, MetricBalanceMaximum} {
		if _, ok := seriesValue(t, env.reg, name, map[string]string{"account": "peer"}); ok {
			t.Errorf("after Forget: %s still has a series", name)
		}
	}
}

func TestStoreErrorBeforeForwardingIsT00(t *testing.T) {
	env := newTestEnv(t)
	_ = env.mem.Close() // every call now fails with ErrClosed
	acct := config.Account{Balance: &config.Balance{Maximum: i64(100)}}
	down := &counting{h: fulfillH}
	h := mustBuild(t, env.Env, "src", acct, nil).Incoming(down.handle)
	_, err := h(context.Background(), prepare(5))
	wantReject(t, err, ilp.CodeInternalError, msgBalanceStore)
	if down.calls.Load() != 0 {
		t.Fatal("forwarded although the balance could not be recorded")
	}
}

// TestStoreFailureLoggedSparingly: while the balance store fails, every packet is refused
// (T00) and the ERROR saying why is logged once per storeLogEvery, with the count held back.
func TestStoreFailureLoggedSparingly(t *testing.T) {
	env := newTestEnv(t)
	var buf testlog.Buffer
	env.Log = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_ = env.mem.Close() // every call now fails with ErrClosed
	h := mustBuild(t, env.Env, "src", config.Account{Balance: &config.Balance{Maximum: i64(100)}}, nil).Incoming(fulfillH)
	send := func(n int) {
		for range n {
			_, err := h(context.Background(), prepare(5))
			wantReject(t, err, ilp.CodeInternalError, msgBalanceStore)
		}
	}
	send(5)
	env.clock.Add(storeLogEvery)
	send(1)
	var errs []any
	debug := 0
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		switch r["level"] {
		case "ERROR":
			errs = append(errs, r["suppressed"])
		case "DEBUG":
			debug++
		}
	}
	if !reflect.DeepEqual(errs, []any{float64(0), float64(4)}) || debug != 4 {
		t.Errorf("ERROR lines with suppressed %v and %d DEBUG lines; want [0 4] and 4", errs, debug)
	}
}

// TestRebuildKeepsState changes limits between packets: balances and token buckets carry on.
func TestRebuildKeepsState(t *testing.T) {
	env := newTestEnv(t)
	acct := config.Account{
		Balance:   &config.Balance{Maximum: i64(100)},
		RateLimit: &config.RateLimit{RefillPeriod: time.Second, RefillCount: 3},
	}
	send := func(acct config.Account, amount uint64) error {
		_, err := mustBuild(t, env.Env, "a", acct, nil).Incoming(fulfillH)(context.Background(), prepare(amount))
		return err
	}
	if err := send(acct, 60); err != nil {
		t.Fatal(err)
	}
	acct.Balance = &config.Balance{Maximum: i64(200)} // limit change
	if err := send(acct, 100); err != nil {
		t.Fatalf("after raising the maximum: %v", err)
	}
	if b := balanceOf(t, env.mem, "a"); b.Balance != 160 {
		t.Fatalf("balance after rebuild = %d, want 160", b.Balance)
	}
	// Three packets used the three tokens across three builds: the fourth is limited even by a
	// fresh build with the same rate limit.
	if err := send(acct, 1); err != nil {
		t.Fatal(err)
	}
	wantReject(t, send(acct, 1), ilp.CodeRateLimited, "")
	acct.RateLimit = &config.RateLimit{RefillPeriod: time.Second, RefillCount: 3, Capacity: 10}
	wantReject(t, send(acct, 1), ilp.CodeRateLimited, "") // more capacity, not more tokens
	env.clock.Add(time.Second)
	if err := send(acct, 1); err != nil {
		t.Fatalf("after refill: %v", err)
	}
}

// TestPanicDownstreamRestoresBalances checks that a panic below the balance stages refunds the
// source and releases the next hop before the error handler turns it into T00.
func TestPanicDownstreamRestoresBalances(t *testing.T) {
	env := newTestEnv(t)
	lim := config.Account{Balance: &config.Balance{Minimum: i64(-100), Maximum: i64(100)}}
	src := mustBuild(t, env.Env, "src", lim, nil)
	dst := mustBuild(t, env.Env, "dst", lim, nil)
	boom := func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { panic("link bug") }
	_, err := src.Incoming(dst.Outgoing(boom))(context.Background(), prepare(40))
	wantReject(t, err, ilp.CodeInternalError, msgInternal)
	if s, d := balanceOf(t, env.mem, "src"), balanceOf(t, env.mem, "dst"); s != (store.AccountBalance{}) || d != (store.AccountBalance{}) {
		t.Fatalf("after panic: src %+v dst %+v", s, d)
	}
}

func TestDetachKeepsValuesNotCancellation(t *testing.T) {
	parent, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey("k"), "v"), time.Hour)
	d := detach(parent)
	cancel()
	if d.Err() != nil || d.Done() != nil {
		t.Fatal("a detached context followed its parent's cancellation")
	}
	if _, has := d.Deadline(); has {
		t.Fatal("a detached context kept its parent's deadline")
	}
	if d.Value(ctxKey("k")) != "v" {
		t.Fatal("a detached context lost its parent's values")
	}
}

// TestSettleThresholdWithoutEngineWarns: a JS config with settleThreshold on an account
// without a settlement engine is told that no reset happens here (the JS connector resets
// the balance through plugins that move no money).
func TestSettleThresholdWithoutEngineWarns(t *testing.T) {
	const warning = "settleThreshold has no effect without settlementEngine"
	for _, tc := range []struct {
		name string
		acct config.Account
		warn bool
	}{
		{"threshold, no engine", config.Account{Balance: &config.Balance{SettleThreshold: i64(-500)}}, true},
		{"threshold and engine", config.Account{Balance: &config.Balance{SettleThreshold: i64(-500)},
			SettlementEngine: &config.SettlementEngine{URL: "http://127.0.0.1:1"}}, false},
		{"no threshold", config.Account{Balance: &config.Balance{}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs strings.Builder
			env := newTestEnv(t)
			env.Log = slog.New(slog.NewTextHandler(&logs, nil))
			mustBuild(t, env.Env, "a", tc.acct, nil)
			if got := strings.Contains(logs.String(), warning); got != tc.warn {
				t.Errorf("warned = %v, want %v; logs:\n%s", got, tc.warn, logs.String())
			}
		})
	}
}

// TestDetachCache pins what BenchmarkPipeline's allocations rely on: packets that come with
// the same context share one detached context, which still drops the cancellation and keeps
// the values of each packet's own context, including a context of a type that == cannot
// compare (no panic, no sharing).
func TestDetachCache(t *testing.T) {
	var dc detachCache
	one, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey("k"), "one"))
	defer cancel()
	two := context.WithValue(context.Background(), ctxKey("k"), "two")
	if dc.detach(one) != dc.detach(one) {
		t.Error("two packets with the same context got different detached contexts")
	}
	for _, c := range []struct {
		ctx  context.Context
		want any
	}{{one, "one"}, {two, "two"}, {one, "one"}, {incomparableCtx{two, nil}, "two"},
		{wrappedCtx{incomparableCtx{one, nil}}, "one"}, {wrappedCtx{incomparableCtx{one, nil}}, "one"}} {
		d := dc.detach(c.ctx)
		if got := d.Value(ctxKey("k")); got != c.want {
			t.Errorf("packet with value %v sees %v", c.want, got)
		}
		if d.Done() != nil {
			t.Error("a detached context can be cancelled")
		}
	}
}

// incomparableCtx panics when compared with == to another of its type.
type incomparableCtx struct {
	context.Context
	_ func()
}

// wrappedCtx is comparable as a type, but its comparison panics when it holds an
// incomparableCtx.
type wrappedCtx struct{ context.Context }

// TestConfigWarningsOncePerAccount: the warnings about an account's balance settings are given
// once for the account, not at every build of its pipeline (each reload, each reconnect).
func TestConfigWarningsOncePerAccount(t *testing.T) {
	for _, tc := range []struct {
		name, warning string
		acct          config.Account
	}{
		{"no balance", "no balance settings", config.Account{}},
		{"threshold without engine", "settleThreshold has no effect", config.Account{Balance: &config.Balance{SettleThreshold: i64(-500)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs strings.Builder
			env := newTestEnv(t)
			env.Log = slog.New(slog.NewTextHandler(&logs, nil))
			for range 3 {
				mustBuild(t, env.Env, "a", tc.acct, nil)
			}
			if n := strings.Count(logs.String(), tc.warning); n != 1 {
				t.Errorf("warned %d times in 3 builds, want once; logs:\n%s", n, logs.String())
			}
		})
	}
}
