package settlement

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, in the ilp_connector_ family of the packet metrics.
const (
	MetricSettlements       = "ilp_connector_settlements_total"
	MetricSettlementValue   = "ilp_connector_settlement_value_total"
	MetricSettlementFailure = "ilp_connector_settlement_failures_total"
	MetricSettlementPending = "ilp_connector_settlements_pending"
)

// Metrics are what an operator on call watches: settlements done each way, requests to the
// engines that failed (and are being retried), and settlements recorded but not yet accepted
// by an engine — a number that keeps growing means an engine is down and the peer is not
// being paid.
type Metrics struct {
	done     *prometheus.CounterVec // direction, account
	value    *prometheus.CounterVec // direction, account; in the account's units
	failures *prometheus.CounterVec // operation, account
	pending  *prometheus.GaugeVec   // account
}

// NewMetrics registers the settlement metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		done: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSettlements,
			Help: "Settlements accepted by the engine (outgoing) or credited to the account (incoming)"}, []string{"direction", "account"}),
		value: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSettlementValue,
			Help: "Value of those settlements, in the account's units"}, []string{"direction", "account"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSettlementFailure,
			Help: "Requests to a settlement engine that failed and are retried (operation: account, settle)"}, []string{"operation", "account"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricSettlementPending,
			Help: "Outgoing settlements recorded but not yet accepted by the engine"}, []string{"account"}),
	}
	for _, c := range []prometheus.Collector{m.done, m.value, m.failures, m.pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("settlement: metrics: %w", err)
		}
	}
	return m, nil
}

// The methods below accept a nil *Metrics (a Settler without metrics).

func (m *Metrics) settled(direction, account string, units int64) {
	if m != nil {
		m.done.WithLabelValues(direction, account).Inc()
		m.value.WithLabelValues(direction, account).Add(float64(units))
	}
}

func (m *Metrics) failed(operation, account string) {
	if m != nil {
		m.failures.WithLabelValues(operation, account).Inc()
	}
}

func (m *Metrics) addPending(account string, d float64) {
	if m != nil {
		m.pending.WithLabelValues(account).Add(d)
	}
}

// forget deletes the series of a removed account.
func (m *Metrics) forget(account string) {
	if m != nil {
		l := prometheus.Labels{"account": account}
		m.done.DeletePartialMatch(l)
		m.value.DeletePartialMatch(l)
		m.failures.DeletePartialMatch(l)
		m.pending.DeletePartialMatch(l)
	}
}
