package argocd

import (
	"context"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite argocd-cm.yaml from the health scripts")

const group = "ilp.ilpfleet.dev"

// kinds are the kinds that have a health check; every kind of the API must be here.
var kinds = []string{"Connector", "Account", "Route", "SettlementEngine"}

// healthStatus is what a health script returns, as Argo CD decodes it.
type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// healthTest is argo-cd's health_test.yaml format.
type healthTest struct {
	Tests []struct {
		HealthStatus healthStatus `json:"healthStatus"`
		InputPath    string       `json:"inputPath"`
	} `json:"tests"`
}

func kindDir(kind string) string { return filepath.Join("health", group, kind) }

func readScript(t *testing.T, kind string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(kindDir(kind), "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runHealth runs script against obj the way Argo CD runs an argocd-cm health script: a VM
// without the standard libraries except package, base and table (Argo adds a reduced os, which
// these scripts do not use), the object as the global obj, one second to finish.
func runHealth(script string, obj map[string]any) (healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return healthStatus{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return healthStatus{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return healthStatus{}, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	hs := healthStatus{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}
	switch hs.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return hs, nil
	}
	return hs, fmt.Errorf("invalid health status %q (Argo CD would report Unknown)", hs.Status)
}

// toLua converts a decoded JSON value as Argo CD's decodeValue does.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

func readObject(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

// TestHealthChecks runs each kind's script against every fixture of its health_test.yaml.
func TestHealthChecks(t *testing.T) {
	for _, kind := range kinds {
		script := readScript(t, kind)
		b, err := os.ReadFile(filepath.Join(kindDir(kind), "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var ht healthTest
		if err := yaml.UnmarshalStrict(b, &ht); err != nil {
			t.Fatalf("%s/health_test.yaml: %v", kind, err)
		}
		if len(ht.Tests) == 0 {
			t.Fatalf("%s/health_test.yaml has no tests", kind)
		}
		for _, tc := range ht.Tests {
			t.Run(kind+"/"+tc.InputPath, func(t *testing.T) {
				obj := readObject(t, filepath.Join(kindDir(kind), tc.InputPath))
				if obj["kind"] != kind {
					t.Fatalf("fixture is a %v, not a %s", obj["kind"], kind)
				}
				got, err := runHealth(script, obj)
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.HealthStatus {
					t.Errorf("health = %+v, want %+v", got, tc.HealthStatus)
				}
			})
		}
	}
}

// TestFixturesCoverEveryState makes sure no kind loses the fixtures of a required state, and
// that every fixture on disk is used by health_test.yaml.
func TestFixturesCoverEveryState(t *testing.T) {
	required := []string{"healthy", "progressing", "degraded", "stale-generation", "no-status"}
	for _, kind := range kinds {
		entries, err := os.ReadDir(filepath.Join(kindDir(kind), "testdata"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(kindDir(kind), "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range required {
			if !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), want) }) {
				t.Errorf("%s: no testdata/%s*.yaml fixture", kind, want)
			}
		}
		for _, e := range entries {
			if !strings.Contains(string(b), "testdata/"+e.Name()) {
				t.Errorf("%s: testdata/%s is not used by health_test.yaml", kind, e.Name())
			}
		}
	}
}

// TestScriptsUseOnlyLoadedLibraries guards branches the fixtures may miss: Argo CD runs
// argocd-cm scripts without the string, math and io libraries.
func TestScriptsUseOnlyLoadedLibraries(t *testing.T) {
	for _, kind := range kinds {
		script := readScript(t, kind)
		for _, lib := range []string{"string.", "math.", "io.", "os.", "debug.", ":format(", ":sub(", ":find(", ":match(", ":gsub(", ":lower(", ":upper("} {
			if strings.Contains(script, lib) {
				t.Errorf("%s/health.lua uses %q, which Argo CD does not load for argocd-cm scripts", kind, lib)
			}
		}
	}
}

// readyFalse is a minimal object of kind at generation 1 with Ready=False for reason; progressing,
// when set, adds a Progressing condition with that status.
func readyFalse(kind, reason, progressing string) map[string]any {
	conds := []any{map[string]any{"type": "Ready", "status": "False", "reason": reason, "message": "m", "observedGeneration": 1.0}}
	if progressing != "" {
		conds = append(conds, map[string]any{"type": "Progressing", "status": progressing, "reason": "R", "message": "p", "observedGeneration": 1.0})
	}
	return map[string]any{
		"apiVersion": group + "/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": "x", "generation": 1.0},
		"status":   map[string]any{"observedGeneration": 1.0, "conditions": conds},
	}
}

// controllerReasons collects the values of the Reason* constants of package controllers, plus
// the reasons route_controller.go writes as literals.
func controllerReasons(t *testing.T) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join("..", "..", "controllers", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no controllers sources: %v", err)
	}
	set := map[string]bool{"NextHopNotFound": true, "NextHopOfOtherConnector": true}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Reason") || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					set[v] = true
				}
			}
			return true
		})
	}
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// notReadyReasons says, for each reason the operator writes, what Ready=False with it means
// to Argo CD. A reason the controllers gain must be added here, deliberately: "" marks a
// reason that never comes with Ready=False (Ready=True and Progressing reasons).
var notReadyReasons = map[string]string{
	"Resolved": "", "Available": "", "ScaledToZero": "", "ReplicasSupported": "",
	"Creating": "", "RolloutComplete": "", "RollingOut": "",
	// Pods not available: a rollout, or a failure once it has completed (see below).
	"WorkloadUnavailable": "Degraded",
	// Reference and configuration problems: a person must act.
	"ConnectorNotFound": "Degraded", "SecretNotFound": "Degraded", "SecretKeyNotFound": "Degraded",
	"SettlementEngineNotFound": "Degraded", "SettlementEngineAssetMismatch": "Degraded", "NoSettlementListener": "Degraded",
	"InheritFromNotFound": "Degraded", "InheritFromNotParent": "Degraded",
	"NextHopNotFound": "Degraded", "NextHopOfOtherConnector": "Degraded",
	"ConfigNotApplied": "Degraded", "ReconcileError": "Degraded",
	// The pods run an Account's previous version, or run it without settlement: what was
	// applied is not what Git says, and a person must fix the Secret or the engine.
	"ConfigNotFullyApplied": "Degraded",
	// A link the Connector's replicas cannot share: a person must change one or the other.
	"SingleConnectionLink": "Degraded", "AsyncHTTPLink": "Degraded", "RouteExchangePerPod": "Degraded",
}

