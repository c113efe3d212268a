package middleware

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// counterValue reads one series from reg; 0 when it does not exist.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := seriesValue(t, reg, name, labels)
	return v
}

// seriesValue reads the first series of name from reg whose labels include labels, and
// reports whether there is one.
func seriesValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	m := findSeries(t, reg, name, labels)
	switch {
	case m == nil:
		return 0, false
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	}
	return m.Gauge.GetValue(), true
}

// findSeries is the first series of name from reg whose labels include labels; nil: none.
func findSeries(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				return m
			}
		}
	}
	return nil
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// blocked is a downstream that fulfills once release is closed.
func blocked(release chan struct{}) *counting {
	return &counting{h: func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		<-release
		return &ilp.Fulfill{Fulfillment: goodFulfillment}, nil
	}}
}

func TestDeduplicateConcurrentDuplicate(t *testing.T) {
	env := newTestEnv(t)
	release := make(chan struct{})
	down := blocked(release)
	h := mustBuild(t, env.Env, "a", config.Account{}, onlyEnabled(NameDeduplicate)).Outgoing(down.handle)
	var wg sync.WaitGroup
	results := make([]*ilp.Fulfill, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := h(context.Background(), prepare(10))
			if err != nil {
				t.Error(err)
			}
			results[i] = f
		}()
	}
	// Wait until one copy is in flight and the other is waiting on it (bounded).
	for i := 0; down.calls.Load() == 0 && i < 1000; i++ {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := down.calls.Load(); n != 1 {
		t.Fatalf("downstream calls = %d, want 1", n)
	}
	if results[0] == nil || results[0] != results[1] {
		t.Fatalf("duplicates did not share the outcome: %p %p", results[0], results[1])
	}
}

// TestDeduplicateForgetsRejects: only a Fulfill answers later copies. A packet refused by our
// own balance check is sent once it fits again (here: a smaller copy), and one rejected by the
// next hop with a temporary error is sent again when repeated.
func TestDeduplicateForgetsRejects(t *testing.T) {
	env := newTestEnv(t)
	twenties := 0 // the next hop refuses the first packet of 20
	down := &counting{h: func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if p.Amount == 20 {
			twenties++
		}
		if p.Amount == 20 && twenties == 1 {
			return rejectH(ilp.CodeInsufficientLiquidity, "try later")(ctx, p)
		}
		return fulfillH(ctx, p)
	}}
	acct := fullAccount()
	acct.MaxPacketAmount, acct.Throughput = nil, nil
	h := mustBuild(t, env.Env, "peer", acct, nil).Outgoing(down.handle)
	big, small, twenty := prepare(2000), prepare(10), prepare(20) // the balance's minimum is -1000
	twenty.Data = []byte("other")
	steps := []struct {
		name  string
		p     *ilp.Prepare
		code  ilp.ErrorCode // "": fulfilled
		calls int64
	}{
		{"over the balance minimum: refused before sending", big, ilp.CodeInsufficientLiquidity, 0},
		{"a smaller copy fits: sent", small, "", 1},
		{"the next hop says try later", twenty, ilp.CodeInsufficientLiquidity, 2},
		{"the same packet again: sent again", twenty, "", 3},
		{"and now a copy of a fulfilled one: from the cache", twenty, "", 3},
	}
	for _, s := range steps {
		_, err := h(context.Background(), s.p)
		var rj *ilp.Reject
		switch {
		case s.code == "" && err != nil, s.code != "" && (!errors.As(err, &rj) || rj.Code != s.code):
			t.Fatalf("%s: %v, want %q", s.name, err, s.code)
		case down.calls.Load() != s.calls:
			t.Fatalf("%s: %d sent, want %d", s.name, down.calls.Load(), s.calls)
		}
	}
}

