package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// These tests keep the messages a user switching from the JS connector found confusing fixed:
// before is what the message said, after what it must say now (a substring of the error).

// twoAccounts is a CONNECTOR_ACCOUNTS of about 300 characters whose second account ends in a
// trailing comma, far past what quote shows of a value.
func twoAccounts(secret string) string {
	acct := func(port int, tail string) string {
		return fmt.Sprintf(`{"relation":"child","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,`+
			`"balance":{"minimum":"-1000000","maximum":"5000000"},"options":{"listener":{"port":%d,"secret":"%s"}}%s}`, port, secret, tail)
	}
	return `{"alice":` + acct(7768, "") + `,"bob":` + acct(7769, ",") + `}`
}

func TestJSONErrorsSayWhere(t *testing.T) {
	accounts := twoAccounts("bob-token-0123456789")
	comma := strings.LastIndex(accounts, ",}") + 2 // 1-based position of the '}' after it
	tests := []struct {
		name   string
		env    map[string]string // FromEnv, or
		file   string            // FromData when set
		before string            // the old message (must be gone)
		after  []string          // the new one
		hidden string            // never in the message
	}{
		{"300 characters, trailing comma in the second account",
			map[string]string{"CONNECTOR_ACCOUNTS": accounts}, "",
			`CONNECTOR_ACCOUNTS = "{\"alice\":{\"relation\":\"child\"`,
			[]string{fmt.Sprintf("CONNECTOR_ACCOUNTS: expected JSON; syntax error at character %d of %d: invalid character '}' looking for beginning of object key string; near: …", comma, len(accounts)),
				`; near: …ons":{"listener":{"port":***,"secret":***}},<<here>>}}`},
			"bob-token"},
		{"one-line value cut short",
			map[string]string{"CONNECTOR_ROUTES": `[{"targetPrefix":"test.b","peerId":"b"}`}, "",
			`CONNECTOR_ROUTES = "[{\"targetPrefix\"`,
			[]string{`CONNECTOR_ROUTES: expected JSON; syntax error at the end (after character 39): unexpected end of JSON input; near: [{"targetPrefix":***,"peerId":***}<<here>>`}, ""},
		{"empty object variable",
			map[string]string{"CONNECTOR_STORE_CONFIG": ``}, "",
			`CONNECTOR_STORE_CONFIG = "": expected JSON: unexpected end of JSON input`,
			[]string{`CONNECTOR_STORE_CONFIG: expected JSON; the value is empty`}, ""},
		{"multi-line variable (a YAML block in a manifest)",
			map[string]string{"CONNECTOR_BACKEND_CONFIG": "{\n  \"base\": \"EUR\",\n  \"rates\": {\"USD\": 1.08,}\n}"}, "",
			`CONNECTOR_BACKEND_CONFIG = "{\n  \"base\"`,
			[]string{`CONNECTOR_BACKEND_CONFIG: expected JSON; syntax error at line 3, column 25: invalid character '}' looking for beginning of object key string; near:   "rates": {"USD": ***,<<here>>}`}, ""},
		{"URL password near the error",
			map[string]string{"CONNECTOR_ACCOUNTS": `{"up":{"plugin":"ilp-plugin-btp","options":{"server":"btp+ws://:s3cr3t@up:7768"},}}`}, "",
			`CONNECTOR_ACCOUNTS = "{\"up\"`,
			[]string{`syntax error at character 82 of 83: invalid character '}' looking for beginning of object key string; near: …"up":{"plugin":***,"options":{"server":***},<<here>>}}`}, "s3cr3t"},
		{"error inside a value",
			map[string]string{"CONNECTOR_ACCOUNTS": "{\"up\":{\"assetCode\":\"US\tD\"}}"}, "",
			`near: {"up":{"assetCode":"US\t`,
			[]string{`syntax error at character 23 of 27: invalid character '\t' in string literal; near: {"up":{"assetCode":***<<here>>***}}`}, "US"},
		{"value cut short",
			map[string]string{"CONNECTOR_ACCOUNTS": `{"up":{"assetCode":"USD`}, "",
			`"USD<<here>>`,
			[]string{`syntax error at the end (after character 23): unexpected end of JSON input; near: {"up":{"assetCode":***<<here>>`}, "USD"},
		{"a string after a key's colon is a value, even before a colon",
			map[string]string{"CONNECTOR_ACCOUNTS": `{"up":{"secret":"s3cr3t":1}}`}, "",
			`"s3cr3t":`,
			[]string{`near: {"up":{"secret":***<<here>>:***}}`}, "s3cr3t"},
		{"key written with a unicode escape, single-quoted value",
			map[string]string{"CONNECTOR_ACCOUNTS": `{"up":{"s\u0065cret":'s3cr3t'}}`}, "",
			`'s3cr3t'`,
			[]string{`near: {"up":{"s\u0065cret":<<here>>***}}`}, "s3cr3t"},
		{"JSON file",
			nil, "{\n  \"ilpAddress\": \"test.a\",\n  \"spread\": 0.01,\n}\n",
			`config file x: invalid JSON: invalid character '}'`,
			[]string{`config file x: invalid JSON, syntax error at line 4, column 1: invalid character '}' looking for beginning of object key string; near: <<here>>}`}, ""},
		{"JSON file indented",
			nil, "  {\"ilpAddress\": \"test.a\"\n   \"spread\": 0.01}",
			`config file x: invalid JSON: invalid character '"' after object key:value pair`,
			[]string{`config file x: invalid JSON, syntax error at line 2, column 4: invalid character '"' after object key:value pair; near:    <<here>>"spread": ***}`}, ""},
		{"JSON file with CRLF line ends",
			nil, "{\r\n  \"ilpAddress\": \"test.a\" x,\r\n  \"spread\": 0.01\r\n}\r\n",
			`x,\r`,
			[]string{`config file x: invalid JSON, syntax error at line 2, column 26: invalid character 'x' after object key:value pair; near:   "ilpAddress": *** <<here>>***,`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := load(tt.env, tt.file)
			checkMessage(t, err, tt.before, tt.after, tt.hidden)
		})
	}
}

