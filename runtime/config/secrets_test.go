package config

import (
	"strings"
	"testing"
)

// TestExcerptShowsNoSecret: the excerpt of a JSON syntax error shows no secret, however it is
// written: the excerpt shows the structure only (jsonShape), as no pattern finds secrets in
// text that is not valid JSON.
func TestExcerptShowsNoSecret(t *testing.T) {
	accts := func(opts string) string {
		return `{"a":{"relation":"child","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,"options":` + opts + `}}`
	}
	for name, v := range map[string]string{
		"single-quoted secret (JS habit)":  accts(`{"listener":{"port":7768,"secret":'HUNTER2'}}`),
		"unquoted secret":                  accts(`{"listener":{"port":7768,"secret":HUNTER2}}`),
		"URL password holding @":           accts(`{"server":"btp+ws://:p@HUNTER2@up:7768",}`),
		"URL with escaped slashes":         accts(`{"server":"btp+ws:\/\/:HUNTER2@up:7768",}`),
		"URL password with escaped quote":  accts(`{"server":"btp+ws://:HUNTER2\"x@up:7768",}`),
		"secret key with a unicode escape": accts(`{"listener":{"port":7768,"s\u0065cret":"HUNTER2",}}`),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := FromEnv(envOf(base(map[string]string{"CONNECTOR_ACCOUNTS": v})))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "HUNTER2") {
				t.Errorf("secret in the message: %v", err)
			}
		})
	}
}

// TestNonObjectSettingShowsNoSecret: a settlementEngine written as a URL string (not the
// {"url": …} object) is named by its kind, not quoted with its password; Validate redacts the
// same URL (settlement.RedactURL) when it is given as an object.
func TestNonObjectSettingShowsNoSecret(t *testing.T) {
	v := `{"a":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,` +
		`"settlementEngine":"http://u:HUNTER2@eng:3000","options":{"server":"btp+ws://:x@h:1"}}}`
	_, err := FromEnv(envOf(base(map[string]string{"CONNECTOR_ACCOUNTS": v})))
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "HUNTER2") {
		t.Errorf("secret in the message: %v", err)
	}
}

// TestWrongKindShowsNoSecret: an object or array given where a string, number or boolean
// belongs used to be quoted whole as JSON ({"token": "…"} where a string belongs). It is named
// by its kind and shape now, with no value.
func TestWrongKindShowsNoSecret(t *testing.T) {
	const obj = `{"token":"HUNTER2","n":[1,{"pw":"HUNTER2"}]}`
	const shape = `{"token":***,"n":[***,{"pw":***}]}`
	account := func(field string) string {
		a := map[string]string{"relation": `"peer"`, "plugin": `"ilp-plugin-btp"`, "assetCode": `"USD"`, "assetScale": "9",
			"options": `{"server":"btp+ws://:s@h:1"}`}
		outer, inner, nested := strings.Cut(field, ".")
		if nested {
			a[outer] = `{"` + inner + `":` + obj + `}`
		} else {
			a[outer] = obj
		}
		var parts []string
		for k, v := range a {
			parts = append(parts, `"`+k+`":`+v)
		}
		return `{"a":{` + strings.Join(parts, ",") + `}}`
	}
	tests := []struct {
		env  map[string]string // FromEnv, or
		file string            // FromData when set
		want string
	}{
		{map[string]string{"CONNECTOR_ACCOUNTS": account("assetCode")}, "", `CONNECTOR_ACCOUNTS: account "a": assetCode: expected a string; got an object ` + shape},
		{map[string]string{"CONNECTOR_ACCOUNTS": account("assetScale")}, "", `account "a": assetScale: expected an integer from 0 to 255; got an object ` + shape},
		{map[string]string{"CONNECTOR_ACCOUNTS": account("sendRoutes")}, "", `account "a": sendRoutes: expected true or false; got an object ` + shape},
		{map[string]string{"CONNECTOR_ACCOUNTS": account("maxPacketAmount")}, "", `account "a": maxPacketAmount: expected a positive integer string such as "1000000"; got an object ` + shape},
		{map[string]string{"CONNECTOR_ACCOUNTS": account("balance.maximum")}, "", `account "a": balance.maximum: expected an integer string (e.g. "1000000" or "-500"), "-Infinity" or "Infinity"; got an object ` + shape},
		{map[string]string{"CONNECTOR_ACCOUNTS": account("throughput.incomingAmount")}, "", `account "a": throughput.incomingAmount: expected a positive integer string such as "1000000"; got an object ` + shape},
		{map[string]string{"CONNECTOR_ACCOUNTS": account("rateLimit.capacity")}, "", `account "a": rateLimit.capacity: expected an integer from 0 to 9223372036854775807; got an object ` + shape},
		{map[string]string{"CONNECTOR_ACCOUNTS": account("deduplicate.packetLifetime")}, "", `account "a": deduplicate.packetLifetime: expected a whole number of milliseconds, at least 1; got an object ` + shape},
		{map[string]string{"CONNECTOR_ACCOUNTS": account("settlementEngine.url")}, "", `account "a": settlementEngine.url: expected a string; got an object ` + shape},
		{map[string]string{"CONNECTOR_ROUTES": `[{"targetPrefix":"test.b","peerId":["HUNTER2"]}]`}, "", `CONNECTOR_ROUTES: [0].peerId: expected a string; got an array [***]`},
		{nil, `{"ilpAddress":` + obj + `}`, `config file x: ilpAddress: expected a string; got an object ` + shape},
		{nil, `{"adminApiHost":` + obj + `}`, `config file x: adminApiHost: expected a string; got an object ` + shape},
		{nil, `{"spread":` + obj + `}`, `config file x: spread: expected a number such as 0.002 (a fraction: 0.002 is 0.2 %); got an object ` + shape},
		{nil, `{"adminApiPort":` + obj + `}`, `config file x: adminApiPort: expected a TCP port from 0 to 65535; got an object ` + shape},
		{nil, `{"routeExpiry":` + obj + `}`, `config file x: routeExpiry: expected a whole number of milliseconds, at least 1; got an object ` + shape},
		{nil, `{"adminApi":` + obj + `}`, `config file x: adminApi: expected true or false; got an object ` + shape},
		{nil, "storePath:\n  - HUNTER2\n  - {password: HUNTER2}\n", `config file x: storePath: expected a string; got an array [***,{"password":***}]`},
		{nil, `{"env":{"k":"` + strings.Repeat("HUNTER2,", 40) + `","` + strings.Repeat("k", 50) + `":1}}`, `config file x: env: expected a string; got an object {"k":***,"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk…`},
		// A string, number or boolean is still shown as written.
		{nil, `{"spread":"abc"}`, `config file x: spread = "abc": expected a number`},
		{nil, `{"adminApiPort":true}`, `config file x: adminApiPort = true: expected a TCP port`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			checkMessage(t, load(tt.env, tt.file), "", []string{tt.want}, "HUNTER2")
		})
	}
}

