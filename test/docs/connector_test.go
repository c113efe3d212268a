package docs

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// configDocs are the files whose CONNECTOR_* examples are tested.
var configDocs = []string{"README.md", "docs/configuration.md"}

// baseEnv is what a lone example of one variable runs with: a connector needs an address.
var baseEnv = map[string]string{"CONNECTOR_ILP_ADDRESS": "test.docs"}

// unset removes a variable of baseEnv in a context.
const unset = "\x00unset"

// upAccount is a parent account named up, for examples that name it.
const upAccount = `{"up":{"relation":"parent","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,"options":{"server":"btp+ws://:s@up:7768"}}}`

// envContext is what the example of a variable in the variables table needs besides
// baseEnv, by "VARIABLE" or, first, by "VARIABLE=example".
var envContext = map[string]map[string]string{
	"CONNECTOR_ENV=production":           {"CONNECTOR_ILP_ADDRESS": "g.docs"},
	"CONNECTOR_ILP_ADDRESS":              {"CONNECTOR_ENV": "production"},
	"CONNECTOR_ILP_ADDRESS_INHERIT_FROM": {"CONNECTOR_ILP_ADDRESS": unset, "CONNECTOR_ACCOUNTS": upAccount},
	"CONNECTOR_DEFAULT_ROUTE":            {"CONNECTOR_ACCOUNTS": upAccount},
	"CONNECTOR_ROUTES": {"CONNECTOR_ENV": "production", "CONNECTOR_ILP_ADDRESS": "g.docs",
		"CONNECTOR_ACCOUNTS": `{"bank":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,"options":{"server":"btp+ws://:s@bank:7768"}}}`},
	"CONNECTOR_BACKEND=static": {"CONNECTOR_BACKEND_CONFIG": `{"base":"EUR","rates":{"USD":"1.08"}}`},
	"CONNECTOR_BACKEND_CONFIG": {"CONNECTOR_BACKEND": "static"},
	"CONNECTOR_STORE=file":     {"CONNECTOR_STORE_PATH": "/var/lib/connector"},
	"CONNECTOR_STORE=redis":    {"CONNECTOR_STORE_CONFIG": `{"url":"redis://127.0.0.1:6379/0"}`},
	"CONNECTOR_STORE_CONFIG":   {"CONNECTOR_STORE": "redis"},
	"CONNECTOR_ADMIN_API_PORT": {"CONNECTOR_ADMIN_API": "true"},
	"CONNECTOR_ADMIN_API_HOST": {"CONNECTOR_ADMIN_API": "true"},
	"CONNECTOR_SETTLEMENT_API_PORT": {"CONNECTOR_ACCOUNTS": `{"peer":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,
		"options":{"server":"btp+ws://:s@peer:7768"},"settlementEngine":{"url":"http://engine:3000"}}}`},
}

// notValues are code spans of the variables table's Example column that are not values.
var notValues = map[string]string{
	"openssl rand -base64 32": "a command that prints a value",
}

// proseJSON are the JSON code spans of the prose (outside tables and blocks), with the
// variable each is a value of and what else it needs. A JSON span missing here fails the test.
var proseJSON = map[string]map[string]string{
	`{"base":"EUR","rates":{"USD":"1.08","XRP":"2.1"}}`: {"CONNECTOR_BACKEND": "static", "CONNECTOR_BACKEND_CONFIG": ""},
}

// accountBase is the account each example of the accounts table is set in: a valid one.
const accountBase = `{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,
	"options":{"server":"btp+ws://:s@peer:7768"},"balance":{"maximum":"5000000"}}`

// accountContext is what an example of the accounts table needs besides accountBase.
var accountContext = map[string]map[string]any{
	"settlementEngine.settleEvery": {"settlementEngine": map[string]any{"url": "http://engine:3000"}},
	"options":                      {"options": map[string]any{}},
}

// loadEnv runs env through the config loader and the connector's build of the accounts (the
// plugin options are checked there, the third step of docs/configuration.md).
func loadEnv(env map[string]string) error {
	cfg, err := config.FromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return err
	}
	return build(cfg)
}

// build builds a connector of cfg, which connects nothing, on a memory store, so that a file
// or Redis store of an example is neither created nor dialled.
func build(cfg *config.Config) error {
	c, err := connector.New(cfg, connector.Options{Store: store.NewMemory()})
	if err != nil {
		return err
	}
	return c.Close(context.Background())
}

// withBase returns baseEnv with ctx over it.
func withBase(ctx map[string]string) map[string]string {
	env := maps.Clone(baseEnv)
	for k, v := range ctx {
		if v == unset {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	return env
}

// expect checks the outcome of an example against its directive.
func expect(t *testing.T, where string, err error, refused string) {
	t.Helper()
	switch {
	case refused == "" && err != nil:
		t.Errorf("%s: refused: %v", where, err)
	case refused != "" && err == nil:
		t.Errorf("%s: accepted; the doc says it is refused with %q", where, refused)
	case refused != "" && !strings.Contains(err.Error(), refused):
		t.Errorf("%s: refused with %v; the doc says %q", where, err, refused)
	}
}

// TestConnectorConfigFiles loads the YAML config files of the docs (YAML documents without
// apiVersion and kind) as `ilpfleet connector --config` does.
func TestConnectorConfigFiles(t *testing.T) {
	n := 0
	for _, d := range yamlExamples(t) {
		dir, err := parseDirective(d.marker)
		if err != nil || d.isObject() || dir.fragment != "" {
			continue // TestManifestsAdmitted reports a bad directive
		}
		raw, err := json.Marshal(d.obj)
		if err != nil {
			t.Fatal(err)
		}
		n++
		expect(t, d.where, loadData(raw, d.where), dir.refused)
	}
	if n == 0 {
		t.Fatal("no connector config file in the docs' yaml blocks")
	}
}

// loadData loads a config file's content and builds its connector.
func loadData(raw []byte, name string) error {
	cfg, err := config.FromData(raw, name)
	if err != nil {
		return err
	}
	return build(cfg)
}

// TestConnectorJSONBlocks loads the json blocks: an accounts object (or one "id": {…} entry of
// it) as CONNECTOR_ACCOUNTS, anything else as a config file.
func TestConnectorJSONBlocks(t *testing.T) {
	forBlocks(t, "json", func(b block, dir directive) bool {
		text := strings.TrimSpace(b.text)
		if strings.HasPrefix(text, `"`) {
			text = "{" + text + "}" // one entry of an accounts object
		}
		if isAccounts(text) {
			expect(t, b.String(), loadEnv(withBase(map[string]string{"CONNECTOR_ACCOUNTS": text})), dir.refused)
		} else {
			expect(t, b.String(), loadData([]byte(text), b.String()), dir.refused)
		}
		return true
	})
}

// forBlocks calls fn with each block of configDocs in language lang and its directive (a bad
// directive is an error, and its block is skipped). fn returns whether the block was an
// example; forBlocks returns how many were, and fails the test if none was.
func forBlocks(t *testing.T, lang string, fn func(b block, dir directive) bool) int {
	t.Helper()
	n := 0
	for _, f := range configDocs {
		for _, b := range readDoc(t, f).blocks {
			if b.lang != lang {
				continue
			}
			dir, err := parseDirective(b.marker)
			if err != nil {
				t.Errorf("%s: %v", b, err)
				continue
			}
			if fn(b, dir) {
				n++
			}
		}
	}
	if n == 0 {
		t.Fatalf("no example in a %s block of %s", lang, strings.Join(configDocs, ", "))
	}
	return n
}

// isAccounts tells an accounts object (every value has a relation) from a config file.
func isAccounts(text string) bool {
	var m map[string]map[string]json.RawMessage
	if json.Unmarshal([]byte(text), &m) != nil || len(m) == 0 {
		return false
	}
	for _, a := range m {
		if _, ok := a["relation"]; !ok {
			return false
		}
	}
	return true
}

// TestConnectorShellEnv loads the CONNECTOR_* variables set in the sh blocks: those of a block's
// lines that only set variables, and those given to an `ilpfleet connector` command.
func TestConnectorShellEnv(t *testing.T) {
	n := forBlocks(t, "sh", func(b block, dir directive) bool {
		env, connector := map[string]string{}, false
		for _, c := range parseShell(b.text) {
			if len(c.args) == 0 || isIlpfleet(c.args, "connector") {
				maps.Copy(env, c.env)
				connector = connector || len(c.args) > 0
			}
		}
		if len(env) == 0 && !connector {
			return false
		}
		expect(t, b.String(), loadEnv(env), dir.refused)
		return true
	})
	t.Logf("%d sh blocks with CONNECTOR_* variables", n)
}

// TestConnectorVariablesTable loads each example of the variables table of
// docs/configuration.md, as the value of its variable.
func TestConnectorVariablesTable(t *testing.T) {
	examples := func(cell string) []string { return spans(withoutParens(cell)) }
	tableExamples(t, "variables", "Variable", examples, func(file, name, v string) bool {
		if why, ok := notValues[v]; ok {
			t.Logf("%s = %s: not tested: %s", name, v, why)
			return false
		}
		if v == `""` {
			v = "" // how the table writes the empty string
		}
		ctx, ok := envContext[name+"="+v]
		if !ok {
			ctx = envContext[name]
		}
		env := withBase(ctx)
		env[name] = v
		expect(t, file+": "+name+"="+v, loadEnv(env), "")
		return true
	})
}

// tableExamples calls fn with each example of the tables of docs/configuration.md whose first
// column is key and that have an Example column: for each row, name is the first cell's code
// spans joined, and each v one of examples(the row's Example cell). fn returns whether v was
// an example; fewer than 20 fail the test (the what table's header has changed).
func tableExamples(t *testing.T, what, key string, examples func(cell string) []string, fn func(file, name, v string) bool) {
	t.Helper()
	n := 0
	for _, tb := range readDoc(t, "docs/configuration.md").tables {
		ex := tb.column("Example")
		if tb.column(key) != 0 || ex < 0 {
			continue
		}
		for _, row := range tb.rows {
			name := strings.Join(spans(row[0]), "")
			for _, v := range examples(row[ex]) {
				if fn(tb.file, name, v) {
					n++
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d examples in the %s table: has its header changed?", n, what)
	}
	t.Logf("%d examples", n)
}

// withoutParens drops the parenthesized remarks of a table cell: in "`{…}` (`static`: 1 EUR =
// 1.08 USD)" only the first span is an example.
func withoutParens(cell string) string {
	var b strings.Builder
	depth := 0
	for _, r := range cell {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestAccountsTable sets each example of the accounts table of docs/configuration.md in a
// valid account and loads it.
func TestAccountsTable(t *testing.T) {
	tableExamples(t, "accounts", "Key", spans, func(file, key, v string) bool {
		acct := account(t, key, v)
		env := withBase(map[string]string{"CONNECTOR_ACCOUNTS": `{"docs":` + acct + `}`})
		expect(t, file+": account "+key+" = "+v, loadEnv(env), "")
		return true
	})
}

// account returns accountBase with the dotted key set to the example (JSON, or else a string).
func account(t *testing.T, key, example string) string {
	t.Helper()
	var a map[string]any
	if err := json.Unmarshal([]byte(accountBase), &a); err != nil {
		t.Fatal(err)
	}
	maps.Copy(a, accountContext[key])
	var v any
	if json.Unmarshal([]byte(example), &v) != nil {
		v = example // a bare word: child, USD
	}
	path := strings.Split(key, ".")
	m := a
	for _, p := range path[:len(path)-1] {
		sub, ok := m[p].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[p] = sub
		}
		m = sub
	}
	m[path[len(path)-1]] = v
	out, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestConnectorProseJSON loads the JSON code spans of the prose, each as the variable
// proseJSON names.
func TestConnectorProseJSON(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range configDocs {
		for _, s := range spans(strings.Join(readDoc(t, f).prose, "\n")) {
			var v any
			if !strings.ContainsAny(s[:1], "{[") || s == "{}" || s == "[]" || json.Unmarshal([]byte(s), &v) != nil {
				continue // not an object or array, empty, or not JSON: not an example
			}
			ctx, ok := proseJSON[s]
			if !ok {
				t.Errorf("%s: the JSON example %s is not tested: add it to proseJSON with its variable", f, s)
				continue
			}
			seen[s] = true
			env := withBase(nil)
			for k, v := range ctx {
				if v == "" {
					v = s // the variable the span is the value of
				}
				env[k] = v
			}
			expect(t, f+": "+s, loadEnv(env), "")
		}
	}
	for s := range proseJSON {
		if !seen[s] {
			t.Errorf("proseJSON entry %s matches no example: remove it", s)
		}
	}
}

// TestDocumentedErrors gives the loader the config that docs/configuration.md describes at its
// start (account alice with a bad maximum, a bad spread, a route to bob, alice's btp options
// missing) and checks, step by step, that the errors are those the doc prints.
func TestDocumentedErrors(t *testing.T) {
	d := readDoc(t, "docs/configuration.md")
	var printed string // the first plain block: the errors of step 1
	for _, b := range d.blocks {
		if b.lang == "" {
			printed = b.text
			break
		}
	}
	prose := strings.Join(strings.Fields(strings.Join(d.prose, "\n")), " ")
	alice := func(maximum, options string) string {
		return `{"alice":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,` +
			`"balance":{"maximum":"` + maximum + `"},"options":` + options + `}}`
	}
	cases := []struct {
		step string
		env  map[string]string
		want []string // lines the error must contain, taken from the doc
	}{
		{"1", map[string]string{"CONNECTOR_ACCOUNTS": alice("12a", "{}"), "CONNECTOR_SPREAD": "abc",
			"CONNECTOR_ROUTES": `[{"targetPrefix":"test.bob","peerId":"bob"}]`},
			strings.Split(strings.TrimSpace(printed), "\n")},
		{"2", map[string]string{"CONNECTOR_ACCOUNTS": alice("12", "{}"), "CONNECTOR_ROUTES": `[{"targetPrefix":"test.bob","peerId":"bob"}]`},
			[]string{docSpan(t, prose, "CONNECTOR_ROUTES: [0].peerId")}},
		{"3", map[string]string{"CONNECTOR_ACCOUNTS": alice("12", "{}")},
			[]string{docSpan(t, prose, "connector: account alice: btp:")}},
	}
	for _, tc := range cases {
		t.Run("step "+tc.step, func(t *testing.T) {
			err := loadEnv(withBase(tc.env))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the doc shows\n\t%s\nthe loader says\n\t%v", w, err)
				}
			}
		})
	}
}

// docSpan returns the code span of prose that starts with prefix.
func docSpan(t *testing.T, prose, prefix string) string {
	t.Helper()
	for _, s := range spans(prose) {
		if strings.HasPrefix(s, prefix) {
			return s
		}
	}
	t.Fatalf("docs/configuration.md has no code span starting with %q", prefix)
	return ""
}