// TestDeduplicateCopyEndsAtItsOwnExpiry: a copy that waits for the first one is answered R00
// when its own, earlier expiry passes, whatever the first one gets later.
func TestDeduplicateCopyEndsAtItsOwnExpiry(t *testing.T) {
	env := newTestEnv(t)
	release := make(chan struct{})
	down := blocked(release)
	h := mustBuild(t, env.Env, "a", config.Account{}, onlyEnabled(NameDeduplicate)).Outgoing(down.handle)
	first := make(chan error, 1)
	go func() { _, err := h(context.Background(), prepare(10)); first <- err }()
	for i := 0; down.calls.Load() == 0 && i < 1000; i++ { // bounded: the first copy in flight
		time.Sleep(time.Millisecond)
	}
	early := prepare(10)
	early.ExpiresAt = env.clock.Now().Add(20 * time.Millisecond)
	copied := make(chan error, 1)
	go func() { _, err := h(context.Background(), early); copied <- err }()
	var err error
	select {
	case err = <-copied:
	case <-time.After(10 * time.Second): // bounded: a copy that waits for the first would hang
		close(release)
		t.Fatal("the copy with the earlier expiry was not answered at its expiry")
	}
	var rj *ilp.Reject
	if !errors.As(err, &rj) || rj.Code != ilp.CodeTransferTimedOut {
		t.Fatalf("the copy with the earlier expiry got %v, want R00", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the first copy: %v", err)
	}
}

func TestDeduplicateRules(t *testing.T) {
	env := newTestEnv(t)
	down := &counting{h: fulfillH}
	acct := config.Account{Deduplicate: &config.Deduplicate{CleanupInterval: time.Second, PacketLifetime: 2 * time.Second}}
	h := mustBuild(t, env.Env, "a", acct, onlyEnabled(NameDeduplicate)).Outgoing(down.handle)
	base := prepare(10)
	variant := func(f func(p *ilp.Prepare)) *ilp.Prepare { p := *base; f(&p); return &p }
	steps := []struct {
		name    string
		advance time.Duration
		p       *ilp.Prepare
		calls   int64 // downstream calls after this step
	}{
		{"first", 0, base, 1},
		{"same again: cached outcome", 0, base, 1},
		{"smaller amount, earlier expiry: hit", 0, variant(func(p *ilp.Prepare) { p.Amount = 9; p.ExpiresAt = p.ExpiresAt.Add(-time.Second) }), 1},
		{"larger amount: sent", 0, variant(func(p *ilp.Prepare) { p.Amount = 11 }), 2},
		{"later expiry: sent", 0, variant(func(p *ilp.Prepare) { p.Amount = 11; p.ExpiresAt = p.ExpiresAt.Add(time.Second) }), 3},
		{"other data: sent", 0, variant(func(p *ilp.Prepare) { p.Data = []byte("other") }), 4},
		{"other destination: sent", 0, variant(func(p *ilp.Prepare) { p.Destination = "test.carol" }), 5},
		{"within lifetime after expiry: hit", 12 * time.Second, base, 5},
		{"past expiry + lifetime: swept, sent", 2 * time.Second, base, 6},
	}
	for _, s := range steps {
		env.clock.Add(s.advance)
		if _, err := h(context.Background(), s.p); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := down.calls.Load(); got != s.calls {
			t.Fatalf("%s: downstream calls = %d, want %d", s.name, got, s.calls)
		}
	}
}

// TestDeduplicatedCopyIsNotCharged: a copy answered from the dedupe cache was not sent to the
// peer, so the peer's balance counts the packet once — as the peer does.
func TestDeduplicatedCopyIsNotCharged(t *testing.T) {
	env := newTestEnv(t)
	down := &counting{h: fulfillH}
	acct := fullAccount()
	acct.MaxPacketAmount = nil
	h := mustBuild(t, env.Env, "peer", acct, nil).Outgoing(down.handle)
	p := prepare(10)
	for range 3 {
		if _, err := h(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if n, b := down.calls.Load(), balanceOf(t, env.mem, "peer"); n != 1 || b.Balance != -10 || b.Pending != 0 {
		t.Fatalf("%d sent, balance %+v; want one sent and the balance -10 (the two copies answered from the cache)", n, b)
	}
}

// TestDeduplicateLoop sends a packet whose next hop routes it back to us and out again to the
// same next hop: the second copy is linked to the first, the loop stops after one downstream
// call, and both end at the expiry.
func TestDeduplicateLoop(t *testing.T) {
	env := newTestEnv(t)
	var out ilp.Handler
	down := &counting{}
	down.h = func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		looped := *p
		looped.ExpiresAt = p.ExpiresAt.Add(-time.Millisecond) // each hop shortens the expiry
		return out(ctx, &looped)
	}
	pl := mustBuild(t, env.Env, "a", config.Account{}, onlyEnabled(NameDeduplicate, NameExpire))
	out = pl.Outgoing(down.handle)
	p := prepare(10)
	p.ExpiresAt = t0.Add(50 * time.Millisecond)
	_, err := out(context.Background(), p)
	wantReject(t, err, ilp.CodeTransferTimedOut, "packet expired.")
	if n := down.calls.Load(); n != 1 {
		t.Fatalf("downstream calls = %d, want 1", n)
	}
}

func TestExpire(t *testing.T) {
	var sawCancel bool
	tests := []struct {
		name   string
		expiry time.Duration
		down   ilp.Handler
		code   ilp.ErrorCode
		called bool
	}{
		{"already expired: not sent", -time.Millisecond, fulfillH, ilp.CodeTransferTimedOut, false},
		{"fulfilled in time", time.Second, fulfillH, "", true},
		{"peer reject passes", time.Second, rejectH(ilp.CodeUnreachable, "x"), ilp.CodeUnreachable, true},
		{"no answer: R00 and the link is cancelled", 20 * time.Millisecond,
			func(ctx context.Context, _ *ilp.Prepare) (*ilp.Fulfill, error) {
				<-ctx.Done()
				sawCancel = true
				return nil, ctx.Err()
			}, ilp.CodeTransferTimedOut, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			down := &counting{h: tt.down}
			h := mustBuild(t, env.Env, "a", config.Account{}, onlyEnabled(NameExpire)).Outgoing(down.handle)
			p := prepare(1)
			p.ExpiresAt = t0.Add(tt.expiry)
			f, err := h(context.Background(), p)
			if tt.code == "" {
				if err != nil || f == nil {
					t.Fatalf("got %v %v", f, err)
				}
			} else {
				wantReject(t, err, tt.code, "")
			}
			if (down.calls.Load() == 1) != tt.called {
				t.Fatalf("downstream calls = %d", down.calls.Load())
			}
		})
	}
	if !sawCancel {
		t.Fatal("the link's context was never cancelled")
	}
}

func TestValidateFulfillment(t *testing.T) {
	env := newTestEnv(t)
	bad := func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return &ilp.Fulfill{Fulfillment: [32]byte{9}}, nil
	}
	pl := mustBuild(t, env.Env, "a", config.Account{}, onlyEnabled(NameValidateFulfillment))
	_, err := pl.Outgoing(bad)(context.Background(), prepare(1))
	r := wantReject(t, err, ilp.CodeWrongCondition, "fulfillment did not match expected value.")
	if r.TriggeredBy != testAddr {
		t.Fatalf("triggeredBy = %q", r.TriggeredBy)
	}
	if f, err := pl.Outgoing(fulfillH)(context.Background(), prepare(1)); err != nil || f == nil {
		t.Fatalf("good fulfillment: %v %v", f, err)
	}
}