// TestQuotedURLShowsNoCredentials: a URL with credentials pasted into a setting whose value an
// error quotes (store, backend) is shown without them.
func TestQuotedURLShowsNoCredentials(t *testing.T) {
	tests := []struct{ key, value, want string }{
		{"CONNECTOR_STORE", "redis://:HUNTER2@redis:6379/0", `CONNECTOR_STORE = "redis://xxxxx@redis:6379/0": not supported`},
		{"CONNECTOR_STORE", "redis://HUNTER2@redis:6379", `CONNECTOR_STORE = "redis://xxxxx@redis:6379": not supported`},
		{"CONNECTOR_BACKEND", "https://u:HUNTER2@mirror/eurofxref.xml?key=HUNTER2", `CONNECTOR_BACKEND = "https://xxxxx@mirror/eurofxref.xml?xxxxx": not supported`},
		{"CONNECTOR_BACKEND", "https://mirror/x.xml?token=HUNTER2", `CONNECTOR_BACKEND = "https://mirror/x.xml?xxxxx": not supported`},
		{"CONNECTOR_BACKEND", "https://u:HUNTER2%zz@mirror/", `CONNECTOR_BACKEND = "(a URL that does not parse, not shown)": not supported`},
		{"CONNECTOR_STORE", "leveldb", `CONNECTOR_STORE = "leveldb": not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			_, err := FromEnv(envOf(base(map[string]string{tt.key: tt.value})))
			checkMessage(t, err, "", []string{tt.want}, "HUNTER2")
		})
	}
}

// TestWrongTypeURLShowsNoSecret: a URL with credentials given where a number belongs is shown
// with its credentials hidden, as every quoted value is.
func TestWrongTypeURLShowsNoSecret(t *testing.T) {
	v := `{"a":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":"redis://u:HUNTER2@r:6379",` +
		`"options":{"server":"btp+ws://:x@h:1"}}}`
	_, err := FromEnv(envOf(base(map[string]string{"CONNECTOR_ACCOUNTS": v})))
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "HUNTER2") || !strings.Contains(err.Error(), "assetScale") {
		t.Errorf("want the field named and the password hidden: %v", err)
	}
}
