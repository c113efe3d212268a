package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testclock"
)

// TestStatusMetrics: each object of the four kinds exports three ilpfleet_condition series per
// condition (1 on its status), each Account one ilpfleet_account_connected series, and an
// object without conditions no condition series.
func TestStatusMetrics(t *testing.T) {
	for _, tc := range []struct {
		name      string
		objs      []client.Object
		condition []string // expected ilpfleet_condition samples
		connected []string // expected ilpfleet_account_connected samples
	}{
		{
			name:      "connector not ready",
			objs:      []client.Object{metricsConnector("ns1", "alice", cond("Ready", metav1.ConditionFalse))},
			condition: conditionSeries("Connector", "ns1", "alice", "Ready", "false"),
		},
		{
			name: "peer account connected, two conditions",
			objs: []client.Object{metricsConnector("ns1", "alice"), metricsAccount("ns1", "bob", ilpv1.RelationPeer, true,
				cond("Ready", metav1.ConditionTrue), cond("ReferencesResolved", metav1.ConditionTrue))},
			condition: append(conditionSeries("Account", "ns1", "bob", "Ready", "true"),
				conditionSeries("Account", "ns1", "bob", "ReferencesResolved", "true")...),
			connected: []string{`ilpfleet_account_connected{connector="alice",name="bob",namespace="ns1",relation="peer"} 1`},
		},
		{
			name: "peer account down, child account up",
			objs: []client.Object{
				metricsConnector("ns1", "alice"), metricsConnector("ns2", "alice"),
				metricsAccount("ns1", "bob", ilpv1.RelationPeer, false,
					cond("Ready", metav1.ConditionFalse), cond("ReferencesResolved", metav1.ConditionTrue)),
				metricsAccount("ns2", "carol", ilpv1.RelationChild, true, cond("Ready", metav1.ConditionTrue)),
			},
			condition: append(append(conditionSeries("Account", "ns1", "bob", "Ready", "false"),
				conditionSeries("Account", "ns1", "bob", "ReferencesResolved", "true")...),
				conditionSeries("Account", "ns2", "carol", "Ready", "true")...),
			connected: []string{
				`ilpfleet_account_connected{connector="alice",name="bob",namespace="ns1",relation="peer"} 0`,
				`ilpfleet_account_connected{connector="alice",name="carol",namespace="ns2",relation="child"} 1`,
			},
		},
		{
			name: "route and settlement engine unknown",
			objs: []client.Object{
				metricsRoute("ns1", "to-bob", cond("Ready", metav1.ConditionUnknown)),
				metricsEngine("ns1", "xrp", cond("Ready", metav1.ConditionUnknown)),
			},
			condition: append(conditionSeries("Route", "ns1", "to-bob", "Ready", "unknown"),
				conditionSeries("SettlementEngine", "ns1", "xrp", "Ready", "unknown")...),
		},
		{
			name: "objects without conditions",
			objs: []client.Object{
				metricsConnector("ns1", "alice"),
				metricsAccount("ns1", "bob", ilpv1.RelationParent, false),
			},
			connected: []string{`ilpfleet_account_connected{connector="alice",name="bob",namespace="ns1",relation="parent"} 0`},
		},
		{
			// A link down is no news where no pod can run the Account: its Connector gone,
			// scaled to zero (on purpose: no page), or its pods leaving it out (Ready False).
			name: "accounts no pod runs: no connected series",
			objs: []client.Object{
				metricsAccount("ns1", "orphan", ilpv1.RelationPeer, false),
				scaledToZero(metricsConnector("ns2", "alice")), metricsAccount("ns2", "idle", ilpv1.RelationPeer, false),
				metricsConnector("ns3", "alice"), metricsAccount("ns3", "left-out", ilpv1.RelationPeer, false,
					metav1.Condition{Type: "ConfigApplied", Status: metav1.ConditionFalse, Reason: "LeftOut"}),
			},
			condition: conditionSeriesReason("Account", "ns3", "left-out", "ConfigApplied", "false", "LeftOut"),
		},
		{
			name: "a condition type listed twice: the first counts, once",
			objs: []client.Object{metricsConnector("ns1", "alice",
				cond("Ready", metav1.ConditionTrue), cond("Ready", metav1.ConditionFalse))},
			condition: conditionSeries("Connector", "ns1", "alice", "Ready", "true"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newStatusCollector(fakeClient(tc.objs...), logr.Discard(), time.Now)
			if err := compareSeries(c, append(tc.condition, tc.connected...)); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestStatusMetricsForgetDeleted: an object deleted between two scrapes has no series in the
// second; the collector keeps nothing of the first.
func TestStatusMetricsForgetDeleted(t *testing.T) {
	ctx := context.Background()
	gone := metricsAccount("ns1", "bob", ilpv1.RelationPeer, true, cond("Ready", metav1.ConditionTrue))
	cl := fakeClient(metricsConnector("ns1", "alice", cond("Ready", metav1.ConditionTrue)), gone)
	c := newStatusCollector(cl, logr.Discard(), time.Now)
	alice := conditionSeries("Connector", "ns1", "alice", "Ready", "true")

	before := append(conditionSeries("Account", "ns1", "bob", "Ready", "true"),
		`ilpfleet_account_connected{connector="alice",name="bob",namespace="ns1",relation="peer"} 1`)
	if err := compareSeries(c, append(before, alice...)); err != nil {
		t.Fatalf("before the deletion: %v", err)
	}
	if err := cl.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := compareSeries(c, alice); err != nil {
		t.Errorf("after the deletion: %v", err)
	}
}

// TestStatusMetricsListError: a kind whose List fails is left out of the scrape, which still
// succeeds with the other kinds; the failure is logged at most once a minute, with the count
// of failures held back meanwhile.
func TestStatusMetricsListError(t *testing.T) {
	cl := fakeClientListing(failRouteLists,
		metricsConnector("ns1", "alice", cond("Ready", metav1.ConditionTrue)),
		metricsAccount("ns1", "bob", ilpv1.RelationPeer, true, cond("Ready", metav1.ConditionTrue)),
		metricsRoute("ns1", "to-bob", cond("Ready", metav1.ConditionFalse)),
		metricsEngine("ns1", "xrp", cond("Ready", metav1.ConditionTrue)),
	)
	var logged lines
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newStatusCollector(cl, funcr.New(logged.add, funcr.Options{}), clock.Now)
	want := append(append(conditionSeries("Connector", "ns1", "alice", "Ready", "true"),
		conditionSeries("Account", "ns1", "bob", "Ready", "true")...),
		conditionSeries("SettlementEngine", "ns1", "xrp", "Ready", "true")...)
	want = append(want, `ilpfleet_account_connected{connector="alice",name="bob",namespace="ns1",relation="peer"} 1`)

	for _, step := range []struct {
		advance time.Duration
		lines   int
	}{
		{0, 1},                // the first failure is logged
		{30 * time.Second, 1}, // the second, within the minute, is held back
		{31 * time.Second, 2}, // a minute after the first line, the third goes through
	} {
		clock.Add(step.advance)
		if err := compareSeries(c, want); err != nil {
			t.Fatalf("after %v: %v", step.advance, err)
		}
		if got := logged.get(); len(got) != step.lines {
			t.Fatalf("after %v: %d log lines %q; want %d", step.advance, len(got), got, step.lines)
		}
	}
	got := logged.get()
	for i, want := range []string{`"kind"="Route" "failuresNotLogged"=0`, `"kind"="Route" "failuresNotLogged"=1`} {
		if !strings.Contains(got[i], want) || !strings.Contains(got[i], "route cache not synced") {
			t.Errorf("log line %d: %q; want the error and %s", i, got[i], want)
		}
	}
}

// TestStatusMetricsListTimeout: a List that blocks (a cache not synced yet) ends at the
// scrape's deadline and leaves only its own kind out; the kinds listed beside it export — but
// for the Accounts' connected series, which need the Connectors to say whether a pod runs them.
func TestStatusMetricsListTimeout(t *testing.T) {
	cl := fakeClientListing(blockConnectorLists,
		metricsConnector("ns1", "alice", cond("Ready", metav1.ConditionTrue)),
		metricsAccount("ns1", "bob", ilpv1.RelationPeer, true, cond("Ready", metav1.ConditionTrue)),
		metricsRoute("ns1", "to-bob", cond("Ready", metav1.ConditionFalse)),
	)
	var logged lines
	c := newStatusCollector(cl, funcr.New(logged.add, funcr.Options{}), time.Now)
	c.timeout = 10 * time.Millisecond
	want := append(conditionSeries("Account", "ns1", "bob", "Ready", "true"), conditionSeries("Route", "ns1", "to-bob", "Ready", "false")...)
	if err := compareSeries(c, want); err != nil {
		t.Fatal(err)
	}
	got := logged.get()
	if len(got) != 1 || !strings.Contains(got[0], `"kind"="Connector"`) || !strings.Contains(got[0], context.DeadlineExceeded.Error()) {
		t.Errorf("log: %q; want one line of the Connector List's deadline", got)
	}
}

// blockConnectorLists blocks a Connector List as an unsynced cache does, until its context
// ends; the bound only stops a hung test if the collector set no deadline.
func blockConnectorLists(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*ilpv1.ConnectorList); !ok {
		return cl.List(ctx, list, opts...)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("the List had no deadline")
	}
}

func failRouteLists(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*ilpv1.RouteList); ok {
		return errors.New("route cache not synced")
	}
	return cl.List(ctx, list, opts...)
}

// lines collects what a funcr logger writes; the collector logs from the registry's goroutines.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, prefix+" "+args)
}

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

func fakeClient(objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).Build()
}

