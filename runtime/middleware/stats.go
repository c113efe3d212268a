package middleware

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// Metric names shared with the JS (and Java) connectors so that dashboards carry over.
const (
	MetricIncomingPackets    = "ilp_connector_incoming_ilp_packets"
	MetricIncomingValue      = "ilp_connector_incoming_ilp_packet_value"
	MetricOutgoingPackets    = "ilp_connector_outgoing_ilp_packets"
	MetricOutgoingValue      = "ilp_connector_outgoing_ilp_packet_value"
	MetricRateLimitedPackets = "ilp_connector_rate_limited_ilp_packets"
	MetricBalance            = "ilp_connector_balance"
	// MetricBalanceMinimum and MetricBalanceMaximum are ours: the limits in force on the
	// balance (absent without one), so that an alert sees an account near its limit before its
	// packets are refused.
	MetricBalanceMinimum = "ilp_connector_balance_minimum"
	MetricBalanceMaximum = "ilp_connector_balance_maximum"
	// MetricBalanceStoreErrors is ours: store failures after a packet's outcome was decided,
	// each one a balance to reconcile.
	MetricBalanceStoreErrors = "ilp_connector_balance_store_errors"
	// MetricIncomingDuration is ours: how long the connector took to answer each incoming
	// packet, from its link's call to the answer (durable balance writes included), by result.
	// Connector-wide, not per account: buckets per account would multiply the series by the
	// accounts, and a latency objective is the connector's.
	MetricIncomingDuration = "ilp_connector_incoming_ilp_packet_duration_seconds"
)

// durationBuckets span a packet answered from memory (under a millisecond) to one held until
// its expiry (seconds; 30 s is ilp-connector's default maximum hold time).
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Values of the result label, as JS.
const (
	resultFulfilled = "fulfilled"
	resultRejected  = "rejected"
	resultFailed    = "failed"
)

var accountLabels = []string{"account", "asset", "scale"}

// Metrics holds the connector's packet metrics. Per-account children are resolved when a
// pipeline is built, so the packet path never looks labels up.
type Metrics struct {
	inPackets, inValue, outPackets, outValue *prometheus.CounterVec
	rateLimited                              *prometheus.CounterVec
	balance, minimum, maximum                *prometheus.GaugeVec
	storeErrors                              *prometheus.CounterVec
	duration                                 *prometheus.HistogramVec
	durations                                map[string]prometheus.Observer // by result, resolved once

	mu       sync.Mutex
	accounts map[string]*accountStats

	// shared, when set, is read for every account's balance at each scrape (ReadBalancesOnScrape).
	shared atomic.Pointer[store.Balances]
}

// NewMetrics registers the metrics on reg (not the global registry, so that tests and several
// connectors in one process do not collide).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	withResult := append([]string{"result", "code"}, accountLabels...)
	m := &Metrics{
		inPackets:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricIncomingPackets, Help: "Total number of incoming ILP packets"}, withResult),
		inValue:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricIncomingValue, Help: "Total value of incoming ILP packets"}, withResult),
		outPackets:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricOutgoingPackets, Help: "Total number of outgoing ILP packets"}, withResult),
		outValue:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricOutgoingValue, Help: "Total value of outgoing ILP packets"}, withResult),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRateLimitedPackets, Help: "Total of rate limited ILP packets"}, accountLabels),
		balance:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricBalance, Help: "Balances on peer account"}, accountLabels),
		minimum:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricBalanceMinimum, Help: "Minimum balance in force: outgoing packets that would put the balance below it are rejected"}, accountLabels),
		maximum:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricBalanceMaximum, Help: "Maximum balance in force: incoming packets that would put the balance above it are rejected"}, accountLabels),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricBalanceStoreErrors, Help: "Balance store failures after a packet was settled (reconciliation required)"}, append([]string{"operation"}, accountLabels...)),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricIncomingDuration,
			Help: "Seconds the connector took to answer an incoming ILP packet, by result", Buckets: durationBuckets}, []string{"result"}),
		accounts: make(map[string]*accountStats),
	}
	m.durations = make(map[string]prometheus.Observer)
	for _, r := range []string{resultFulfilled, resultRejected, resultFailed} {
		m.durations[r] = m.duration.WithLabelValues(r) // every result's series from the start
	}
	for _, c := range []prometheus.Collector{m.inPackets, m.inValue, m.outPackets, m.outValue, m.rateLimited, balanceGauges{m}, m.minimum, m.maximum, m.storeErrors, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ReadBalancesOnScrape makes each scrape read every account's balance from st before it reports
// MetricBalance: for a store that other processes write too (replicas sharing Redis), where a
// gauge set by this process's packets alone would show its last packet's balance, not the
// account's.
func (m *Metrics) ReadBalancesOnScrape(st store.Balances) { m.shared.Store(&st) }

// balanceGauges collects MetricBalance, read from the shared store first when there is one.
type balanceGauges struct{ m *Metrics }

func (b balanceGauges) Describe(ch chan<- *prometheus.Desc) { b.m.balance.Describe(ch) }

func (b balanceGauges) Collect(ch chan<- prometheus.Metric) {
	b.m.readSharedBalances()
	b.m.balance.Collect(ch)
}

// readSharedBalances sets every account's balance gauge from the shared store, within
// storedBalanceWait for them all: a store that cannot answer leaves the gauges as they are.
func (m *Metrics) readSharedBalances() {
	st := m.shared.Load()
	if st == nil {
		return
	}
	m.mu.Lock()
	ids := slices.Collect(maps.Keys(m.accounts))
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storedBalanceWait)
	defer cancel()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		m.ObserveStoredBalance(ctx, *st, id)
	}
}

// ObserveDuration records how long the connector took to answer an incoming packet (f, err)
// in MetricIncomingDuration.
func (m *Metrics) ObserveDuration(d time.Duration, f *ilp.Fulfill, err error) {
	r, _ := resultOf(f, err)
	m.durations[r].Observe(d.Seconds())
}

// resultOf is the result label of an answer, and its Reject when rejected.
func resultOf(f *ilp.Fulfill, err error) (string, *ilp.Reject) {
	if err == nil && f != nil {
		return resultFulfilled, nil
	}
	var r *ilp.Reject
	if errors.As(err, &r) {
		return resultRejected, r
	}
	return resultFailed, nil
}

// ObserveBalance sets the balance gauge of an account whose pipeline was built, e.g. after an
// admin change to its balance.
func (m *Metrics) ObserveBalance(account string, balance int64) {
	m.mu.Lock()
	s := m.accounts[account]
	m.mu.Unlock()
	if s != nil {
		s.balance.Set(float64(balance))
	}
}

// ObserveStoredBalance sets the balance gauge of an account to its stored balance, after a
// change made outside the packet path (a settlement) or a new gauge. A store that cannot answer
// leaves the gauge as it is.
func (m *Metrics) ObserveStoredBalance(ctx context.Context, st store.Balances, account string) {
	if ab, err := st.Get(ctx, account); err == nil {
		m.ObserveBalance(account, ab.Balance)
	}
}

// Forget deletes every series of a removed account.
func (m *Metrics) Forget(account string) {
	m.mu.Lock()
	delete(m.accounts, account)
	m.mu.Unlock()
	m.deleteSeries(account)
}

func (m *Metrics) deleteSeries(account string) {
	l := prometheus.Labels{"account": account}
	for _, v := range []*prometheus.CounterVec{m.inPackets, m.inValue, m.outPackets, m.outValue, m.rateLimited, m.storeErrors} {
		v.DeletePartialMatch(l)
	}
	for _, v := range []*prometheus.GaugeVec{m.balance, m.minimum, m.maximum} {
		v.DeletePartialMatch(l)
	}
}

// observeLimits sets the account's limit gauges to the limits in force, nil meaning none: that
// limit's series is deleted.
func (m *Metrics) observeLimits(s *accountStats, minimum, maximum *int64) {
	for _, g := range []struct {
		v     *prometheus.GaugeVec
		limit *int64
	}{{m.minimum, minimum}, {m.maximum, maximum}} {
		if g.limit == nil {
			g.v.Delete(s.labels)
		} else {
			g.v.With(s.labels).Set(float64(*g.limit))
		}
	}
}

// pendingStats returns the children a pipeline of the account will use, without creating or
// deleting any series: the running ones while asset and scale are unchanged (a rebuild for
// another setting keeps the cached reject-code children), otherwise a new set that activate
// puts in force. A pipeline that is built but never put in service so changes no metric.
func (m *Metrics) pendingStats(id string, acct config.Account) *accountStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.accounts[id]; ok && s.asset == acct.AssetCode && s.scale == acct.AssetScale {
		return s
	}
	return &accountStats{asset: acct.AssetCode, scale: acct.AssetScale,
		labels: prometheus.Labels{"account": id, "asset": acct.AssetCode, "scale": strconv.Itoa(int(acct.AssetScale))}}
}

// activate makes s the account's series, deleting those of another asset or scale (they would
// be misleading), and reports whether s is new. Called when a pipeline goes into service,
// before its first packet.
func (m *Metrics) activate(id string, s *accountStats) (created bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.accounts[id]
	if old == s {
		return false
	}
	if ok {
		m.deleteSeries(id)
	}
	s.in.init(m.inPackets.MustCurryWith(s.labels), m.inValue.MustCurryWith(s.labels))
	s.out.init(m.outPackets.MustCurryWith(s.labels), m.outValue.MustCurryWith(s.labels))
	s.rateLimited = m.rateLimited.With(s.labels)
	s.balance = m.balance.With(s.labels)
	s.storeErrors = m.storeErrors.MustCurryWith(s.labels)
	for _, op := range storeErrorOps {
		s.storeErrors.WithLabelValues(op) // at 0 from the start: increase() sees the first error
	}
	m.accounts[id] = s
	return true
}

// accountStats are one account's metric children.
// The children are set by Metrics.activate; a pipeline reads them only once in service.
type accountStats struct {
	asset       string
	scale       uint8
	labels      prometheus.Labels
	in, out     directionStats
	rateLimited prometheus.Counter
	balance     prometheus.Gauge
	storeErrors *prometheus.CounterVec
}

func (s *accountStats) storeError(op string) { s.storeErrors.WithLabelValues(op).Inc() }

// OpEndPacket names, in MetricBalanceStoreErrors, a packet whose balance changes the store
// could not make durable after its outcome (store.PacketScoper.EndPacket).
const OpEndPacket = "end"

// storeErrorOps are the operation label values of MetricBalanceStoreErrors.
var storeErrorOps = []string{opRefund, opCommit, opRelease, OpEndPacket}

// StoreError counts a store failure after a packet's outcome on the account's
// MetricBalanceStoreErrors (op: what failed); nothing for an account without a pipeline.
func (m *Metrics) StoreError(account, op string) {
	m.mu.Lock()
	s := m.accounts[account]
	m.mu.Unlock()
	if s != nil {
		s.storeError(op)
	}
}

// counterPair is the packet and value counters of one (result, code).
type counterPair struct{ packets, value prometheus.Counter }

func (c *counterPair) observe(amount uint64) {
	c.packets.Inc()
	c.value.Add(float64(amount)) // a metric, not money: float is fine here
}

// codeOther is the code label of every reject whose code is not F/T/R00–99. A peer may send
// any 3 bytes as a code: as labels they would make a new series per code (unbounded) and,
// when not valid UTF-8, a panic in the Prometheus client.
const codeOther = "other"

// directionStats caches the children of one direction. Reject codes are looked up in a fixed
// table indexed by class and number (F/T/R × 00–99, then codeOther), filled lazily: only codes
// that occur become series.
type directionStats struct {
	packets, value    *prometheus.CounterVec
	fulfilled, failed counterPair
	rejected          [otherIndex + 1]atomic.Pointer[counterPair]
}

func (d *directionStats) init(packets, value *prometheus.CounterVec) {
	pair := func(result string) counterPair {
		return counterPair{packets.WithLabelValues(result, ""), value.WithLabelValues(result, "")}
	}
	d.packets, d.value = packets, value
	d.fulfilled, d.failed = pair(resultFulfilled), pair(resultFailed)
}

func (d *directionStats) observe(f *ilp.Fulfill, err error, amount uint64) {
	switch result, r := resultOf(f, err); result {
	case resultFulfilled:
		d.fulfilled.observe(amount)
	case resultRejected:
		d.rejectedPair(r.Code).observe(amount)
	default:
		d.failed.observe(amount)
	}
}

func (d *directionStats) rejectedPair(code ilp.ErrorCode) *counterPair {
	i, label := codeIndex(code), string(code)
	if i < 0 {
		i, label = otherIndex, codeOther
	}
	if c := d.rejected[i].Load(); c != nil {
		return c
	}
	c := &counterPair{d.packets.WithLabelValues(resultRejected, label), d.value.WithLabelValues(resultRejected, label)}
	d.rejected[i].CompareAndSwap(nil, c) // a racing twin holds the same children: either is fine
	return d.rejected[i].Load()
}

// otherIndex is codeOther's slot in directionStats.rejected, after F00..R99.
const otherIndex = 3 * 100

// codeIndex maps "F00".."R99" to 0..299, and anything else to -1.
func codeIndex(c ilp.ErrorCode) int {
	if len(c) != 3 || c[1] < '0' || c[1] > '9' || c[2] < '0' || c[2] > '9' {
		return -1
	}
	class := 0
	switch c[0] {
	case 'F':
	case 'T':
		class = 1
	case 'R':
		class = 2
	default:
		return -1
	}
	return class*100 + int(c[1]-'0')*10 + int(c[2]-'0')
}

// statsIn and statsOut count packets and value by result and reject code.
func (b *builder) statsIn() func(ilp.Handler) ilp.Handler {
	if b.stats == nil {
		return nil
	}
	return statsWrap(&b.stats.in)
}

func (b *builder) statsOut() func(ilp.Handler) ilp.Handler {
	if b.stats == nil {
		return nil
	}
	return statsWrap(&b.stats.out)
}

func statsWrap(d *directionStats) func(ilp.Handler) ilp.Handler {
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			f, err := next(ctx, p)
			d.observe(f, err, p.Amount)
			return f, err
		}
	}
}
