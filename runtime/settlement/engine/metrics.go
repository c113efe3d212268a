package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
)

// Metric names of the framework (Config.Registerer), in a family of their own beside the
// connector's ilp_connector_settlement… ones. Amounts are in the account's units: standard
// units shifted by Config.AssetScale, as the connector counts them.
const (
	MetricQueued         = "ilp_settlement_engine_settlement_queued"
	MetricInProgress     = "ilp_settlement_engine_settlements_in_progress"
	MetricSettlements    = "ilp_settlement_engine_settlements_total"
	MetricSettledValue   = "ilp_settlement_engine_settlement_value_total"
	MetricRetries        = "ilp_settlement_engine_settlement_retries_total"
	MetricCreditsPending = "ilp_settlement_engine_credits_pending"
	MetricCredits        = "ilp_settlement_engine_credits_total"
	MetricCreditsAcked   = "ilp_settlement_engine_credits_acknowledged_total"
	MetricCreditFailures = "ilp_settlement_engine_credit_failures_total"
)

// Outcomes of a settlement attempt: the values of the outcome label of MetricSettlements.
const (
	OutcomeSettled     = "settled"         // Settle returned what it paid (all of it, or part: the rest is queued again)
	OutcomeNotSettled  = "not_settled"     // ErrNotSettled: queued again, tried after the backoff; or Settle paid 0 with no error: queued again, the backoff cleared, tried when more is queued or asked
	OutcomeUnknown     = "outcome_unknown" // ErrOutcomeUnknown: tried again with the same id after the backoff
	OutcomeFailed      = "failed"          // any other error: taken as settled (SETTLEMENT FAILED in the log)
	OutcomeCancelled   = "cancelled"       // cut short by Close: kept for the next start
	OutcomeInterrupted = "interrupted"     // found in progress at start, not settled again (no IdempotentSettler): taken as settled
)

// Reasons of a credit the connector did not acknowledge: the values of the reason label of
// MetricCreditFailures.
const (
	CreditNotFound = "not_found" // 404: the connector does not settle the account (yet)
	CreditRefused  = "refused"   // another 4xx but 408, 409 and 429: needs a person (see the log)
	CreditError    = "error"     // 5xx, 408, 409, 429, no answer
)

// QueueReader is a Store that tells what is queued to settle for an account without taking
// it: MetricQueued is read from it at each scrape (Memory and Redis implement it). With a
// Store that does not, there is no MetricQueued series at all, rather than a wrong number.
type QueueReader interface {
	QueuedAmount(ctx context.Context, id string) (decimal.Decimal, error)
}

// metrics are the framework's metrics: nil (no Registerer) does nothing. The counters and
// MetricInProgress follow the events; the gauges of stored state (MetricQueued,
// MetricCreditsPending) are read from the store at each scrape (storeGauges), so that they are
// what the store holds whatever the order of the events, after a restart too.
type metrics struct {
	reg            prometheus.Registerer
	scale          int32
	stored         *storeGauges
	inProgress     *prometheus.GaugeVec   // account
	settlements    *prometheus.CounterVec // account, outcome
	value          *prometheus.CounterVec // account
	retries        *prometheus.CounterVec // account
	credits        *prometheus.CounterVec // account
	acked          *prometheus.CounterVec // account
	creditFailures *prometheus.CounterVec // account, reason

	mu       sync.Mutex
	accounts map[string]uint64 // the accounts recorded (only they have settlement series) → their incarnation
	last     uint64            // the last incarnation given
}