// TestJSONErrorsSayWhereInEveryJSONVariable: every object and array variable gets the position.
func TestJSONErrorsSayWhereInEveryJSONVariable(t *testing.T) {
	for _, s := range settings {
		if s.kind != kObject && s.kind != kArray {
			continue
		}
		t.Run(s.key, func(t *testing.T) {
			_, err := FromEnv(envOf(base(map[string]string{EnvName(s.key): `{"a":1,}`})))
			checkMessage(t, err, "expected JSON: invalid character", []string{
				EnvName(s.key) + `: expected JSON; syntax error at character 8 of 8: invalid character '}' looking for beginning of object key string; near: {"a":***,<<here>>}`}, "")
		})
	}
}

func TestMessagesNameTheSource(t *testing.T) {
	listener := func(port int) string {
		return fmt.Sprintf(`{"p":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,"options":{"listener":{"port":%d,"secret":"s"}}}}`, port)
	}
	engine := `{"e":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,` +
		`"options":{"server":"btp+ws://:s@up:1"},"settlementEngine":{"url":"http://engine:3000"}}}`
	tests := []struct {
		name   string
		env    map[string]string // FromEnv, or
		file   string            // FromData when set
		before string
		after  []string
	}{
		{"admin API port from the environment",
			map[string]string{"CONNECTOR_ADMIN_API": "true", "CONNECTOR_ADMIN_API_PORT": "17776", "CONNECTOR_ACCOUNTS": listener(17776)}, "",
			`CONNECTOR_ACCOUNTS: account "p": options = 17776: port 17776 is already used by adminApiPort`,
			[]string{`CONNECTOR_ACCOUNTS: account "p": options.listener.port = 17776: port 17776 is already used by CONNECTOR_ADMIN_API_PORT; give each listener its own port`}},
		{"admin API port from a file",
			nil, "ilpAddress: test.a\nadminApi: true\nadminApiPort: 17776\naccounts: " + listener(17776) + "\n",
			`config file x: account "p": options = 17776: port 17776 is already used by adminApiPort`,
			[]string{`config file x: account "p": options.listener.port = 17776: port 17776 is already used by adminApiPort; give each listener its own port`}},
		{"settlement API port from the environment",
			map[string]string{"CONNECTOR_SETTLEMENT_API_PORT": "7768", "CONNECTOR_SETTLEMENT_API_HOST": "0.0.0.0", "CONNECTOR_ACCOUNTS": strings.TrimSuffix(listener(7768), "}") + "," + strings.TrimPrefix(engine, "{")}, "",
			`account "e": settlementEngine = 7768: port 7768 (settlementApiPort, which this account's engine needs) is already used by account "p"`,
			[]string{`CONNECTOR_ACCOUNTS: account "e": settlementEngine: port 7768 (CONNECTOR_SETTLEMENT_API_PORT, which this account's engine needs) is already used by account "p" (options.listener.port)`}},
		{"network from the environment",
			map[string]string{"CONNECTOR_ILP_ADDRESS": "g.acme"}, "",
			`env is "test" (CONNECTOR_ENV): use an address of that network or set env to match`,
			[]string{`CONNECTOR_ILP_ADDRESS = "g.acme": a g. (live network) address is not allowed on the test network; CONNECTOR_ENV is "test": use an address of that network or set CONNECTOR_ENV to match (RFC 34)`}},
		{"network from a file",
			nil, "ilpAddress: g.acme\n",
			`env is "test" (CONNECTOR_ENV)`,
			[]string{`config file x: ilpAddress = "g.acme": a g. (live network) address is not allowed on the test network; env is "test": use an address of that network or set env to match (RFC 34)`}},
		{"static rates from the environment",
			map[string]string{"CONNECTOR_BACKEND": "static", "CONNECTOR_BACKEND_CONFIG": `{"base":"EUR","rates":{"USD":"1.08"}}`,
				"CONNECTOR_ACCOUNTS": strings.Replace(listener(0), "USD", "XRP", 1)}, "",
			`add it to backendConfig's rates`,
			[]string{`CONNECTOR_ACCOUNTS: account "p": assetCode = "XRP": the static backend has no price for it: add it to the rates of CONNECTOR_BACKEND_CONFIG`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := load(tt.env, tt.file)
			checkMessage(t, err, tt.before, tt.after, "")
		})
	}
}

// TestMillisMinimumIsSaidOnce: a duration below its minimum gets the same message whether
// the source or Validate refuses it, so that -1 and 0 are not told different rules.
func TestMillisMinimumIsSaidOnce(t *testing.T) {
	for _, d := range Defaults().millisGlobals() {
		for _, v := range []int64{-1, d.min - 1} {
			t.Run(fmt.Sprintf("%s=%d", d.key, v), func(t *testing.T) {
				want := fmt.Sprintf("expected a whole number of milliseconds, at least %d", d.min)
				_, err := FromEnv(envOf(base(map[string]string{EnvName(d.key): fmt.Sprint(v)})))
				checkMessage(t, err, "positive number of milliseconds", []string{fmt.Sprintf("%s = %q: %s", EnvName(d.key), fmt.Sprint(v), want)}, "")
				c, _ := FromEnv(envOf(base(nil)))
				setGlobalMillis(c, d.key, v)
				checkMessage(t, c.Validate(), "positive number of milliseconds", []string{fmt.Sprintf("%s = %d: %s", d.key, v, want)}, "")
			})
		}
	}
}

// setGlobalMillis sets the duration of a millisGlobals key, in milliseconds.
func setGlobalMillis(c *Config, key string, ms int64) {
	set := map[string]*time.Duration{
		"minMessageWindow": &c.MinMessageWindow, "maxHoldTime": &c.MaxHoldTime,
		"routeBroadcastInterval": &c.RouteBroadcastInterval, "routeCleanupInterval": &c.RouteCleanupInterval,
		"routeExpiry": &c.RouteExpiry, "initialConnectTimeout": &c.InitialConnectTimeout,
	}
	*set[key] = time.Duration(ms) * time.Millisecond
}