func TestStats(t *testing.T) {
	env := newTestEnv(t)
	acct := config.Account{AssetCode: "EUR", AssetScale: 2}
	pl := mustBuild(t, env.Env, "a", acct, onlyEnabled(NameStats, NameErrorHandler))
	_, _ = pl.Incoming(fulfillH)(context.Background(), prepare(7))
	_, _ = pl.Incoming(fulfillH)(context.Background(), prepare(5))
	_, _ = pl.Outgoing(rejectH(ilp.CodeUnreachable, "x"))(context.Background(), prepare(3))
	_, _ = pl.Outgoing(rejectH("X42", "odd"))(context.Background(), prepare(1))
	_, _ = pl.Outgoing(func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, context.Canceled })(context.Background(), prepare(2))
	acc := map[string]string{"account": "a", "asset": "EUR", "scale": "2"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range acc {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{MetricIncomingPackets, with("result", "fulfilled", "code", ""), 2},
		{MetricIncomingValue, with("result", "fulfilled", "code", ""), 12},
		{MetricOutgoingPackets, with("result", "rejected", "code", "F02"), 1},
		{MetricOutgoingValue, with("result", "rejected", "code", "F02"), 3},
		{MetricOutgoingPackets, with("result", "rejected", "code", "other"), 1}, // X42
		{MetricOutgoingPackets, with("result", "failed", "code", ""), 1},
	}
	for _, tt := range tests {
		if got := counterValue(t, env.reg, tt.metric, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
		}
	}
	env.Metrics.Forget("a")
	if got := counterValue(t, env.reg, MetricIncomingPackets, with("result", "fulfilled", "code", "")); got != 0 {
		t.Errorf("series left after Forget: %v", got)
	}
}