// newMetrics builds the metrics of store to register with reg (see register); nil reg, none,
// as a nil pointer in it (a nil *prometheus.Registry), which would panic at Register.
func newMetrics(reg prometheus.Registerer, scale uint8, store Store, log *slog.Logger) *metrics {
	if reg == nil {
		return nil
	}
	if v := reflect.ValueOf(reg); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"account"})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"account"}, labels...))
	}
	m := &metrics{reg: reg, scale: int32(scale), stored: newStoreGauges(store, scale, log),
		inProgress:     gauge(MetricInProgress, "Settle calls running"),
		settlements:    counter(MetricSettlements, "Settlement attempts by outcome: settled, not_settled, outcome_unknown, failed, cancelled, interrupted", "outcome"),
		value:          counter(MetricSettledValue, "Amount Settle reported settled, in the account's units"),
		retries:        counter(MetricRetries, "Settlements of the account scheduled again after a backoff (not settled, outcome unknown, a store failure)"),
		credits:        counter(MetricCredits, "Incoming settlements queued for the connector"),
		acked:          counter(MetricCreditsAcked, "Incoming settlements the connector acknowledged"),
		creditFailures: counter(MetricCreditFailures, "Credits the connector did not acknowledge, retried (reason: not_found, refused, error)", "reason"),
		accounts:       map[string]uint64{},
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.stored, m.inProgress, m.settlements, m.value, m.retries,
		m.credits, m.acked, m.creditFailures}
}

// register registers the metrics with their registerer, all or none.
func (m *metrics) register() error {
	if m == nil {
		return nil
	}
	for i, c := range m.collectors() {
		if err := m.reg.Register(c); err != nil {
			for _, r := range m.collectors()[:i] {
				m.reg.Unregister(r)
			}
			return fmt.Errorf("settlement engine: metrics: %w (servers on one registry need a label of their own each: prometheus.WrapRegistererWith)", err)
		}
	}
	return nil
}

// unregister removes the metrics from their registerer (the server closed, or did not start).
func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}

// scrapeTimeout bounds the store reads of one scrape.
const scrapeTimeout = 5 * time.Second

// storeGauges is the collector of the gauges of stored state, read from the store at each scrape:
// MetricQueued (if the store is a QueueReader) for every account, MetricCreditsPending for
// every account and every account with credits (a deleted one's are still delivered). A read
// that fails leaves out what it would have told — an account's queued amount, or all of a
// gauge — and the rest is served; the failure is logged at most once a minute.
type storeGauges struct {
	store          Store
	qr             QueueReader // nil: no MetricQueued
	scale          int32
	log            *slog.Logger
	queued         *prometheus.Desc
	creditsPending *prometheus.Desc
	failures       warnlimit.Limiter // of the failed reads' log line, one kind
}

