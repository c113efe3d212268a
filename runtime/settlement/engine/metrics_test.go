package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/shopspring/decimal"
)

// keptRegistry is a registry whose collectors stay when a server's Close unregisters them, so
// that a test reads what a server counted up to its end.
type keptRegistry struct{ *prometheus.Registry }

func (keptRegistry) Unregister(prometheus.Collector) bool { return false }

func newKept() keptRegistry { return keptRegistry{prometheus.NewRegistry()} }

// startMetered starts a server with its metrics on reg, crediting at scale 2 to connectorURL.
func startMetered(t *testing.T, e engine.Engine, store engine.Store, reg prometheus.Registerer, connectorURL string) *engine.Server {
	t.Helper()
	return startWith(t, connectTo(e), store, engine.Config{ConnectorURL: connectorURL, AssetScale: 2,
		Registerer: reg, Log: slog.New(slog.DiscardHandler)})
}

// metric returns the value of the series name{labels} (name, value pairs; the series has no
// other label) gathered from g, and whether there is one.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel())*2 != len(labels) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// value is metric's value, 0 for no series.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, _ := metric(t, g, name, labels...)
	return v
}

// accountSeries counts the framework's series of account in g (of the metrics named; all by
// default).
func accountSeries(t *testing.T, g prometheus.Gatherer, account string, names ...string) int {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "account" && l.GetValue() == account && strings.HasPrefix(f.GetName(), "ilp_settlement_engine_") &&
					(len(names) == 0 || slices.Contains(names, f.GetName())) {
					n++
				}
			}
		}
	}
	return n
}

// settlementSeries are the metrics of an account's settlements, gone with the account.
var settlementSeries = []string{engine.MetricQueued, engine.MetricInProgress, engine.MetricSettlements, engine.MetricSettledValue, engine.MetricRetries}

var outcomes = []string{engine.OutcomeSettled, engine.OutcomeNotSettled, engine.OutcomeUnknown,
	engine.OutcomeFailed, engine.OutcomeCancelled, engine.OutcomeInterrupted}

// failing is an engine whose Settle fails (neither ErrNotSettled nor ErrOutcomeUnknown).
type failing struct{}

func (failing) Settle(context.Context, string, decimal.Decimal) (decimal.Decimal, error) {
	return decimal.Zero, errors.New("ledger said no")
}

// paysNothing is an engine whose Settle pays nothing and says no error (an amount below its
// ledger's precision): all of it is queued again, and waits for more.
type paysNothing struct{}

func (paysNothing) Settle(context.Context, string, decimal.Decimal) (decimal.Decimal, error) {
	return decimal.Zero, nil
}