// A peer's Reject may carry any 3 bytes as its code (the codec accepts them). Whatever it is, the
// sender gets the peer's Reject unchanged, with the errorHandler on or off (off, a panic would
// reach the link's goroutine), and a code outside F/T/R00–99 is counted under one label.
func TestStatsPeerRejectCode(t *testing.T) {
	tests := []struct {
		name      string
		code      ilp.ErrorCode
		wantLabel string
	}{
		{"standard", ilp.CodeUnreachable, "F02"},
		{"unknown class", "X42", "other"},
		{"not UTF-8", "\xff\xfe\xfd", "other"},
		{"final class, bytes not UTF-8", "F\xff\xff", "other"},
		{"lower case", "f02", "other"},
		{"digits only", "042", "other"},
	}
	pipelines := map[string][]string{
		"errorHandler on": nil,
		"stats only":      onlyEnabled(NameStats),
	}
	for _, tt := range tests {
		for pname, disabled := range pipelines {
			t.Run(tt.name+"/"+pname, func(t *testing.T) {
				env := newTestEnv(t)
				acct := config.Account{AssetCode: "USD", AssetScale: 2}
				out := mustBuild(t, env.Env, "bob", acct, disabled).Outgoing(rejectH(tt.code, "final"))
				in := mustBuild(t, env.Env, "alice", acct, disabled).Incoming(out)
				var err error
				func() {
					defer func() {
						if v := recover(); v != nil {
							t.Fatalf("the pipeline panicked on the peer's reject: %v", v)
						}
					}()
					_, err = in(context.Background(), prepare(5))
				}()
				if r := wantReject(t, err, tt.code, "final"); r.TriggeredBy != "test.peer" {
					t.Fatalf("triggeredBy %q, want the peer's", r.TriggeredBy)
				}
				for _, m := range []string{MetricIncomingPackets, MetricOutgoingPackets} {
					labels := map[string]string{"result": "rejected", "code": tt.wantLabel}
					if got := counterValue(t, env.reg, m, labels); got != 1 {
						t.Errorf("%s%v = %v, want 1", m, labels, got)
					}
				}
			})
		}
	}
}

// Codes a peer makes up do not make new series: they all count as "other".
func TestStatsRejectCodeCardinality(t *testing.T) {
	env := newTestEnv(t)
	i := 0
	peer := func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		i++
		return nil, &ilp.Reject{Code: ilp.ErrorCode(fmt.Sprintf("%03d", i)), TriggeredBy: "test.peer", Message: "x"}
	}
	acct := config.Account{AssetCode: "USD", AssetScale: 2}
	out := mustBuild(t, env.Env, "bob", acct, onlyEnabled(NameStats)).Outgoing(peer)
	for range 500 {
		_, _ = out(context.Background(), prepare(5))
	}
	mfs, err := env.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == MetricOutgoingPackets && len(mf.GetMetric()) != 3 {
			t.Fatalf("%s has %d series after 500 rejects with made-up codes, want 3 (fulfilled, failed, other)", MetricOutgoingPackets, len(mf.GetMetric()))
		}
	}
	if got := counterValue(t, env.reg, MetricOutgoingPackets, map[string]string{"result": "rejected", "code": "other"}); got != 500 {
		t.Fatalf("other = %v, want 500", got)
	}
}