func newStoreGauges(store Store, scale uint8, log *slog.Logger) *storeGauges {
	qr, _ := store.(QueueReader)
	return &storeGauges{store: store, qr: qr, scale: int32(scale), log: log, failures: warnlimit.Limiter{Every: time.Minute},
		queued:         prometheus.NewDesc(MetricQueued, "Amount queued to settle and not yet given to Settle, in the account's units (leftovers below the ledger's precision included), as the store holds it when scraped", []string{"account"}, nil),
		creditsPending: prometheus.NewDesc(MetricCreditsPending, "Incoming settlements queued for the connector and not yet acknowledged (retried until they are), as the store holds them when scraped", []string{"account"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *storeGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queued
	ch <- c.creditsPending
}

// Collect implements prometheus.Collector.
func (c *storeGauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	ids, err := c.store.Accounts(ctx)
	if err != nil {
		c.failed("accounts", "", err)
	}
	pending := make(map[string]int, len(ids))
	for _, id := range ids {
		pending[id] = 0
		if c.qr == nil {
			continue
		}
		q, err := c.qr.QueuedAmount(ctx, id)
		if err != nil {
			c.failed("queued amount", id, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, units(q, c.scale), id)
	}
	credits, err := c.store.Credits(ctx)
	if err != nil {
		c.failed("credits", "", err)
		return
	}
	for _, cr := range credits {
		pending[cr.Account]++
	}
	for id, n := range pending {
		ch <- prometheus.MustNewConstMetric(c.creditsPending, prometheus.GaugeValue, float64(n), id)
	}
}

// failed logs a store read of a scrape that failed, at most once a minute.
func (c *storeGauges) failed(what, account string, err error) {
	if ok, n := c.failures.Allow("read", time.Now()); ok {
		c.log.Warn("settlement engine: metrics: cannot read the store; its samples are left out of the scrape",
			"read", what, "account", account, "err", err, "suppressed", n)
	}
}

// units is amount (standard units) in the account's units at scale, for a metric.
func units(amount decimal.Decimal, scale int32) float64 {
	f, _ := amount.Shift(scale).Float64()
	return f
}

// Every value of the outcome and reason labels, whose series are created at 0 with the
// account's: increase() sees the first count only of a series that existed before it.
var (
	allOutcomes = []string{OutcomeSettled, OutcomeNotSettled, OutcomeUnknown, OutcomeFailed, OutcomeCancelled, OutcomeInterrupted}
	allReasons  = []string{CreditNotFound, CreditRefused, CreditError}
)

// track records id (created): its series exist from now, every one at 0.
func (m *metrics) track(id string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.accounts[id] != 0 {
		return
	}
	m.last++
	m.accounts[id] = m.last
	m.inProgress.WithLabelValues(id).Set(0)
	for _, o := range allOutcomes {
		m.settlements.WithLabelValues(id, o)
	}
	for _, r := range allReasons {
		m.creditFailures.WithLabelValues(id, r)
	}
	for _, c := range []*prometheus.CounterVec{m.value, m.retries, m.credits, m.acked} {
		c.WithLabelValues(id)
	}
}

// forget drops the settlement series of id, deleted from the store. Its credit counters
// stay: credits to it may still be delivered (the money arrived).
func (m *metrics) forget(id string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.accounts, id)
	l := prometheus.Labels{"account": id}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{m.inProgress, m.settlements, m.value, m.retries} {
		v.DeletePartialMatch(l)
	}
}

// incarnation is an account as it is when an attempt starts: what the attempt counts is not
// the account's once it was deleted meanwhile (and maybe created again), as the store forgets
// the attempt with the account.
type incarnation struct {
	id  string
	gen uint64 // 0: not recorded
}

// incarnation is id as it is now.
func (m *metrics) incarnation(id string) incarnation {
	if m == nil {
		return incarnation{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return incarnation{id, m.accounts[id]}
}

// currentLocked reports whether r is its account as it is now.
func (m *metrics) currentLocked(r incarnation) bool {
	return r.gen != 0 && m.accounts[r.id] == r.gen
}

// settling counts a Settle of r starting (+1) or ending (-1). Right by construction: both
// count only while r is current, and r stops being so only when forget drops the series.
func (m *metrics) settling(r incarnation, d float64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.currentLocked(r) {
		m.inProgress.WithLabelValues(r.id).Add(d)
	}
}

// outcome counts an attempt of r, and what it settled.
func (m *metrics) outcome(r incarnation, outcome string, settled decimal.Decimal) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.currentLocked(r) {
		return
	}
	m.settlements.WithLabelValues(r.id, outcome).Inc()
	if outcome == OutcomeSettled {
		m.value.WithLabelValues(r.id).Add(units(settled, m.scale))
	}
}

// retry counts a settlement of r scheduled after a backoff, if r is still current.
func (m *metrics) retry(r incarnation) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.currentLocked(r) {
		m.retries.WithLabelValues(r.id).Inc()
	}
}

// creditQueued counts c, queued in the store.
func (m *metrics) creditQueued(c Credit) {
	if m != nil {
		m.credits.WithLabelValues(c.Account).Inc()
	}
}

// creditFailed counts an answer status (0: none) of the connector to c other than an
// acknowledgement.
func (m *metrics) creditFailed(c Credit, status int) {
	if m == nil {
		return
	}
	reason := CreditError
	switch {
	case status == http.StatusNotFound:
		reason = CreditNotFound
	case refused(status):
		reason = CreditRefused
	}
	m.creditFailures.WithLabelValues(c.Account, reason).Inc()
}

// creditAcked counts c acknowledged by the connector.
func (m *metrics) creditAcked(c Credit) {
	if m != nil {
		m.acked.WithLabelValues(c.Account).Inc()
	}
}