// fakeClientListing is fakeClient whose Lists go through list (a failure, a block).
func fakeClientListing(list func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error, objs ...client.Object) client.WithWatch {
	return fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).
		WithInterceptorFuncs(interceptor.Funcs{List: list}).Build()
}

// compareSeries gathers c through a pedantic registry, which fails on what a scrape would
// refuse (a series sent twice, a metric not described, labels that do not match the
// descriptor), and compares its series with want, in any order.
func compareSeries(c prometheus.Collector, want []string) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		return err
	}
	fams, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("gather: %w", err)
	}
	var got []string
	for _, f := range fams {
		if f.GetType() != dto.MetricType_GAUGE {
			return fmt.Errorf("%s is a %v; want a gauge", f.GetName(), f.GetType())
		}
		for _, m := range f.GetMetric() {
			got = append(got, sampleLine(f.GetName(), m))
		}
	}
	want = slices.Sorted(slices.Values(want))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	return nil
}

// sampleLine is m in the text format, labels in the registry's (alphabetical) order.
func sampleLine(name string, m *dto.Metric) string {
	labels := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	return fmt.Sprintf("%s{%s} %g", name, strings.Join(labels, ","), m.GetGauge().GetValue())
}

// conditionSeries is the three samples of one condition whose status is current.
func conditionSeries(kind, ns, name, typ, current string) []string {
	return conditionSeriesReason(kind, ns, name, typ, current, "Test")
}