// TestMetricsOutcomes: each outcome of an attempt is counted once, with the retries it led
// to, the value settled (in the account's units) and what is left queued; nothing is left
// running.
func TestMetricsOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		eng     engine.Engine
		left    bool // an attempt of 1.23 left in progress by a stopped process, rather than a request
		cancel  bool // Close cancels the Settle running
		want    map[string]float64
		queued  float64
		retries float64
		value   float64
	}{
		{name: "settled", eng: &recorder{}, want: map[string]float64{engine.OutcomeSettled: 1}, value: 123},
		{name: "not settled, then settled", eng: &paysSecondTime{}, want: map[string]float64{engine.OutcomeNotSettled: 1, engine.OutcomeSettled: 1}, retries: 1, value: 123},
		{name: "outcome unknown, then settled", eng: &unsure{unknown: 1}, want: map[string]float64{engine.OutcomeUnknown: 1, engine.OutcomeSettled: 1}, retries: 1, value: 123},
		{name: "failed", eng: failing{}, want: map[string]float64{engine.OutcomeFailed: 1}},
		{name: "nothing paid, no error", eng: paysNothing{}, want: map[string]float64{engine.OutcomeNotSettled: 1}, queued: 123},
		{name: "cancelled by Close", eng: newBlocking(), cancel: true, want: map[string]float64{engine.OutcomeCancelled: 1}},
		{name: "interrupted", eng: &recorder{}, left: true, want: map[string]float64{engine.OutcomeInterrupted: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := engine.NewMemory()
			if tc.left {
				must[bool](t)(store.CreateAccount(ctx, "a"))
				must[*engine.Record](t)(store.QueueSettlement(ctx, "a", dec("1.23"), nil))
				must[*engine.Attempt](t)(store.StartAttempt(ctx, "a", "left-id"))
			}
			reg := newKept()
			s := startMetered(t, tc.eng, store, reg, "http://127.0.0.1:1")
			if !tc.left {
				do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
				if st, b := do(t, s, "POST", "/accounts/a/settlements", "k1", `{"amount":"123","scale":2}`); st != 201 {
					t.Fatal(st, b)
				}
			}
			var wantN float64
			for _, n := range tc.want {
				wantN += n
			}
			closeCtx := ctx
			if tc.cancel {
				<-tc.eng.(*blocking).entered
				if v := value(t, reg, engine.MetricInProgress, "account", "a"); v != 1 {
					t.Fatalf("settlements in progress %v while Settle runs, want 1", v)
				}
				cctx, cancel := context.WithCancel(ctx)
				cancel()
				closeCtx = cctx
			} else {
				eventually(t, "the outcomes counted", func() bool {
					var n float64
					for _, o := range outcomes {
						n += value(t, reg, engine.MetricSettlements, "account", "a", "outcome", o)
					}
					return n >= wantN
				})
			}
			_ = s.Close(closeCtx) // waits for every Settle: nothing counted after
			for _, o := range outcomes {
				if got := value(t, reg, engine.MetricSettlements, "account", "a", "outcome", o); got != tc.want[o] {
					t.Errorf("outcome %s counted %v times, want %v", o, got, tc.want[o])
				}
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{engine.MetricRetries, value(t, reg, engine.MetricRetries, "account", "a"), tc.retries},
				{engine.MetricSettledValue, value(t, reg, engine.MetricSettledValue, "account", "a"), tc.value},
				{engine.MetricQueued, value(t, reg, engine.MetricQueued, "account", "a"), tc.queued},
				{engine.MetricInProgress, value(t, reg, engine.MetricInProgress, "account", "a"), 0},
			} {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

// gated is an engine whose every Settle reports its amount on entered and answers what the
// test sends on answer.
type gated struct {
	entered chan decimal.Decimal
	answer  chan func(decimal.Decimal) (decimal.Decimal, error)
}

func newGated() *gated {
	return &gated{entered: make(chan decimal.Decimal, 1), answer: make(chan func(decimal.Decimal) (decimal.Decimal, error))}
}

func (g *gated) Settle(ctx context.Context, _ string, amount decimal.Decimal) (decimal.Decimal, error) {
	g.entered <- amount
	select {
	case f := <-g.answer:
		return f(amount)
	case <-ctx.Done():
		return decimal.Zero, ctx.Err()
	}
}

// TestMetricsQueued: the queued gauge follows the store's queue, in the account's units:
// raised by a request, emptied by an attempt, raised again by what a Settle left (a part
// unpaid, ErrNotSettled).
func TestMetricsQueued(t *testing.T) {
	g := newGated()
	reg := newKept()
	s := startMetered(t, g, engine.NewMemory(), reg, "http://127.0.0.1:1")
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	queue := func(key, amount string) {
		t.Helper()
		if st, b := do(t, s, "POST", "/accounts/a/settlements", key, `{"amount":"`+amount+`","scale":2}`); st != 201 {
			t.Fatal(st, b)
		}
	}
	check := func(step string, queued, inProgress float64) {
		t.Helper()
		if q, p := value(t, reg, engine.MetricQueued, "account", "a"), value(t, reg, engine.MetricInProgress, "account", "a"); q != queued || p != inProgress {
			t.Fatalf("%s: queued %v, in progress %v; want %v, %v", step, q, p, queued, inProgress)
		}
	}
	settling := func(step, want string) {
		t.Helper()
		if got := <-g.entered; !got.Equal(dec(want)) {
			t.Fatalf("%s: Settle of %s, want %s", step, got, want)
		}
	}
	pay := func(part string) func(decimal.Decimal) (decimal.Decimal, error) {
		return func(a decimal.Decimal) (decimal.Decimal, error) {
			if part == "" {
				return a, nil
			}
			return dec(part), nil
		}
	}
	notSettled := func(decimal.Decimal) (decimal.Decimal, error) { return decimal.Zero, engine.ErrNotSettled }

	check("account created", 0, 0)
	queue("k1", "100")
	settling("first request", "1")
	check("first request taken", 0, 1)
	queue("k2", "250")
	check("queued while Settle runs", 250, 1)
	queue("k2", "250") // a retry of the request: nothing queued again
	check("request retried", 250, 1)
	g.answer <- pay("")
	settling("what waited", "2.5")
	check("what waited taken", 0, 1)
	g.answer <- pay("2") // 0.50 unpaid: queued again, and waits
	eventually(t, "the unpaid part queued", func() bool {
		return value(t, reg, engine.MetricQueued, "account", "a") == 50 && value(t, reg, engine.MetricInProgress, "account", "a") == 0
	})
	queue("k3", "50")
	settling("leftover and more", "1")
	check("leftover and more taken", 0, 1)
	g.answer <- notSettled
	settling("retried after ErrNotSettled", "1") // queued again in between
	check("retried after ErrNotSettled", 0, 1)
	g.answer <- pay("")
	eventually(t, "all settled", func() bool {
		return value(t, reg, engine.MetricInProgress, "account", "a") == 0 && value(t, reg, engine.MetricSettledValue, "account", "a") == 400
	})
	check("all settled", 0, 0)
}

// connectorStub answers credits with the status it holds.
type connectorStub struct {
	url    string
	status atomic.Int32
	calls  atomic.Int32
}

func newConnectorStub(t *testing.T, status int) *connectorStub {
	c := &connectorStub{}
	c.status.Store(int32(status))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c.calls.Add(1)
		w.WriteHeader(int(c.status.Load()))
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

// TestMetricsPendingCredits: a credit the connector does not acknowledge is pending, and its
// failures are counted by reason, until the connector acknowledges it.
func TestMetricsPendingCredits(t *testing.T) {
	for _, tc := range []struct {
		status int
		reason string
	}{
		{http.StatusNotFound, engine.CreditNotFound},
		{http.StatusInternalServerError, engine.CreditError},
		{http.StatusBadRequest, engine.CreditRefused},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			conn := newConnectorStub(t, tc.status)
			var svc engine.Services
			reg := newKept()
			s := startWith(t, capture(&svc), engine.NewMemory(), engine.Config{ConnectorURL: conn.url, AssetScale: 2,
				Registerer: reg, Log: slog.New(slog.DiscardHandler)})
			do(t, s, "POST", "/accounts", "", `{"id":"alice"}`)
			if err := svc.CreditSettlement("alice", dec("1.239"), "s1"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "two failures counted", func() bool {
				return value(t, reg, engine.MetricCreditFailures, "account", "alice", "reason", tc.reason) >= 2
			})
			if p, a := value(t, reg, engine.MetricCreditsPending, "account", "alice"), value(t, reg, engine.MetricCreditsAcked, "account", "alice"); p != 1 || a != 0 {
				t.Fatalf("unacknowledged: pending %v, acknowledged %v; want 1, 0", p, a)
			}
			conn.status.Store(http.StatusCreated)
			eventually(t, "acknowledged", func() bool { return value(t, reg, engine.MetricCreditsAcked, "account", "alice") == 1 })
			if p, q := value(t, reg, engine.MetricCreditsPending, "account", "alice"), value(t, reg, engine.MetricCredits, "account", "alice"); p != 0 || q != 1 {
				t.Fatalf("acknowledged: pending %v, queued %v; want 0, 1", p, q)
			}
			for _, r := range []string{engine.CreditNotFound, engine.CreditError, engine.CreditRefused} {
				if v := value(t, reg, engine.MetricCreditFailures, "account", "alice", "reason", r); (v > 0) != (r == tc.reason) {
					t.Errorf("reason %s counted %v times", r, v)
				}
			}
		})
	}
}

// TestMetricsRestoredAfterRestart: after a restart on Redis the gauges of stored state start
// from the store — what is queued (waiting behind an attempt of unknown outcome) and the
// credits not yet acknowledged — not from 0.
func TestMetricsRestoredAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	down := newConnectorStub(t, http.StatusServiceUnavailable)
	store := openRedis(t, srv.URL())
	var svc engine.Services
	never := &unsure{unknown: 1 << 30}
	s := startWith(t, func(_ context.Context, s engine.Services) (engine.Engine, error) { svc = s; return never, nil }, store,
		engine.Config{ConnectorURL: down.url, AssetScale: 2, Registerer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	if st, b := do(t, s, "POST", "/accounts/a/settlements", "k1", `{"amount":"100","scale":2}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "the attempt's outcome unknown", func() bool { return len(never.got()) >= 1 })
	if st, b := do(t, s, "POST", "/accounts/a/settlements", "k2", `{"amount":"275","scale":2}`); st != 201 { // waits behind it
		t.Fatal(st, b)
	}
	if err := svc.CreditSettlement("a", dec("4.2"), "s1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the credit refused", func() bool { return down.calls.Load() >= 1 })
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil { // the process stops: the next may take the prefix
		t.Fatal(err)
	}

	g := newGated() // the attempt kept is tried again, and held: the queue stays as it is
	reg := newKept()
	startMetered(t, g, openRedis(t, srv.URL()), reg, down.url)
	if got := <-g.entered; !got.Equal(dec("1")) {
		t.Fatalf("attempt tried again with %s, want 1", got)
	}
	if q, p := value(t, reg, engine.MetricQueued, "account", "a"), value(t, reg, engine.MetricCreditsPending, "account", "a"); q != 275 || p != 1 {
		t.Fatalf("after the restart: queued %v, credits pending %v; want 275, 1", q, p)
	}
	eventually(t, "the resumed credit's failure counted", func() bool {
		return value(t, reg, engine.MetricCreditFailures, "account", "a", "reason", engine.CreditError) >= 1
	})
	down.status.Store(http.StatusCreated)
	eventually(t, "the credit acknowledged", func() bool { return value(t, reg, engine.MetricCreditsPending, "account", "a") == 0 })
	if q := value(t, reg, engine.MetricCredits, "account", "a"); q != 0 {
		t.Fatalf("credits queued %v by the new process, want 0 (queued by the previous one)", q)
	}
	g.answer <- func(a decimal.Decimal) (decimal.Decimal, error) { return a, nil }
	if got := <-g.entered; !got.Equal(dec("2.75")) {
		t.Fatalf("then settled %s, want 2.75", got)
	}
	if q := value(t, reg, engine.MetricQueued, "account", "a"); q != 0 {
		t.Fatalf("queued %v once taken, want 0", q)
	}
	g.answer <- func(a decimal.Decimal) (decimal.Decimal, error) { return a, nil }
}

// TestMetricsAccountDeleted: deleting an account drops its settlement series; its credits
// still pending (still delivered: the money arrived) stay pending until acknowledged, and its
// credit counters stay; another account's series stay.
func TestMetricsAccountDeleted(t *testing.T) {
	conn := newConnectorStub(t, http.StatusNotFound)
	var svc engine.Services
	reg := newKept()
	never := &unsure{unknown: 1 << 30}
	s := startWith(t, func(_ context.Context, s engine.Services) (engine.Engine, error) { svc = s; return never, nil },
		engine.NewMemory(), engine.Config{ConnectorURL: conn.url, AssetScale: 2, Registerer: reg, Log: slog.New(slog.DiscardHandler)})
	for _, id := range []string{"a", "b"} {
		do(t, s, "POST", "/accounts", "", `{"id":"`+id+`"}`)
		if st, b := do(t, s, "POST", "/accounts/"+id+"/settlements", "k"+id, `{"amount":"100","scale":2}`); st != 201 {
			t.Fatal(st, b)
		}
		if err := svc.CreditSettlement(id, dec("1"), "s"+id); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "outcomes, retries and credit failures of both", func() bool {
		for _, id := range []string{"a", "b"} {
			if value(t, reg, engine.MetricSettlements, "account", id, "outcome", engine.OutcomeUnknown) < 1 ||
				value(t, reg, engine.MetricRetries, "account", id) < 1 ||
				value(t, reg, engine.MetricCreditFailures, "account", id, "reason", engine.CreditNotFound) < 1 {
				return false
			}
		}
		return true
	})
	before := accountSeries(t, reg, "b")
	if st, b := do(t, s, "DELETE", "/accounts/a", "", ""); st != http.StatusNoContent {
		t.Fatal(st, b)
	}
	if n := accountSeries(t, reg, "a", settlementSeries...); n != 0 {
		t.Fatalf("%d settlement series of the deleted account, want none", n)
	}
	if p := value(t, reg, engine.MetricCreditsPending, "account", "a"); p != 1 {
		t.Fatalf("the deleted account's credit pending %v, want 1", p)
	}
	conn.status.Store(http.StatusCreated)
	eventually(t, "both credits acknowledged", func() bool {
		return value(t, reg, engine.MetricCreditsAcked, "account", "a") == 1 && value(t, reg, engine.MetricCreditsAcked, "account", "b") == 1
	})
	if _, ok := metric(t, reg, engine.MetricCreditsPending, "account", "a"); ok {
		t.Fatal("a credits pending series of the deleted account with none pending")
	}
	if after := accountSeries(t, reg, "b"); after != before {
		t.Fatalf("%d series of the kept account, want %d", after, before)
	}
}

// TestMetricsRegistry: two servers on one registry need a label each; Close unregisters (a
// server started again on the registry starts); the metrics pass the Prometheus lint.
func TestMetricsRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := engine.Config{ConnectorURL: "http://127.0.0.1:1", AssetScale: 2, Log: slog.New(slog.DiscardHandler),
		Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"engine": "first"}, reg)}
	first := startWith(t, connectTo(&recorder{}), engine.NewMemory(), cfg)
	do(t, first, "POST", "/accounts", "", `{"id":"a"}`)
	cfg.Addr = "127.0.0.1:0"
	if _, err := engine.Start(context.Background(), connectTo(&recorder{}), engine.NewMemory(), cfg); err == nil || !strings.Contains(err.Error(), "WrapRegistererWith") {
		t.Fatalf("second server with the same labels: %v, want an error naming WrapRegistererWith", err)
	}
	second := cfg
	second.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"engine": "second"}, reg)
	do(t, startWith(t, connectTo(&recorder{}), engine.NewMemory(), second), "POST", "/accounts", "", `{"id":"a"}`)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := promlint.NewWithMetricFamilies(fams).Lint(); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := metric(t, reg, engine.MetricQueued, "account", "a", "engine", "first"); ok {
		t.Fatal("the closed server's series still registered")
	}
	again := startWith(t, connectTo(&recorder{}), engine.NewMemory(), cfg)
	do(t, again, "POST", "/accounts", "", `{"id":"a"}`)
	if n := accountSeries(t, reg, "a", engine.MetricQueued); n != 2 {
		t.Fatalf("%d queued series of a, want one of each running server", n)
	}
}

// TestMetricsAccountDeletedDuringSettle: an account deleted, and created again, while its
// Settle runs: the Settle's end counts nothing for the new account (neither its outcome nor
// the end of a Settle it did not start), and what it left unpaid went with the old one.
func TestMetricsAccountDeletedDuringSettle(t *testing.T) {
	reg := settleAcrossRecreate(t, func(decimal.Decimal) (decimal.Decimal, error) { return dec("0.4"), nil }) // 0.60 unpaid
	for _, c := range []struct {
		name string
		got  float64
	}{
		{"queued", value(t, reg, engine.MetricQueued, "account", "a")},
		{"in progress", value(t, reg, engine.MetricInProgress, "account", "a")},
		{"settled", value(t, reg, engine.MetricSettlements, "account", "a", "outcome", engine.OutcomeSettled)},
		{"value settled", value(t, reg, engine.MetricSettledValue, "account", "a")},
	} {
		if c.got != 0 {
			t.Errorf("the new account: %s %v, want 0", c.name, c.got)
		}
	}
}

// TestMetricsRetryOfDeletedAccountNotCounted: as TestMetricsAccountDeletedDuringSettle, but
// the old Settle answers ErrNotSettled or ErrOutcomeUnknown: its retry is the deleted
// account's, and counts nothing for the account created again under its id.
func TestMetricsRetryOfDeletedAccountNotCounted(t *testing.T) {
	for _, c := range []struct {
		err     error
		outcome string
	}{{engine.ErrNotSettled, engine.OutcomeNotSettled}, {engine.ErrOutcomeUnknown, engine.OutcomeUnknown}} {
		t.Run(c.outcome, func(t *testing.T) {
			reg := settleAcrossRecreate(t, func(decimal.Decimal) (decimal.Decimal, error) { return decimal.Zero, c.err })
			if n := value(t, reg, engine.MetricRetries, "account", "a"); n != 0 {
				t.Errorf("the new account: retries %v, want 0 (the retry was the deleted account's)", n)
			}
			if n := value(t, reg, engine.MetricSettlements, "account", "a", "outcome", c.outcome); n != 0 {
				t.Errorf("the new account: %s %v, want 0", c.outcome, n)
			}
		})
	}
}

// settleAcrossRecreate has account a settle 1.00, deletes a while its Settle runs (checking
// that its settlement series go), creates a again, then lets the old Settle end with answer;
// it returns the registry once Close has waited for that end (and any retry it scheduled).
func settleAcrossRecreate(t *testing.T, answer func(decimal.Decimal) (decimal.Decimal, error)) keptRegistry {
	t.Helper()
	g := newGated()
	reg := newKept()
	s := startMetered(t, g, engine.NewMemory(), reg, "http://127.0.0.1:1")
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	if st, b := do(t, s, "POST", "/accounts/a/settlements", "k1", `{"amount":"100","scale":2}`); st != 201 {
		t.Fatal(st, b)
	}
	<-g.entered
	if st, b := do(t, s, "DELETE", "/accounts/a", "", ""); st != http.StatusNoContent {
		t.Fatal(st, b)
	}
	if n := accountSeries(t, reg, "a", settlementSeries...); n != 0 {
		t.Fatalf("%d settlement series of the deleted account", n)
	}
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	g.answer <- answer
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return reg
}

// takenBeforeCounted is a Memory store whose QueueSettlement of key lets the settle loop take
// the amount (and enter Settle) before it returns: the order a settle loop going round (its
// again flag, a backoff timer, TrySettlement) can take with a request in flight.
type takenBeforeCounted struct {
	*engine.Memory
	svc     *engine.Services
	key     string
	entered chan decimal.Decimal
	seen    chan decimal.Decimal // what Settle got, for the test
}

func (s *takenBeforeCounted) QueueSettlement(ctx context.Context, id string, amount decimal.Decimal, rec *engine.Record) (*engine.Record, error) {
	prev, err := s.Memory.QueueSettlement(ctx, id, amount, rec)
	if err == nil && prev == nil && rec != nil && rec.Key == s.key {
		(*s.svc).TrySettlement(id) // the loop takes it now, before the request returns
		select {
		case a := <-s.entered:
			s.seen <- a
		case <-time.After(10 * time.Second):
			panic("Settle not entered")
		}
	}
	return prev, err
}

// TestMetricsQueuedWhenTakenBeforeTheRequestReturns: the queued gauge is what the store holds
// once all is settled (0), even when the settle loop took the amount before the request that
// queued it returned.
func TestMetricsQueuedWhenTakenBeforeTheRequestReturns(t *testing.T) {
	g := newGated()
	var svc engine.Services
	store := &takenBeforeCounted{Memory: engine.NewMemory(), svc: &svc, key: "k1", entered: g.entered, seen: make(chan decimal.Decimal, 1)}
	reg := newKept()
	s := startWith(t, func(_ context.Context, sv engine.Services) (engine.Engine, error) { svc = sv; return g, nil }, store,
		engine.Config{ConnectorURL: "http://127.0.0.1:1", AssetScale: 2, Registerer: reg, Log: slog.New(slog.DiscardHandler)})
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	if st, b := do(t, s, "POST", "/accounts/a/settlements", "k1", `{"amount":"100","scale":2}`); st != 201 {
		t.Fatal(st, b)
	}
	if got := <-store.seen; !got.Equal(dec("1")) {
		t.Fatalf("Settle of %s, want 1", got)
	}
	g.answer <- func(a decimal.Decimal) (decimal.Decimal, error) { return a, nil }
	eventually(t, "settled", func() bool { return value(t, reg, engine.MetricSettledValue, "account", "a") == 100 })
	_ = s.Close(context.Background())
	if q := value(t, reg, engine.MetricQueued, "account", "a"); q != 0 {
		t.Fatalf("queued %v with nothing queued in the store", q)
	}
}

// TestMetricsBadQueueEntry: an account whose Redis queue has an entry that is no amount fails
// neither Start, with a Registerer or without, nor the scrape: that account has no queued
// sample, the others have theirs.
func TestMetricsBadQueueEntry(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		reg  *prometheus.Registry
	}{{"no metrics", nil}, {"metrics", prometheus.NewRegistry()}} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "t:" + t.Name() + ":"
			raw := rawClient(t, srv.URL())
			if err := raw.SAdd(ctx, prefix+"accounts", "good", "bad").Err(); err != nil {
				t.Fatal(err)
			}
			if err := raw.RPush(ctx, prefix+"queue:bad", "not-a-number").Err(); err != nil {
				t.Fatal(err)
			}
			store := openRedis(t, srv.URL())
			cfg := engine.Config{Addr: "127.0.0.1:0", ConnectorURL: "http://127.0.0.1:1", AssetScale: 2,
				Log: slog.New(slog.DiscardHandler), Backoff: func(int) time.Duration { return time.Hour }}
			if tc.reg != nil {
				cfg.Registerer = tc.reg
			}
			s, err := engine.Start(ctx, connectTo(&recorder{}), store, cfg)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer func() { _ = s.Close(ctx) }()
			if tc.reg == nil {
				return
			}
			if _, ok := metric(t, tc.reg, engine.MetricQueued, "account", "good"); !ok {
				t.Error("no queued sample of the good account")
			}
			if _, ok := metric(t, tc.reg, engine.MetricQueued, "account", "bad"); ok {
				t.Error("a queued sample of the account whose queue cannot be read")
			}
		})
	}
}

// TestMetricsSeriesAtZeroFromCreation: an account's counters exist at 0 from its creation,
// every outcome and reason, so that increase() — the alerts of docs/operations.md — sees
// the first one counted (a series born at 1 has no increase).
func TestMetricsSeriesAtZeroFromCreation(t *testing.T) {
	reg := newKept()
	s := startMetered(t, failing{}, engine.NewMemory(), reg, "http://127.0.0.1:1")
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	series := [][]string{{engine.MetricSettledValue}, {engine.MetricRetries}, {engine.MetricCredits}, {engine.MetricCreditsAcked}}
	for _, o := range outcomes {
		series = append(series, []string{engine.MetricSettlements, "outcome", o})
	}
	for _, r := range []string{engine.CreditNotFound, engine.CreditRefused, engine.CreditError} {
		series = append(series, []string{engine.MetricCreditFailures, "reason", r})
	}
	for _, sr := range series {
		labels := append([]string{"account", "a"}, sr[1:]...)
		if v, ok := metric(t, reg, sr[0], labels...); !ok || v != 0 {
			t.Errorf("%s%v: %v (exists: %v), want 0 from the account's creation", sr[0], sr[1:], v, ok)
		}
	}
}

// TestMetricsNilRegistry: a nil *prometheus.Registry in Config.Registerer is no metrics, as a
// nil Registerer is, rather than a panic at Start.
func TestMetricsNilRegistry(t *testing.T) {
	var reg *prometheus.Registry
	s := startWith(t, capture(new(engine.Services)), engine.NewMemory(), engine.Config{ConnectorURL: "http://127.0.0.1:1",
		AssetScale: 2, Registerer: reg, Log: slog.New(slog.DiscardHandler)})
	if st, b := do(t, s, "POST", "/accounts", "", `{"id":"a"}`); st/100 != 2 {
		t.Fatal(st, b)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
