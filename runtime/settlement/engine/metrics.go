package engine

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"
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
	MetricLeaseLost      = "ilp_settlement_engine_store_lease_lost"
)

// Outcomes of a settlement attempt: the values of the outcome label of MetricSettlements.
const (
	OutcomeSettled     = "settled"         // Settle returned what it paid (all of it, or part: the rest is queued again)
	OutcomeNotSettled  = "not_settled"     // ErrNotSettled: queued again, tried after the backoff
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
// it. Start reads it, with Config.Registerer, so that MetricQueued is right from the start
// after a restart; Memory and Redis implement it. With a Store that does not, the metric
// counts only what this process queued.
type QueueReader interface {
	QueuedAmount(ctx context.Context, id string) (decimal.Decimal, error)
}

// metrics are the framework's metrics: nil (no Registerer) does nothing. It keeps, besides
// the collectors, the exact amounts and the credits behind its gauges, so that the gauges
// are set from decimals (never sums of floats), and an acknowledgement counted twice (a
// credit delivered twice) lowers them once.
type metrics struct {
	reg            prometheus.Registerer
	scale          int32
	queuedG        *prometheus.GaugeVec   // account
	inProgress     *prometheus.GaugeVec   // account
	settlements    *prometheus.CounterVec // account, outcome
	value          *prometheus.CounterVec // account
	retries        *prometheus.CounterVec // account
	creditsPending *prometheus.GaugeVec   // account
	credits        *prometheus.CounterVec // account
	acked          *prometheus.CounterVec // account
	creditFailures *prometheus.CounterVec // account, reason
	leaseLost      prometheus.Gauge

	mu       sync.Mutex
	accounts map[string]bool            // the accounts recorded: only they have settlement series
	queued   map[string]decimal.Decimal // account → queued to settle (standard units)
	running  map[string]int             // account → Settle calls running (one loop per account)
	attempts map[string]string          // account → the id of its attempt (gone with the account)
	pending  map[string]string          // credit key → account, not yet acknowledged
	nPending map[string]int             // account → its credits in pending
}

// newMetrics builds the metrics to register with reg (see register); nil reg, none.
func newMetrics(reg prometheus.Registerer, scale uint8) *metrics {
	if reg == nil {
		return nil
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"account"})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, append([]string{"account"}, labels...))
	}
	m := &metrics{reg: reg, scale: int32(scale),
		queuedG:        gauge(MetricQueued, "Amount queued to settle and not yet given to Settle, in the account's units (leftovers below the ledger's precision included)"),
		inProgress:     gauge(MetricInProgress, "Settle calls running"),
		settlements:    counter(MetricSettlements, "Settlement attempts by outcome: settled, not_settled, outcome_unknown, failed, cancelled, interrupted", "outcome"),
		value:          counter(MetricSettledValue, "Amount Settle reported settled, in the account's units"),
		retries:        counter(MetricRetries, "Settlements of the account scheduled again after a backoff (not settled, outcome unknown, a store failure)"),
		creditsPending: gauge(MetricCreditsPending, "Incoming settlements queued for the connector and not yet acknowledged (retried until they are)"),
		credits:        counter(MetricCredits, "Incoming settlements queued for the connector"),
		acked:          counter(MetricCreditsAcked, "Incoming settlements the connector acknowledged"),
		creditFailures: counter(MetricCreditFailures, "Credits the connector did not acknowledge, retried (reason: not_found, refused, error)", "reason"),
		leaseLost: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLeaseLost,
			Help: "1 once the store's lease (Redis) is lost: the process must restart"}),
		accounts: map[string]bool{}, queued: map[string]decimal.Decimal{}, running: map[string]int{}, attempts: map[string]string{}, pending: map[string]string{}, nPending: map[string]int{},
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.queuedG, m.inProgress, m.settlements, m.value, m.retries,
		m.creditsPending, m.credits, m.acked, m.creditFailures, m.leaseLost}
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

// load sets the gauges from what store holds: called by Start before anything may change
// it (before Connect, and before the API listens).
func (m *metrics) load(ctx context.Context, store Store) error {
	if m == nil {
		return nil
	}
	ids, err := store.Accounts(ctx)
	if err != nil {
		return fmt.Errorf("settlement engine: metrics: accounts: %w", err)
	}
	qr, _ := store.(QueueReader)
	for _, id := range ids {
		q := decimal.Zero
		if qr != nil {
			if q, err = qr.QueuedAmount(ctx, id); err != nil {
				return fmt.Errorf("settlement engine: metrics: queued for %s: %w", id, err)
			}
		}
		m.account(id)
		m.queue(id, q)
	}
	credits, err := store.Credits(ctx)
	if err != nil {
		return fmt.Errorf("settlement engine: metrics: queued credits: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range credits {
		m.addPendingLocked(c)
	}
	return nil
}

// units is amount (standard units) in the account's units.
func (m *metrics) units(amount decimal.Decimal) float64 {
	f, _ := amount.Shift(m.scale).Float64()
	return f
}

// account records id (created): its settlement series exist from now.
func (m *metrics) account(id string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.accounts[id] {
		m.accounts[id] = true
		m.queuedG.WithLabelValues(id).Set(0)
		m.inProgress.WithLabelValues(id).Set(0)
	}
}

// forget drops the series of id, deleted from the store (its queue and attempt with it).
// Its credit series stay while it has credits pending (they are still delivered): the last
// acknowledgement drops them.
func (m *metrics) forget(id string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.accounts, id)
	delete(m.queued, id)
	delete(m.running, id)
	delete(m.attempts, id)
	l := prometheus.Labels{"account": id}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{m.queuedG, m.inProgress, m.settlements, m.value, m.retries} {
		v.DeletePartialMatch(l)
	}
	if m.nPending[id] == 0 {
		m.forgetCreditsLocked(id)
	}
}

func (m *metrics) forgetCreditsLocked(id string) {
	l := prometheus.Labels{"account": id}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{m.creditsPending, m.credits, m.acked, m.creditFailures} {
		v.DeletePartialMatch(l)
	}
}

// queue adds d (standard units; negative: taken) to what is queued for id, a recorded
// account: the store changed so. Never below 0: a store that is no QueueReader leaves what
// an earlier process queued uncounted, and taking it would.
func (m *metrics) queue(id string, d decimal.Decimal) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.accounts[id] {
		return // deleted meanwhile: its queue went with it
	}
	q := decimal.Max(m.queued[id].Add(d), decimal.Zero)
	m.queued[id] = q
	m.queuedG.WithLabelValues(id).Set(m.units(q))
}

// taken counts at, just taken from id's queue.
func (m *metrics) taken(id string, at Attempt) {
	if m == nil {
		return
	}
	m.attempt(id, at.ID)
	m.queue(id, at.Amount.Neg())
}

// attempt notes that id's attempt is attemptID (taken, or read from the store).
func (m *metrics) attempt(id, attemptID string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.accounts[id] {
		m.attempts[id] = attemptID
	}
}

// ended counts the end of id's attempt attemptID, written to the store with requeue queued
// again: the store queues it only if the attempt is still id's — not if the account was
// deleted meanwhile (its attempt with it), even if it was created again since.
func (m *metrics) ended(id, attemptID string, requeue decimal.Decimal) {
	if m == nil {
		return
	}
	m.mu.Lock()
	kept := m.attempts[id] == attemptID
	if kept {
		delete(m.attempts, id)
	}
	m.mu.Unlock()
	if kept {
		m.queue(id, requeue)
	}
}

// settling counts a Settle of id starting (+1) or ending (-1). One that ends after its
// account was deleted (and maybe created again) is not counted: it started before.
func (m *metrics) settling(id string, d int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.running[id]
	if !m.accounts[id] || d < 0 && !ok {
		return
	}
	if n += d; n > 0 {
		m.running[id] = n
	} else {
		delete(m.running, id)
	}
	m.inProgress.WithLabelValues(id).Set(float64(n))
}

// outcome counts an attempt of id, and what it settled.
func (m *metrics) outcome(id, outcome string, settled decimal.Decimal) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.accounts[id] {
		return
	}
	m.settlements.WithLabelValues(id, outcome).Inc()
	if outcome == OutcomeSettled {
		m.value.WithLabelValues(id).Add(m.units(settled))
	}
}

// retry counts a settlement of id scheduled after a backoff.
func (m *metrics) retry(id string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.accounts[id] {
		m.retries.WithLabelValues(id).Inc()
	}
}

// creditQueued counts c, queued in the store.
func (m *metrics) creditQueued(c Credit) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.credits.WithLabelValues(c.Account).Inc()
	m.addPendingLocked(c)
}

func (m *metrics) addPendingLocked(c Credit) {
	if _, ok := m.pending[c.Key]; ok {
		return
	}
	m.pending[c.Key] = c.Account
	m.nPending[c.Account]++
	m.creditsPending.WithLabelValues(c.Account).Set(float64(m.nPending[c.Account]))
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
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.pending[c.Key]; ok {
		m.creditFailures.WithLabelValues(c.Account, reason).Inc()
	}
}

// creditAcked counts c acknowledged by the connector and, if forgotten, no longer pending.
func (m *metrics) creditAcked(c Credit, forgotten bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.pending[c.Key]; !ok {
		return // counted already (delivered twice)
	}
	m.acked.WithLabelValues(c.Account).Inc()
	if !forgotten {
		return // still in the store: resent at the next start
	}
	delete(m.pending, c.Key)
	m.nPending[c.Account]--
	n := m.nPending[c.Account]
	if n == 0 {
		delete(m.nPending, c.Account)
	}
	if n == 0 && !m.accounts[c.Account] {
		m.forgetCreditsLocked(c.Account)
		return
	}
	m.creditsPending.WithLabelValues(c.Account).Set(float64(n))
}

// watchLease sets MetricLeaseLost once failed is closed, until ctx ends.
func (m *metrics) watchLease(ctx context.Context, failed <-chan struct{}) {
	if m == nil {
		return
	}
	select {
	case <-failed:
		m.leaseLost.Set(1)
	case <-ctx.Done():
	}
}
