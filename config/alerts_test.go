package config

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/ilpfleet/ilpfleet/controllers"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/prometheus/client_golang/prometheus"
)

// alertRules is prometheus/alerts.yaml as promtool reads it: the PrometheusRule's spec.
type alertRules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// TestAlertRules checks the alerting rules with promtool (`check rules`, then the unit tests
// of prometheus/alerts_test.yaml with `test rules`), and that every metric of ours a rule
// reads is one the code exports: a renamed metric would leave its alert silent for ever.
func TestAlertRules(t *testing.T) {
	promtool := promtoolPath(t)
	dir := t.TempDir()
	rules := readAlertRules(t, filepath.Join(dir, "rules.yaml"))
	tests, err := os.ReadFile(filepath.Join("prometheus", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			checkExported(t, "alert "+r.Alert, r.Expr)
		}
	}
}

// exportedMetrics are the metrics of ours that the alerts and the dashboard read.
var exportedMetrics = []string{
	controllers.MetricCondition, controllers.MetricAccountConnected,
	middleware.MetricBalanceStoreErrors, middleware.MetricIncomingPackets, middleware.MetricIncomingValue,
	middleware.MetricBalance, middleware.MetricBalanceMinimum, middleware.MetricBalanceMaximum,
	middleware.MetricRateLimitedPackets,
	settlement.MetricSettlementPending, settlement.MetricSettlementValue,
	connector.MetricRatesAge, connector.MetricAccountConnected,
	engine.MetricCreditsPending, engine.MetricSettlements,
}

// exportedHistograms are the histograms among them, read as <name>_bucket, _sum and _count.
var exportedHistograms = []string{middleware.MetricIncomingDuration}

var ourMetric = regexp.MustCompile(`\b(?:ilpfleet|ilp_connector|ilp_settlement_engine)_[a-z_]+\b`)

// checkExported fails the test for each metric of ours that expr reads and the code does not
// export: a renamed metric would leave an alert silent, or a panel empty, for ever.
func checkExported(t *testing.T, where, expr string) {
	t.Helper()
	for _, name := range ourMetric.FindAllString(expr, -1) {
		if !slices.Contains(exportedMetrics, name) && !slices.Contains(exportedHistograms, histogramBase(name)) {
			t.Errorf("%s reads %s, which is not a metric the code exports (%v, histograms %v)", where, name, exportedMetrics, exportedHistograms)
		}
	}
}

// readAlertRules reads the PrometheusRule, writes its spec to path as a rules file and
// returns it.
func readAlertRules(t *testing.T, path string) alertRules {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		Kind string          `json:"kind"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &obj); err != nil || obj.Kind != "PrometheusRule" {
		t.Fatalf("prometheus/alerts.yaml: want a PrometheusRule, got kind %q (%v)", obj.Kind, err)
	}
	spec, err := yaml.JSONToYAML(obj.Spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	if err := yaml.Unmarshal(spec, &rules); err != nil || len(rules.Groups) == 0 {
		t.Fatalf("the PrometheusRule's spec has no rule groups (%v)", err)
	}
	return rules
}

// promtoolPath finds promtool on PATH, or has hack/promtool.sh provide it (taken out of
// Debian's prometheus package into bin/), as make test does first.
func promtoolPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	var stderr bytes.Buffer
	cmd := exec.Command(filepath.Join("..", "hack", "promtool.sh"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promtool is needed to test the alerting rules and hack/promtool.sh could not provide it: %v\n%s", err, stderr.String())
	}
	return string(bytes.TrimSpace(out))
}

// histogramBase is the histogram whose series name is, "" when name is no histogram series.
func histogramBase(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return base
		}
	}
	return ""
}

// scrapeLabels are the labels a scrape adds to a series (prometheus-operator's target labels).
var scrapeLabels = []string{"job", "pod", "instance", "namespace", "service", "endpoint", "container"}

// TestAlertFixtureLabels checks that every input series of the promtool unit tests carries the
// labels the code gives its metric, plus a scrape's, and no other: the rules are tested against
// these series, so a label the code renamed would otherwise leave an alert that matches nothing
// in production and still passes its tests. Metrics of collectors this package cannot build
// cheaply (the connector's links and rates age, the engine framework's) are not checked.
func TestAlertFixtureLabels(t *testing.T) {
	code := codeLabels(t)
	data, err := os.ReadFile(filepath.Join("prometheus", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	series := regexp.MustCompile(`series: '([a-z_:]+)\{([^}]*)\}'`)
	label := regexp.MustCompile(`(\w+)=`)
	checked := 0
	for _, m := range series.FindAllStringSubmatch(string(data), -1) {
		name, want := m[1], code[m[1]]
		if want == nil {
			continue
		}
		var have []string
		for _, l := range label.FindAllStringSubmatch(m[2], -1) {
			if slices.Contains(want, l[1]) || !slices.Contains(scrapeLabels, l[1]) {
				have = append(have, l[1])
			}
		}
		slices.Sort(have)
		if !slices.Equal(have, want) {
			t.Errorf("alerts_test.yaml: %s{%s}: labels of the code %v, not %v", name, m[2], want, have)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no input series of a known metric found in alerts_test.yaml")
	}
}

// codeLabels are the label names, sorted, of the metrics the collectors of the operator, the
// packet middleware and the settlement client describe.
func codeLabels(t *testing.T) map[string][]string {
	t.Helper()
	rec := &recorder{}
	if _, err := middleware.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := settlement.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	rec.cs = append(rec.cs, controllers.NewStatusCollector(nil))
	out := map[string][]string{}
	desc := regexp.MustCompile(`fqName: "([a-z_:]+)".*variableLabels: \{([^}]*)\}\}$`)
	ch := make(chan *prometheus.Desc, 64)
	for _, c := range rec.cs {
		go func() { c.Describe(ch); ch <- nil }()
		for d := <-ch; d != nil; d = <-ch {
			m := desc.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the labels of %s", d)
			}
			labels := strings.FieldsFunc(m[2], func(r rune) bool { return r == ',' })
			slices.Sort(labels)
			out[m[1]] = labels
		}
	}
	return out
}

// recorder is a prometheus.Registerer that keeps what it is given.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }
