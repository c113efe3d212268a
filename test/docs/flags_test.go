package docs

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

// commandSources are the files that define each command's flags (on a *flag.FlagSet named fs).
// The flags are read from the source rather than from a built binary: building it would cost
// more than this whole package's tests.
var commandSources = map[string]string{
	"connector":         "connector_cmd.go",
	"settlement-engine": "settlement_cmd.go",
	"manager":           "internal/manager/manager.go",
	"loadgen":           "internal/loadgen/main.go",
	"version":           "main.go", // no flags
}

// flagTables maps the level-2 section of a flags table in docs/operations.md to its command.
var flagTables = map[string]string{"The operator": "manager", "The connector": "connector"}

// flagSetMethods are the *flag.FlagSet methods that define a flag, with the index of the
// flag's name among their arguments.
var flagSetMethods = map[string]int{
	"Bool": 0, "Duration": 0, "Float64": 0, "Func": 0, "Int": 0, "Int64": 0, "String": 0, "TextVar": 1,
	"Uint": 0, "Uint64": 0, "BoolVar": 1, "DurationVar": 1, "Float64Var": 1, "IntVar": 1,
	"Int64Var": 1, "StringVar": 1, "UintVar": 1, "Uint64Var": 1, "Var": 1, "BoolFunc": 0,
}

// commandFlags returns the flags each command defines.
func commandFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	for cmd, file := range commandSources {
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(testenv.Root(), file), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		out[cmd] = fileFlags(f)
	}
	if len(out["connector"]) == 0 || len(out["manager"]) == 0 {
		t.Fatalf("no flags found in the sources (%v): has the flag set been renamed from fs?", out)
	}
	return out
}

// fileFlags collects the names given to fs.<flag method>, plus controller-runtime's zap
// flags where a file binds them to fs.
func fileFlags(f *ast.File) map[string]bool {
	names := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if sel.Sel.Name == "BindFlags" && len(call.Args) == 1 && isIdent(call.Args[0], "fs") {
			fs := flag.NewFlagSet("zap", flag.ContinueOnError)
			(&zap.Options{}).BindFlags(fs)
			fs.VisitAll(func(fl *flag.Flag) { names[fl.Name] = true })
		}
		i, ok := flagSetMethods[sel.Sel.Name]
		if !ok || !isIdent(sel.X, "fs") || len(call.Args) <= i {
			return true
		}
		if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			name, _ := strconv.Unquote(lit.Value)
			names[name] = true
		}
		return true
	})
	return names
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// isIlpfleet tells whether args run the ilpfleet binary, with the command sub when not "".
func isIlpfleet(args []string, sub string) bool {
	if len(args) == 0 || (args[0] != "ilpfleet" && !strings.HasSuffix(args[0], "/ilpfleet")) {
		return false
	}
	return sub == "" || (len(args) > 1 && args[1] == sub)
}

// checkFlags reports the flags of args (a command's arguments after its name) that cmd lacks.
func checkFlags(t *testing.T, known map[string]map[string]bool, where, cmd string, args []string) {
	t.Helper()
	flags, ok := known[cmd]
	if !ok {
		t.Errorf("%s: ilpfleet has no command %q", where, cmd)
		return
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !flags[name] {
			t.Errorf("%s: ilpfleet %s has no flag %s (it has %s)", where, cmd, a, sorted(flags))
		}
	}
}

func sorted(m map[string]bool) string {
	var s []string
	for k := range m {
		s = append(s, "--"+k)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// TestCommandFlags checks the flags of every ilpfleet command line of the docs (sh blocks), of
// the flags tables of docs/operations.md, and of the args of example objects and of the
// operator's Deployment that run an ilpfleet command.
func TestCommandFlags(t *testing.T) {
	known := commandFlags(t)
	for _, f := range docFiles {
		d := readDoc(t, f)
		for _, b := range d.blocks {
			if b.lang != "sh" && b.lang != "" {
				continue
			}
			for _, c := range parseShell(b.text) {
				if isIlpfleet(c.args, "") && len(c.args) > 1 {
					checkFlags(t, known, b.String(), c.args[1], c.args[2:])
				}
			}
		}
		for _, tb := range d.tables {
			if tb.column("Flag") != 0 {
				continue
			}
			cmd, ok := flagTables[tb.section]
			if !ok {
				t.Errorf("%s:%d: a flags table in section %q: add the section's command to flagTables", f, tb.line, tb.section)
				continue
			}
			for _, row := range tb.rows {
				checkFlags(t, known, f+": flags table", cmd, spans(row[0]))
			}
		}
	}
	docs := yamlExamples(t)
	raw, err := os.ReadFile(filepath.Join(testenv.Root(), "config/manager/manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, splitYAML(t, "config/manager/manager.yaml", "", string(raw))...)
	for _, d := range docs {
		for _, args := range commandArgs(d.obj) {
			checkFlags(t, known, d.where, args[0], args[1:])
		}
	}
}

// commandArgs finds the args lists of an object (containers, a SettlementEngine's spec) whose
// first element is an ilpfleet command.
func commandArgs(v any) [][]string {
	var out [][]string
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			if k == "args" {
				if args := stringList(sub); len(args) > 0 && commandSources[args[0]] != "" {
					out = append(out, args)
				}
				continue
			}
			out = append(out, commandArgs(sub)...)
		}
	case []any:
		for _, sub := range v {
			out = append(out, commandArgs(sub)...)
		}
	}
	return out
}

// stringList returns v as a []string, or nil when it is not a list of strings.
func stringList(v any) []string {
	l, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}