func TestRepeatedAccountID(t *testing.T) {
	tests := []struct {
		name   string
		env    string // CONNECTOR_ACCOUNTS, or
		file   string // a config file when set
		before string
		after  string // the whole error
	}{
		{"twice", `{"a":` + btpChild + `,"a":` + btpChild + `}`, "",
			`account "a": (account): account id given twice`,
			`CONNECTOR_ACCOUNTS: account id "a" appears twice; JS would silently keep the last one — remove one`},
		{"three times, said once", `{"a":` + btpChild + `,"b":` + btpChild + `,"a":` + btpChild + `,"a":` + btpChild + `}`, "",
			`account id given twice`,
			`CONNECTOR_ACCOUNTS: account id "a" appears 3 times; JS would silently keep the last one — keep only one`},
		{"in a YAML file", "", "ilpAddress: test.a\naccounts:\n  a: " + btpChild + "\n  a: " + btpChild + "\n",
			`(accepted: the YAML decoder kept the last)`,
			`config file x: accounts: account id "a" appears twice; JS would silently keep the last one — remove one`},
		{"in a JSON file", "", `{"ilpAddress":"test.a","accounts":{"a":` + btpChild + `,"a":` + btpChild + `}}`,
			`account id given twice`,
			`config file x: accounts: account id "a" appears twice; JS would silently keep the last one — remove one`},
		// The YAML decoder reads these keys as one number or boolean, which becomes the same
		// JSON key: reading the keys' text used to let the repeat through, one account winning.
		{"YAML 1 and 01", "", yamlAccounts("1", "01"), "", `config file x: accounts: account id "1" appears twice; JS would silently keep the last one — remove one`},
		{"YAML 0x1, 1.0 and +1", "", yamlAccounts("0x1", "1.0", "+1"), "", `config file x: accounts: account id "1" appears 3 times; JS would silently keep the last one — keep only one`},
		{"YAML 1_000 and 1000", "", yamlAccounts("1_000", "1000"), "", `config file x: accounts: account id "1000" appears twice; JS would silently keep the last one — remove one`},
		{"YAML 1 and \"1\"", "", yamlAccounts("1", `"1"`), "", `config file x: accounts: account id "1" appears twice; JS would silently keep the last one — remove one`},
		{"YAML yes and true", "", yamlAccounts("yes", "true"), "", `config file x: accounts: account id "true" appears twice; JS would silently keep the last one — remove one`},
		{"YAML on and 'true'", "", yamlAccounts("on", "'true'"), "", `config file x: accounts: account id "true" appears twice; JS would silently keep the last one — remove one`},
		{"YAML floats equal as float32", "", yamlAccounts("1.00000001", "1.00000002"), "", `config file x: accounts: account id "1" appears twice; JS would silently keep the last one — remove one`},
		{"YAML accounts given twice", "", "ilpAddress: test.a\naccounts:\n  a: " + btpChild + "\naccounts:\n  b: " + btpChild + "\n",
			"", `config file x: accounts: given twice; a decoder would silently keep the last one — remove one`},
		{"YAML top-level key given as 'spread' and spread", "", "ilpAddress: test.a\nspread: 0.01\n'spread': 0.5\naccounts:\n  a: " + btpChild + "\n",
			"", `config file x: spread: given twice; a decoder would silently keep the last one — remove one`},
		{"JSON file, spread given three times", "", `{"ilpAddress":"test.a","spread":0.01,"spread":0.5,"spr\u0065ad":0.5,"accounts":{"a":` + btpChild + `}}`,
			"", `config file x: spread: given 3 times; a decoder would silently keep the last one — keep only one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := load(map[string]string{"CONNECTOR_ACCOUNTS": tt.env}, tt.file)
			checkMessage(t, err, tt.before, []string{tt.after}, "")
			if err != nil && err.Error() != tt.after {
				t.Errorf("error\n%v\nwant exactly\n%s", err, tt.after)
			}
		})
	}
}

// yamlAccounts is a YAML config file with a btpChild account for each of the keys.
func yamlAccounts(keys ...string) string {
	s := "ilpAddress: test.a\naccounts:\n"
	for _, k := range keys {
		s += "  " + k + ": " + btpChild + "\n"
	}
	return s
}

// TestYAMLKeysAreTheDocumentKeys: the account ids readYAMLKeys reads are the keys of the JSON
// document sigs.k8s.io/yaml makes, for every way YAML has of writing a key that it reads as
// something other than the key's text (yamlKeyString copies its rules).
func TestYAMLKeysAreTheDocumentKeys(t *testing.T) {
	for _, k := range []string{
		"a", "1", "01", "0x1F", "0o17", "0b101", "+1", "-1", "1_000", "1.0", "1e3", ".5", "-.5", "1.00000001",
		"3.14159265358979", "9223372036854775807", "-9223372036854775808", "1e400", ".inf", "-.Inf", ".NaN",
		"true", "yes", "Yes", "on", "ON", "y", "n", "no", "off", "False", "2001-12-14", "12:30", "0777", "!!str 01",
		`"01"`, "'yes'", "&x z", "a b", "\u00e9", `"\u00e9"`,
	} {
		t.Run(k, func(t *testing.T) {
			data := []byte("accounts:\n  " + k + ": 0\n")
			doc, err := yaml.YAMLToJSON(data)
			if err != nil {
				t.Skipf("refused by the YAML decoder: %v", err)
			}
			var m struct{ Accounts map[string]json.RawMessage }
			if err := json.Unmarshal(doc, &m); err != nil || len(m.Accounts) != 1 {
				t.Fatalf("document %s: %v", doc, err)
			}
			got := readYAMLKeys(data).accounts
			if len(got) != 1 || m.Accounts[got[0]] == nil {
				t.Errorf("read %q; the document has %s", got, doc)
			}
		})
	}
}

// checkMessage fails unless err holds every after, and neither before nor hidden.
// load reads a config file when file is set, else the environment env adds to base's.
func load(env map[string]string, file string) error {
	var err error
	if file != "" {
		_, err = FromData([]byte(file), "config file x")
	} else {
		_, err = FromEnv(envOf(base(env)))
	}
	return err
}

func checkMessage(t *testing.T, err error, before string, after []string, hidden string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, a := range after {
		if !strings.Contains(msg, a) {
			t.Errorf("error\n%s\ndoes not contain\n%s", msg, a)
		}
	}
	if before != "" && strings.Contains(msg, before) {
		t.Errorf("error still says %q:\n%s", before, msg)
	}
	if hidden != "" && strings.Contains(msg, hidden) {
		t.Errorf("error shows %q:\n%s", hidden, msg)
	}
	if strings.Contains(msg, keyMark) || strings.Contains(msg, exactMark) {
		t.Errorf("error has an unresolved mark: %q", msg)
	}
}
