package middleware

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// fullAccount has every setting, so that every built-in applies.
func fullAccount() config.Account {
	return config.Account{
		Relation: config.RelationPeer, AssetCode: "USD", AssetScale: 9,
		Balance:         &config.Balance{Minimum: i64(-1000), Maximum: i64(1000)},
		MaxPacketAmount: u64(500),
		Throughput:      &config.Throughput{IncomingAmount: u64(10000), OutgoingAmount: u64(10000)},
	}
}

func names(mws []Middleware) []string {
	var out []string
	for _, m := range mws {
		out = append(out, m.Name)
	}
	return out
}

func TestBuildOrderAndDisable(t *testing.T) {
	allIn := []string{NameErrorHandler, NameRateLimit, NameMaxPacketAmount, NameThroughput, NameBalance, NameStats}
	allOut := []string{NameDeduplicate, NameThroughput, NameBalance, NameExpire, NameValidateFulfillment, NameStats, NameAlert}
	tests := []struct {
		name     string
		acct     config.Account
		disabled []string
		in, out  []string
	}{
		{"everything", fullAccount(), nil, allIn, allOut},
		{"absent settings drop their middleware", config.Account{AssetCode: "USD"}, nil,
			[]string{NameErrorHandler, NameRateLimit, NameStats},
			[]string{NameDeduplicate, NameExpire, NameValidateFulfillment, NameStats, NameAlert}},
		{"disable some", fullAccount(), []string{NameRateLimit, NameDeduplicate, NameBalance, NameEcho},
			[]string{NameErrorHandler, NameMaxPacketAmount, NameThroughput, NameStats},
			[]string{NameThroughput, NameExpire, NameValidateFulfillment, NameStats, NameAlert}},
		{"disable all", fullAccount(), Builtins, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			p := mustBuild(t, env.Env, "a", tt.acct, tt.disabled)
			if got := names(p.In); !slices.Equal(got, tt.in) {
				t.Errorf("incoming = %v, want %v", got, tt.in)
			}
			if got := names(p.Out); !slices.Equal(got, tt.out) {
				t.Errorf("outgoing = %v, want %v", got, tt.out)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	env := newTestEnv(t)
	if _, _, err := Build(env.Env, "a", fullAccount(), []string{"ratelimit"}); err == nil {
		t.Error("unknown middleware name accepted")
	}
	noStore := env.Env
	noStore.Store = nil
	if _, _, err := Build(noStore, "a", fullAccount(), nil); err == nil {
		t.Error("balance limits without a store accepted")
	}
	if _, _, err := Build(noStore, "a", fullAccount(), []string{NameBalance}); err != nil {
		t.Errorf("balance disabled, no store needed: %v", err)
	}
	noAddr := env.Env
	noAddr.Address = nil
	if _, _, err := Build(noAddr, "a", fullAccount(), nil); err == nil {
		t.Error("missing address accepted")
	}
}

// TestDisabledAllPassesThrough checks that with every built-in disabled the handler is called
// as is: nothing rejects, nothing counts.
func TestDisabledAllPassesThrough(t *testing.T) {
	env := newTestEnv(t)
	in, out, err := Build(env.Env, "a", fullAccount(), Builtins)
	if err != nil {
		t.Fatal(err)
	}
	down := &counting{h: fulfillH}
	h := in(out(down.handle))
	p := prepare(100000) // above maxPacketAmount and balance maximum
	if _, err := h(context.Background(), p); err != nil {
		t.Fatalf("disabled pipeline rejected: %v", err)
	}
	if b := balanceOf(t, env.mem, "a"); b.Balance != 0 {
		t.Fatalf("balance changed with balance disabled: %+v", b)
	}
}

func TestErrorHandler(t *testing.T) {
	shared := &ilp.Reject{Code: ilp.CodeUnreachable, Message: "no route"}
	tests := []struct {
		name    string
		next    ilp.Handler
		code    ilp.ErrorCode
		msg     string
		trigger ilp.Address
	}{
		{"reject without triggeredBy gets ours",
			func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, shared },
			ilp.CodeUnreachable, "no route", testAddr},
		{"reject of a peer keeps its triggeredBy", rejectH(ilp.CodePeerBusy, "busy"), ilp.CodePeerBusy, "busy", "test.peer"},
		{"wrapped reject",
			func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
				return nil, fmt.Errorf("link: %w", &ilp.Reject{Code: ilp.CodeTransferTimedOut, Message: "slow"})
			}, ilp.CodeTransferTimedOut, "slow", testAddr},
		{"plain error is T00 without details",
			func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, errors.New("db password wrong") },
			ilp.CodeInternalError, msgInternal, testAddr},
		{"panic is T00",
			func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { panic("boom") },
			ilp.CodeInternalError, msgInternal, testAddr},
		{"nil fulfill and nil error is T00",
			func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, nil },
			ilp.CodeInternalError, msgInternal, testAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			p := mustBuild(t, env.Env, "a", config.Account{}, onlyEnabled(NameErrorHandler))
			_, err := p.Incoming(tt.next)(context.Background(), prepare(1))
			r := wantReject(t, err, tt.code, tt.msg)
			if r.TriggeredBy != tt.trigger {
				t.Fatalf("triggeredBy = %q, want %q", r.TriggeredBy, tt.trigger)
			}
		})
	}
	if shared.TriggeredBy != "" {
		t.Fatal("errorHandler modified a Reject it did not own")
	}
}

