package config

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// dashboard is what the test reads of grafana/ilpfleet-dashboard.json.
type dashboard struct {
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// grafanaBuiltins are the variables Grafana defines itself that the dashboard uses.
var grafanaBuiltins = map[string]string{"__rate_interval": "1m"}

var dashboardVar = regexp.MustCompile(`\$\{?(\w+)\}?`)

// TestDashboard checks every query of the Grafana dashboard: its variables are the dashboard's
// own or Grafana's, it parses as PromQL once they are replaced (promtool check rules, each query
// a recording rule), and every metric of ours it reads is one the code exports. Panel ids are
// unique, as Grafana needs them to be.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("grafana", "ilpfleet-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("grafana/ilpfleet-dashboard.json: %v", err)
	}
	values := map[string]string{}
	for k, v := range grafanaBuiltins {
		values[k] = v
	}
	for _, v := range d.Templating.List {
		values[v.Name] = "x"
	}
	ids := map[int]bool{}
	var rules []map[string]string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d is used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			where := fmt.Sprintf("panel %q query %s", p.Title, q.RefID)
			checkExported(t, where, q.Expr)
			rules = append(rules, map[string]string{
				"record": fmt.Sprintf("dashboard:panel_%d_%s", p.ID, q.RefID),
				"expr":   substitute(t, where, q.Expr, values),
			})
		}
	}
	checkPromQL(t, rules)
}

// substitute replaces the dashboard variables in expr by values, failing for one undefined.
func substitute(t *testing.T, where, expr string, values map[string]string) string {
	t.Helper()
	return dashboardVar.ReplaceAllStringFunc(expr, func(m string) string {
		name := strings.Trim(m, "${}")
		v, ok := values[name]
		if !ok {
			t.Errorf("%s uses $%s, which the dashboard does not define", where, name)
		}
		return v
	})
}

// checkPromQL has promtool parse the queries, as recording rules of one group.
func checkPromQL(t *testing.T, rules []map[string]string) {
	t.Helper()
	doc, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtoolPath(t), "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}