func TestBalanceGauge(t *testing.T) {
	env := newTestEnv(t)
	acct := config.Account{AssetCode: "EUR", AssetScale: 2, Balance: &config.Balance{Maximum: i64(100)}}
	h := mustBuild(t, env.Env, "a", acct, nil).Incoming(fulfillH)
	_, _ = h(context.Background(), prepare(30))
	labels := map[string]string{"account": "a", "asset": "EUR", "scale": "2"}
	if got := counterValue(t, env.reg, MetricBalance, labels); got != 30 {
		t.Fatalf("balance gauge = %v", got)
	}
	env.Metrics.ObserveBalance("a", -4)
	if got := counterValue(t, env.reg, MetricBalance, labels); got != -4 {
		t.Fatalf("balance gauge after ObserveBalance = %v", got)
	}
}

// TestAlertsBoundedPerAccount: a next hop answering with many distinct Rejects that raise
// alerts (its triggeredBy is its own choice) keeps at most maxAccountAlerts of its account's,
// the newest, and pushes no other account's out; the whole list stays within maxAlerts.
func TestAlertsBoundedPerAccount(t *testing.T) {
	a := NewAlerts(nil)
	a.add("good", "test.good", "exceeded maximum balance.")
	for i := range maxAlerts + 5 {
		a.add("bad", fmt.Sprintf("test.hop%d", i), "exceeded maximum balance.")
	}
	a.add("good", "test.good", "exceeded maximum balance.") // a repeat: counted, not added
	counts := map[string]int{}
	var goodCount int
	for _, al := range a.List() {
		counts[al.AccountID]++
		if al.AccountID == "good" {
			goodCount = al.Count
		}
	}
	if counts["bad"] != maxAccountAlerts || counts["good"] != 1 || goodCount != 2 {
		t.Errorf("alerts per account %v (good's count %d); want bad %d, good 1 counted twice", counts, goodCount, maxAccountAlerts)
	}
	if last := a.List()[len(a.List())-1]; last.TriggeredBy != fmt.Sprintf("test.hop%d", maxAlerts+4) {
		t.Errorf("newest alert %+v; want bad's last", last)
	}
	for i := range maxAlerts {
		a.add(fmt.Sprintf("acct%d", i), "test.x", "exceeded maximum balance.")
	}
	if n := len(a.List()); n != maxAlerts {
		t.Errorf("%d alerts; want at most %d", n, maxAlerts)
	}
}

func TestAlert(t *testing.T) {
	env := newTestEnv(t)
	pl := mustBuild(t, env.Env, "peer1", config.Account{}, onlyEnabled(NameAlert))
	maxBal := rejectH(ilp.CodeInsufficientLiquidity, "exceeded maximum balance.")
	for range 2 {
		_, err := pl.Outgoing(maxBal)(context.Background(), prepare(1))
		wantReject(t, err, ilp.CodeInsufficientLiquidity, "exceeded maximum balance.")
		env.clock.Add(time.Second)
	}
	_, _ = pl.Outgoing(rejectH(ilp.CodeInsufficientLiquidity, "exceeded money bandwidth, throttling."))(context.Background(), prepare(1))
	_, _ = pl.Outgoing(rejectH(ilp.CodeUnreachable, "exceeded maximum balance."))(context.Background(), prepare(1))
	list := env.Alerts.List()
	if len(list) != 1 {
		t.Fatalf("alerts = %+v, want one", list)
	}
	a := list[0]
	if a.AccountID != "peer1" || a.TriggeredBy != "test.peer" || a.Count != 2 ||
		!a.CreatedAt.Equal(t0) || !a.UpdatedAt.Equal(t0.Add(time.Second)) || a.ID != t0.UnixMilli() {
		t.Fatalf("alert = %+v", a)
	}
	if !env.Alerts.Dismiss(a.ID) || env.Alerts.Dismiss(a.ID) || len(env.Alerts.List()) != 0 {
		t.Fatal("dismiss")
	}
}