func TestErrorHandlerPassesFulfill(t *testing.T) {
	env := newTestEnv(t)
	p := mustBuild(t, env.Env, "a", config.Account{}, onlyEnabled(NameErrorHandler))
	f, err := p.Incoming(fulfillH)(context.Background(), prepare(1))
	if err != nil || f == nil || f.Fulfillment != goodFulfillment {
		t.Fatalf("got %v %v", f, err)
	}
}

func TestRateLimit(t *testing.T) {
	tests := []struct {
		name    string
		rl      *config.RateLimit
		burst   int           // packets accepted at once
		advance time.Duration // then this much time passes
		refill  int           // and this many more are accepted
	}{
		{"explicit", &config.RateLimit{RefillPeriod: time.Second, RefillCount: 2, Capacity: 3}, 3, time.Second, 2},
		{"capacity defaults to refillCount", &config.RateLimit{RefillPeriod: time.Second, RefillCount: 4}, 4, 500 * time.Millisecond, 2},
		{"JS default 10000 per minute", nil, 10000, 6 * time.Second, 1000},
		{"refill never exceeds capacity", &config.RateLimit{RefillPeriod: time.Second, RefillCount: 5}, 5, time.Hour, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			acct := config.Account{AssetCode: "XRP", AssetScale: 6, RateLimit: tt.rl}
			h := mustBuild(t, env.Env, "a", acct, onlyEnabled(NameRateLimit, NameErrorHandler)).Incoming(fulfillH)
			send := func(n int) {
				t.Helper()
				for i := range n {
					if _, err := h(context.Background(), prepare(1)); err != nil {
						t.Fatalf("packet %d of %d rejected: %v", i+1, n, err)
					}
				}
				_, err := h(context.Background(), prepare(1))
				wantReject(t, err, ilp.CodeRateLimited, "too many requests, throttling.")
			}
			send(tt.burst)
			env.clock.Add(tt.advance)
			send(tt.refill)
			if got := counterValue(t, env.reg, MetricRateLimitedPackets, map[string]string{"account": "a", "asset": "XRP", "scale": "6"}); got != 2 {
				t.Fatalf("rate limited counter = %v, want 2", got)
			}
		})
	}
}

func TestMaxPacketAmount(t *testing.T) {
	tests := []struct {
		amount uint64
		reject bool
	}{{0, false}, {500, false}, {501, true}, {^uint64(0), true}}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.amount), func(t *testing.T) {
			env := newTestEnv(t)
			acct := config.Account{MaxPacketAmount: u64(500)}
			h := mustBuild(t, env.Env, "a", acct, onlyEnabled(NameMaxPacketAmount)).Incoming(fulfillH)
			_, err := h(context.Background(), prepare(tt.amount))
			if !tt.reject {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			r := wantReject(t, err, ilp.CodeAmountTooLarge, fmt.Sprintf("packet size too large. maxAmount=500 actualAmount=%d", tt.amount))
			rd := ilp.NewReader(r.Data)
			if got, max := rd.Uint64(), rd.Uint64(); rd.Err() != nil || rd.Len() != 0 || got != tt.amount || max != 500 {
				t.Fatalf("F08 data = %x", r.Data)
			}
		})
	}
}

