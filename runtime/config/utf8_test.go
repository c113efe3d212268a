package config

import (
	"strings"
	"testing"
)

// Found by FuzzEnvSetting and FuzzParseAccount: encoding/json replaces invalid UTF-8 with
// U+FFFD, so a value with such bytes used to be accepted with a different value than given.
func TestInvalidUTF8IsRefused(t *testing.T) {
	account := func(code string) string {
		return `{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"` + code + `","assetScale":2,"options":{"secret":"s"}}`
	}
	cases := []struct {
		name, key, value string
		wantErr          bool
	}{
		{"string variable", "CONNECTOR_STORE_PATH", "/var/lib/\xff", true},
		{"host", "CONNECTOR_ADMIN_API_HOST", "\xc3", true},
		{"object variable", "CONNECTOR_BACKEND_CONFIG", "{\"k\":\"\xfe\"}", true},
		{"array variable", "CONNECTOR_DISABLE_MIDDLEWARE", "[\"\xff\"]", true},
		{"account field", "CONNECTOR_ACCOUNTS", `{"a":` + account("US\xffD") + `}`, true},
		{"account id", "CONNECTOR_ACCOUNTS", "{\"a\xff\":" + account("USD") + `}`, true},
		{"UTF-8 path kept", "CONNECTOR_STORE_PATH", "/var/lib/café", false},
		{"UTF-8 account kept", "CONNECTOR_ACCOUNTS", `{"a":` + account("€") + `}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := FromEnv(envOf(base(map[string]string{c.key: c.value})))
			if !c.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if cfg != nil || err == nil || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("got %v, %v; want an error naming %s", cfg, err, c.key)
			}
		})
	}
}

func TestParseAccountRefusesInvalidUTF8(t *testing.T) {
	for _, data := range []string{
		"{\"relation\":\"peer\",\"plugin\":\"p\",\"assetCode\":\"\xff\",\"assetScale\":0}",
		"{\"relation\":\"peer\",\"plugin\":\"p\",\"assetCode\":\"USD\",\"assetScale\":0,\"options\":{\"token\":\"\xf0\x28\"}}",
	} {
		if _, err := ParseAccount("a", []byte(data)); err == nil {
			t.Errorf("ParseAccount(%q) accepted it", data)
		}
	}
	a, err := ParseAccount("a", []byte(`{"relation":"peer","plugin":"p","assetCode":"€","assetScale":0}`))
	if err != nil || a.AssetCode != "€" {
		t.Fatalf("a UTF-8 asset code: %+v, %v", a, err)
	}
}

// encoding/json decodes a \u escape of half a surrogate pair as U+FFFD without an error, so
// such a value used to be accepted changed (JSON.parse keeps the lone half): refused now, with
// the setting and the position, and no value shown.
func TestLoneSurrogateIsRefused(t *testing.T) {
	acct := func(id, code, secret string) string {
		return `{"` + id + `":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"` + code +
			`","assetScale":2,"options":{"listener":{"port":0,"secret":"` + secret + `"}}}}`
	}
	file := func(accounts string) string {
		return "{\n  \"ilpAddress\": \"test.a\",\n  \"accounts\": " + accounts + "\n}\n"
	}
	tests := []struct {
		name string
		env  map[string]string // FromEnv, or
		file string            // FromData when set
		want string            // "": accepted
	}{
		{"account id, high half alone", map[string]string{"CONNECTOR_ACCOUNTS": acct(`a\ud800`, "USD", "HUNTER2")}, "",
			`CONNECTOR_ACCOUNTS: the \u escape at character 4 of 143 is half of a UTF-16 surrogate pair, without its other half: ` +
				`it stands for no character, and decoding it would replace it with U+FFFD, changing the value; ` +
				`write the character itself or both halves of its pair; near: {"a<<here>>\ud800":{"relati…`},
		{"secret, low half alone", map[string]string{"CONNECTOR_ACCOUNTS": acct("a", "USD", `HUNTER2\udc00`)}, "",
			`CONNECTOR_ACCOUNTS: the \u escape at character 133 of 143 is half of a UTF-16 surrogate pair`},
		{"high half before a non-surrogate", map[string]string{"CONNECTOR_ACCOUNTS": acct("a", `US\uD800\u0044`, "HUNTER2")}, "",
			`character 66 of 148 is half of a UTF-16 surrogate pair, without its other half: it stands for no character, and decoding it would replace it with U+FFFD, changing the value; write the character itself or both halves of its pair; near: …":{"relation":***,"plugin":***,"assetCode":***<<here>>***,"assetScale":***…`},
		{"two high halves", map[string]string{"CONNECTOR_ACCOUNTS": acct("a", `\ud800\ud800`, "HUNTER2")}, "",
			"CONNECTOR_ACCOUNTS: the \\u escape at character 64 of 146"},
		{"object variable", map[string]string{"CONNECTOR_BACKEND_CONFIG": `{"url":"http://u:HUNTER2\ud800@ecb/"}`}, "",
			`CONNECTOR_BACKEND_CONFIG: the \u escape at character 25 of 37`},
		{"array variable", map[string]string{"CONNECTOR_DISABLE_MIDDLEWARE": `["rateLimit\uDFFF"]`}, "",
			`CONNECTOR_DISABLE_MIDDLEWARE: the \u escape at character 12 of 19`},
		{"route", map[string]string{"CONNECTOR_ROUTES": `[{"targetPrefix":"test.b","peerId":"\udbff"}]`}, "",
			`CONNECTOR_ROUTES: the \u escape at character 37 of 45`},
		{"JSON file", nil, file(acct("a", "USD", `HUNTER2\ud800x`)),
			`config file x: accounts: the \u escape at line 3, column 147 is half of a UTF-16 surrogate pair`},
		{"JSON file, top-level string", nil, "{\"ilpAddress\": \"test.\\ud800\"}",
			`config file x: ilpAddress: the \u escape at character 22 of 29 is half`},
		{"YAML file (the YAML decoder refuses it)", nil, "ilpAddress: test.a\naccounts:\n  \"a\\ud800\": {}\n",
			`config file x: invalid YAML: yaml: line 3: found invalid Unicode character escape code`},
		{"JSON file, bytes that are not UTF-8", nil, file(acct("a", "US\xffD", "HUNTER2")),
			`config file x: accounts: not valid UTF-8 at line 3, column 80 (its invalid bytes would be replaced, changing the value); near: …`},
		{"a whole pair is a character", map[string]string{"CONNECTOR_ACCOUNTS": acct("a", `\ud83d\ude00`, "s")}, "", ""},
		{"an escaped backslash before u is text", map[string]string{"CONNECTOR_ACCOUNTS": acct("a", "USD", `\\ud800`)}, "", ""},
		{"JSON file, a pair", nil, file(acct("a", `\uD83D\uDE00`, "s")), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := load(tt.env, tt.file)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkMessage(t, err, "", []string{tt.want}, "HUNTER2")
			if n := strings.Count(err.Error(), "\n"); n > 0 {
				t.Errorf("want one error, got %d more:\n%v", n, err)
			}
		})
	}
}

func TestParseAccountRefusesLoneSurrogate(t *testing.T) {
	_, err := ParseAccount("a", []byte(`{"relation":"peer","plugin":"p","assetCode":"USD","assetScale":0,"options":{"token":"HUNTER2\ud800"}}`))
	if err == nil || !strings.Contains(err.Error(), `account "a": (account): the \u escape at character 93 of 101`) || strings.Contains(err.Error(), "HUNTER2") {
		t.Fatalf("got %v", err)
	}
}

// TestInvalidUTF8ShowsNoValue: a variable that is not UTF-8 is refused by its position, not
// quoted: it may be the routing secret or accounts with their plugins' secrets.
func TestInvalidUTF8ShowsNoValue(t *testing.T) {
	tests := []struct{ key, value, want string }{
		{"CONNECTOR_ROUTING_SECRET", "HUNTER2\xff", "CONNECTOR_ROUTING_SECRET: not valid UTF-8 at character 8 of 8 (its invalid bytes would be replaced, changing the value)"},
		{"CONNECTOR_ACCOUNTS", `{"a":{"options":{"secret":"HUNTER2` + "\xff" + `"}}}`, `CONNECTOR_ACCOUNTS: not valid UTF-8 at character 35 of 39 (its invalid bytes would be replaced, changing the value); near: {"a":{"options":{"secret":***<<here>>***}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			_, err := FromEnv(envOf(base(map[string]string{tt.key: tt.value})))
			checkMessage(t, err, "", []string{tt.want}, "HUNTER2")
		})
	}
}
