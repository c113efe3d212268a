package controllers

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
)

// statusListTimeout bounds the Lists of one scrape: a cache that has not synced yet blocks a
// List until its context ends. The kinds are listed side by side under this one deadline, so
// that a scrape stays under Prometheus' default scrape timeout (10 s) and a kind that blocks
// does not hold back the others.
const statusListTimeout = 5 * time.Second

// listFailureLogEvery is how often a List that keeps failing is logged, per kind: every
// scrape (15–30 s) would flood the log for as long as the cache is not synced.
const listFailureLogEvery = time.Minute

// The names of the status metrics, which alerting rules read.
const (
	// MetricCondition is one gauge per object, condition type and status (true, false,
	// unknown): 1 on the condition's current status, kube-state-metrics style. Its reason
	// label (the condition's, one of the operator's fixed set) lets an alert tell pods down
	// from a configuration left out.
	MetricCondition = "ilpfleet_condition"
	// MetricAccountConnected is 1 while an Account's link to its counterparty is up.
	MetricAccountConnected = "ilpfleet_account_connected"
)

var (
	conditionDesc = prometheus.NewDesc(MetricCondition,
		"A status condition of an ilpfleet object: 1 on the condition's current status, 0 on the two others; reason is the condition's.",
		[]string{"kind", "namespace", "name", "type", "status", "reason"}, nil)
	accountConnectedDesc = prometheus.NewDesc(MetricAccountConnected,
		"1 when the Account's link to its counterparty is up (status.connected), else 0.",
		[]string{"namespace", "name", "connector", "relation"}, nil)
)

// conditionStatuses are the statuses each condition has a series for (label: lower case).
var conditionStatuses = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

// statusKinds are the kinds whose conditions are exported, with the list type of each.
var statusKinds = []struct {
	kind    string
	newList func() client.ObjectList
}{
	{"Connector", func() client.ObjectList { return &ilpv1.ConnectorList{} }},
	{"Account", func() client.ObjectList { return &ilpv1.AccountList{} }},
	{"Route", func() client.ObjectList { return &ilpv1.RouteList{} }},
	{"SettlementEngine", func() client.ObjectList { return &ilpv1.SettlementEngineList{} }},
}

// StatusCollector exports the status conditions of every Connector, Account, Route and
// SettlementEngine, and whether each Account is connected, as read from a client at scrape
// time. It keeps nothing between scrapes, so an object deleted or a condition removed leaves
// no stale series. Register it once per process: every replica exports the same series from
// its own cache, leader or not.
type StatusCollector struct {
	reader  client.Reader
	timeout time.Duration
	log     logr.Logger
	now     func() time.Time
	limiter warnlimit.Limiter
}

// NewStatusCollector reads from c: the manager's cached client, so that a scrape costs the
// API server nothing.
func NewStatusCollector(c client.Reader) *StatusCollector {
	return newStatusCollector(c, ctrl.Log.WithName("status-metrics"), time.Now)
}

func newStatusCollector(c client.Reader, log logr.Logger, now func() time.Time) *StatusCollector {
	return &StatusCollector{reader: c, timeout: statusListTimeout, log: log, now: now,
		limiter: warnlimit.Limiter{Every: listFailureLogEvery}}
}

// Describe sends the two metrics' descriptors.
func (s *StatusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- conditionDesc
	ch <- accountConnectedDesc
}

// Collect lists each kind and sends its series. A kind whose List fails is left out of this
// scrape and logged, rather than sent as an invalid metric: controller-runtime's metrics
// endpoint answers 500 to any collection error (promhttp.HTTPErrorOnError), which would hide
// every other metric of the operator for as long as the cache is not synced.
func (s *StatusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	lists := make([]client.ObjectList, len(statusKinds))
	var wg sync.WaitGroup
	for i, k := range statusKinds {
		wg.Go(func() {
			list := k.newList()
			if err := s.reader.List(ctx, list); err != nil {
				s.logListFailure(k.kind, err)
				return
			}
			lists[i] = list
		})
	}
	wg.Wait()
	connectors := connectorsByKey(lists)
	for i, k := range statusKinds {
		if lists[i] == nil {
			continue
		}
		_ = meta.EachListItem(lists[i], func(item runtime.Object) error {
			collectObject(ch, k.kind, item.(client.Object), connectors)
			return nil
		})
	}
}

// connectorsByKey indexes the listed Connectors by namespace and name; nil when their List
// failed (lists holds nil for a kind whose List failed).
func connectorsByKey(lists []client.ObjectList) map[client.ObjectKey]*ilpv1.Connector {
	for _, list := range lists {
		if cl, ok := list.(*ilpv1.ConnectorList); ok {
			m := make(map[client.ObjectKey]*ilpv1.Connector, len(cl.Items))
			for i := range cl.Items {
				m[client.ObjectKeyFromObject(&cl.Items[i])] = &cl.Items[i]
			}
			return m
		}
	}
	return nil
}

// logListFailure logs a failed List at most once per listFailureLogEvery and kind, with the
// count of failures held back since the last line.
func (s *StatusCollector) logListFailure(kind string, err error) {
	if ok, suppressed := s.limiter.Allow(kind, s.now()); ok {
		s.log.Error(err, "status metrics left out of this scrape: list failed", "kind", kind, "failuresNotLogged", suppressed)
	}
}

// collectObject sends the condition series of o and, for an Account, its connected series.
// That one is left out while no connector pod can run the Account (notRunning: its Connector
// gone, scaled to zero, or its pods leaving it out), and when the Connectors could not be
// listed: a link down is then not news — a Connector scaled to zero on purpose must not page
// as peers down, and the other cases make the Account not Ready, which alerts of its own.
func collectObject(ch chan<- prometheus.Metric, kind string, o client.Object, connectors map[client.ObjectKey]*ilpv1.Connector) {
	for _, c := range uniqueConditions(statusConditions(o)) {
		for _, st := range conditionStatuses {
			ch <- prometheus.MustNewConstMetric(conditionDesc, prometheus.GaugeValue, boolValue(c.Status == st),
				kind, o.GetNamespace(), o.GetName(), c.Type, strings.ToLower(string(st)), c.Reason)
		}
	}
	if a, ok := o.(*ilpv1.Account); ok && connectors != nil &&
		!notRunning(a, connectors[client.ObjectKey{Namespace: a.Namespace, Name: a.Spec.ConnectorRef}]) {
		ch <- prometheus.MustNewConstMetric(accountConnectedDesc, prometheus.GaugeValue, boolValue(a.Status.Connected),
			a.Namespace, a.Name, a.Spec.ConnectorRef, string(a.Spec.Relation))
	}
}

// statusConditions is the status.conditions of an object of one of statusKinds.
func statusConditions(o client.Object) []metav1.Condition {
	switch o := o.(type) {
	case *ilpv1.Connector:
		return o.Status.Conditions
	case *ilpv1.Account:
		return o.Status.Conditions
	case *ilpv1.Route:
		return o.Status.Conditions
	case *ilpv1.SettlementEngine:
		return o.Status.Conditions
	}
	return nil
}

// uniqueConditions keeps the first condition of each type, as meta.FindStatusCondition reads
// them. The API server keeps types unique (listType=map), but two series with the same labels
// would fail the whole scrape, so a list written otherwise must not be able to cause that.
func uniqueConditions(conds []metav1.Condition) []metav1.Condition {
	seen := make(map[string]bool, len(conds))
	out := conds[:0:0]
	for _, c := range conds {
		if !seen[c.Type] {
			seen[c.Type] = true
			out = append(out, c)
		}
	}
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