func TestThroughput(t *testing.T) {
	tests := []struct {
		name string
		tp   config.Throughput
		out  bool
	}{
		{"incoming", config.Throughput{IncomingAmount: u64(100)}, false},
		{"outgoing", config.Throughput{OutgoingAmount: u64(100), RefillPeriod: time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			acct := config.Account{Throughput: &tt.tp}
			p := mustBuild(t, env.Env, "a", acct, onlyEnabled(NameThroughput))
			h := p.Incoming(fulfillH)
			if tt.out {
				h = p.Outgoing(fulfillH)
			}
			steps := []struct {
				advance time.Duration
				amount  uint64
				ok      bool
			}{
				{0, 60, true}, {0, 50, false}, {0, 40, true}, {0, 1, false},
				{500 * time.Millisecond, 50, true}, {0, 1, false},
				{10 * time.Second, 101, false}, {0, 100, true}, {0, 0, true},
			}
			for i, s := range steps {
				env.clock.Add(s.advance)
				_, err := h(context.Background(), prepare(s.amount))
				if s.ok && err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if !s.ok {
					wantReject(t, err, ilp.CodeInsufficientLiquidity, "exceeded money bandwidth, throttling.")
				}
			}
		})
	}
}

func TestBucketLargeAndBackwards(t *testing.T) {
	now := t0
	b := newBucket(^uint64(0), ^uint64(0), time.Second, now)
	if !b.take(^uint64(0), now) || b.take(1, now) {
		t.Fatal("max bucket: take all then nothing")
	}
	now = now.Add(time.Hour) // elapsed·refill overflows 64 bits: must saturate, not wrap
	if !b.take(^uint64(0), now) {
		t.Fatal("max bucket did not refill")
	}
	now = now.Add(-time.Minute) // clock went back: no refill, no panic
	if b.take(1, now) {
		t.Fatal("refilled on a backwards clock")
	}
	slow := newBucket(1, 1, time.Hour, t0)
	slow.take(1, t0)
	for i := range 59 { // many short steps must add up to a refill
		if slow.take(1, t0.Add(time.Duration(i+1)*time.Minute)) {
			t.Fatalf("refilled early at minute %d", i+1)
		}
	}
	if !slow.take(1, t0.Add(time.Hour)) {
		t.Fatal("fractional refills were lost")
	}
}

// A pipeline that is built but not activated changes nothing the running one of the account
// uses: neither its token buckets' limits nor its metric series. Activate puts them in force.
func TestBuildPendingChangesNothingUntilActivate(t *testing.T) {
	hour := time.Hour
	wide := config.Account{AssetCode: "USD", AssetScale: 2,
		RateLimit:  &config.RateLimit{RefillPeriod: hour, RefillCount: 1000},
		Throughput: &config.Throughput{RefillPeriod: hour, IncomingAmount: u64(1_000_000), OutgoingAmount: u64(1_000_000)}}
	tests := []struct {
		name   string
		change func(*config.Account)
		// want: what the running incoming pipeline answers 3 packets of 100 after the new
		// pipeline is activated ("" = all fulfilled).
		wantAfter ilp.ErrorCode
	}{
		{"rate limit", func(a *config.Account) { a.RateLimit = &config.RateLimit{RefillPeriod: hour, RefillCount: 1} }, ilp.CodeRateLimited},
		{"throughput", func(a *config.Account) {
			a.Throughput = &config.Throughput{RefillPeriod: hour, IncomingAmount: u64(10)}
		}, ilp.CodeInsufficientLiquidity},
		{"asset", func(a *config.Account) { a.AssetCode = "EUR" }, ""},
	}
	send3 := func(h ilp.Handler) ilp.ErrorCode {
		for range 3 {
			if _, err := h(context.Background(), prepare(100)); err != nil {
				var r *ilp.Reject
				if errors.As(err, &r) {
					return r.Code
				}
				return "error"
			}
		}
		return ""
	}
	usd := map[string]string{"account": "a", "asset": "USD", "result": "fulfilled"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			running := mustBuild(t, env.Env, "a", wide, nil).Incoming(fulfillH)
			next := wide
			tt.change(&next)
			pending, err := BuildPending(env.Env, "a", next, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := send3(running); got != "" {
				t.Fatalf("before Activate the running pipeline answered %s: the pending one's limits are in force", got)
			}
			if got := counterValue(t, env.reg, MetricIncomingPackets, usd); got != 3 {
				t.Fatalf("before Activate the running USD series counts %v, want 3", got)
			}
			pending.Activate()
			if got := send3(running); got != tt.wantAfter {
				t.Fatalf("after Activate the running pipeline answered %q, want %q", got, tt.wantAfter)
			}
		})
	}
}