// TestEveryReasonClassified runs every reason of the controllers through every script with
// Ready=False and after a completed rollout, so that a new reason cannot slip through unseen.
func TestEveryReasonClassified(t *testing.T) {
	for _, reason := range controllerReasons(t) {
		want, known := notReadyReasons[reason]
		if !known {
			t.Errorf("reason %q of package controllers is not classified in notReadyReasons: decide what Ready=False with it means to Argo CD, and update the health scripts", reason)
			continue
		}
		if want == "" {
			continue
		}
		for _, kind := range kinds {
			want := want
			if kind == "SettlementEngine" && reason == "WorkloadUnavailable" {
				want = "Progressing" // no Progressing condition to tell a rollout from a failure
			}
			got, err := runHealth(readScript(t, kind), readyFalse(kind, reason, "False"))
			if err != nil {
				t.Fatalf("%s %s: %v", kind, reason, err)
			}
			if got.Status != want || !strings.HasPrefix(got.Message, reason+": ") && want == "Degraded" {
				t.Errorf("%s with Ready=False %s: %+v, want %s with the reason in the message", kind, reason, got, want)
			}
		}
	}
}

// TestConnectorRolloutStates checks the Connector's use of its Progressing condition.
func TestConnectorRolloutStates(t *testing.T) {
	script := readScript(t, "Connector")
	cases := []struct {
		name, reason, progressing, want string
	}{
		{"pods starting during a rollout", "WorkloadUnavailable", "True", "Progressing"},
		{"pods starting, rollout not reported yet", "WorkloadUnavailable", "", "Progressing"},
		{"pods lost after the rollout", "WorkloadUnavailable", "False", "Degraded"},
		{"missing secret during a rollout", "SecretNotFound", "True", "Degraded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runHealth(script, readyFalse("Connector", tc.reason, tc.progressing))
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != tc.want {
				t.Errorf("health = %+v, want %s", got, tc.want)
			}
		})
	}
}

// TestMalformedObjects feeds shapes a broken or foreign writer could produce: the scripts
// must still return a valid health, never a Lua error (which Argo CD shows as Unknown).
func TestMalformedObjects(t *testing.T) {
	objs := map[string]map[string]any{
		"no metadata.generation":                {"metadata": map[string]any{}, "status": map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}},
		"condition without fields":              {"metadata": map[string]any{"generation": 1.0}, "status": map[string]any{"observedGeneration": 1.0, "conditions": []any{map[string]any{}}}},
		"Ready=False without reason or message": {"metadata": map[string]any{"generation": 1.0}, "status": map[string]any{"observedGeneration": 1.0, "conditions": []any{map[string]any{"type": "Ready", "status": "False"}}}},
		"empty conditions":                      {"metadata": map[string]any{"generation": 2.0}, "status": map[string]any{"observedGeneration": 2.0, "conditions": []any{}}},
	}
	for _, kind := range kinds {
		script := readScript(t, kind)
		for name, obj := range objs {
			if _, err := runHealth(script, obj); err != nil {
				t.Errorf("%s, %s: %v", kind, name, err)
			}
		}
	}
}

// argocdCM renders the argocd-cm patch that installs every script.
func argocdCM(t *testing.T) []byte {
	t.Helper()
	data := map[string]string{}
	for _, kind := range kinds {
		data["resource.customizations.health."+group+"_"+kind] = readScript(t, kind)
	}
	cm := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "argocd-cm", "namespace": "argocd", "labels": map[string]any{"app.kubernetes.io/part-of": "argocd"}},
		"data":     data,
	}
	b, err := yaml.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	header := "# Generated from health/ilp.ilpfleet.dev/*/health.lua by `go test ./config/argocd -update`. DO NOT EDIT.\n" +
		"# Merge into Argo CD's argocd-cm: kubectl -n argocd patch configmap argocd-cm --patch-file config/argocd/argocd-cm.yaml\n"
	return append([]byte(header), b...)
}

// TestArgoCDConfigMapIsCurrent fails when argocd-cm.yaml does not carry the current scripts.
func TestArgoCDConfigMapIsCurrent(t *testing.T) {
	want := argocdCM(t)
	if *update {
		if err := os.WriteFile("argocd-cm.yaml", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("argocd-cm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("config/argocd/argocd-cm.yaml is stale: run go test ./config/argocd -update")
	}
	// The scripts must survive the YAML round trip byte for byte.
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(got, &cm); err != nil {
		t.Fatal(err)
	}
	for _, kind := range kinds {
		if cm.Data["resource.customizations.health."+group+"_"+kind] != readScript(t, kind) {
			t.Errorf("argocd-cm.yaml: the %s script does not round-trip", kind)
		}
	}
}