func conditionSeriesReason(kind, ns, name, typ, current, reason string) []string {
	out := make([]string, 0, 3)
	for _, st := range []string{"true", "false", "unknown"} {
		v := 0
		if st == current {
			v = 1
		}
		out = append(out, fmt.Sprintf(`ilpfleet_condition{kind=%q,name=%q,namespace=%q,reason=%q,status=%q,type=%q} %d`, kind, name, ns, reason, st, typ, v))
	}
	return out
}

func cond(typ string, s metav1.ConditionStatus) metav1.Condition {
	return metav1.Condition{Type: typ, Status: s, Reason: "Test", LastTransitionTime: metav1.Now()}
}

func metricsConnector(ns, name string, conds ...metav1.Condition) *ilpv1.Connector {
	c := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	c.Status.Conditions = conds
	return c
}

// scaledToZero is c with spec.replicas 0 and no pod left.
func scaledToZero(c *ilpv1.Connector) *ilpv1.Connector {
	c.Spec.Replicas = ptr.To[int32](0)
	return c
}

func metricsAccount(ns, name string, rel ilpv1.Relation, connected bool, conds ...metav1.Condition) *ilpv1.Account {
	a := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: ilpv1.AccountSpec{ConnectorRef: "alice", Relation: rel}}
	a.Status.Conditions, a.Status.Connected = conds, connected
	return a
}

func metricsRoute(ns, name string, conds ...metav1.Condition) *ilpv1.Route {
	r := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: ilpv1.RouteSpec{ConnectorRef: "alice"}}
	r.Status.Conditions = conds
	return r
}

func metricsEngine(ns, name string, conds ...metav1.Condition) *ilpv1.SettlementEngine {
	e := &ilpv1.SettlementEngine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	e.Status.Conditions = conds
	return e
}
