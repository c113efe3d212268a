package config

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Users type CONNECTOR_* variables and account JSON; these targets check that every value is
// either read exactly as written or refused with an error, never changed on the way and never
// a panic. The references below are independent of the code under test: math/big for
// numbers, exact-key maps for objects.

func FuzzParseJSNumber(f *testing.F) {
	for _, s := range []string{"", " 1000 ", "1e3", "-1.5e-3", ".5", "5.", "+7", "0x1F", "0o17", "0b101", "0x",
		"1e1000", "NaN", "Infinity", "-0", "1_000", "9223372036854775808", "0xffffffffffffffff", "0x10000000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseJSNumber(s)
		want, wantOK := refJSNumber(s)
		if ok != wantOK {
			t.Fatalf("parseJSNumber(%q) ok=%v, want %v", s, ok, wantOK)
		}
		if !ok {
			return
		}
		if d.Rat().Cmp(want) != 0 {
			t.Fatalf("parseJSNumber(%q) = %s, want %s", s, d, want.RatString())
		}
		// The environment source hands d.String() on as JSON; it must read back the same.
		back, ok := rawDecimal(json.RawMessage(d.String()))
		if !ok || !back.Equal(d) {
			t.Fatalf("%s does not read back: %s, %v", d, back, ok)
		}
	})
}

// refJSNumber is the number JavaScript's Number(s) gives for the grammar decimalRe states,
// in exact rational arithmetic.
func refJSNumber(s string) (*big.Rat, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return new(big.Rat), true
	}
	if len(s) > 2 && s[0] == '0' && strings.ContainsRune("xXoObB", rune(s[1])) {
		base := map[byte]int{'x': 16, 'o': 8, 'b': 2}[s[1]|0x20]
		v, err := strconv.ParseUint(s[2:], base, 64)
		return new(big.Rat).SetUint64(v), err == nil
	}
	if !decimalRe.MatchString(s) {
		return nil, false
	}
	return new(big.Rat).SetString(strings.TrimPrefix(s, "+"))
}

// envGetters read back the field each scalar setting writes.
var envGetters = map[string]func(*Config) any{
	"env": func(c *Config) any { return c.Env }, "ilpAddress": func(c *Config) any { return c.ILPAddress },
	"ilpAddressInheritFrom": func(c *Config) any { return c.ILPAddressInheritFrom },
	"defaultRoute":          func(c *Config) any { return c.DefaultRoute }, "backend": func(c *Config) any { return c.Backend },
	"store": func(c *Config) any { return c.Store }, "storePath": func(c *Config) any { return c.StorePath },
	"adminApiHost": func(c *Config) any { return c.AdminAPIHost }, "settlementApiHost": func(c *Config) any { return c.SettlementAPIHost },
	"routeBroadcastEnabled": func(c *Config) any { return c.RouteBroadcastEnabled }, "reflectPayments": func(c *Config) any { return c.ReflectPayments },
	"adminApi": func(c *Config) any { return c.AdminAPI }, "collectDefaultMetrics": func(c *Config) any { return c.CollectDefaultMetrics },
	"minMessageWindow": func(c *Config) any { return c.MinMessageWindow }, "maxHoldTime": func(c *Config) any { return c.MaxHoldTime },
	"routeBroadcastInterval": func(c *Config) any { return c.RouteBroadcastInterval },
	"routeCleanupInterval":   func(c *Config) any { return c.RouteCleanupInterval }, "routeExpiry": func(c *Config) any { return c.RouteExpiry },
	"initialConnectTimeout": func(c *Config) any { return c.InitialConnectTimeout },
	"adminApiPort":          func(c *Config) any { return c.AdminAPIPort }, "settlementApiPort": func(c *Config) any { return c.SettlementAPIPort },
}

func FuzzEnvSetting(f *testing.F) {
	for i, s := range settings {
		for _, v := range []string{"", "1", "true", "yes", "1e3", " 0x10 ", "-1", "1.5", "65536", "{}", "[]", "null", `"x"`,
			"test.a", "unknown", "\xff", "{\"a\":\"\xff\"}", `{"b":1,"a":[2]}`, `["ccp"]`, "c2VjcmV0", "9999999999999999999"} {
			f.Add(uint8(i), v)
		}
		_ = s
	}
	f.Fuzz(func(t *testing.T, idx uint8, v string) {
		s := settings[int(idx)%len(settings)]
		checkFromEnv(t, s.key, v)
		raw, _, problem := envToJSON(s.kind, v)
		if problem != "" {
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("%s=%q became invalid JSON %q", EnvName(s.key), v, raw)
		}
		c := Defaults()
		var errs fieldErrors
		s.apply(c, raw, &errs)
		if len(errs) > 0 {
			return
		}
		if !utf8.ValidString(v) {
			t.Fatalf("%s=%q (not UTF-8) was accepted: JSON would replace its invalid bytes", EnvName(s.key), v)
		}
		checkEnvValue(t, s, v, c)
	})
}

// checkFromEnv: the whole source either gives a config or an error, never both or neither.
func checkFromEnv(t *testing.T, key, v string) {
	t.Helper()
	env := map[string]string{"CONNECTOR_ILP_ADDRESS": "test.a", EnvName(key): v}
	c, err := FromEnv(envOf(env))
	if (c == nil) == (err == nil) {
		t.Fatalf("FromEnv with %s=%q: %v, %v", EnvName(key), v, c, err)
	}
}

// checkEnvValue checks that an accepted variable set exactly the value it spells.
func checkEnvValue(t *testing.T, s setting, v string, c *Config) {
	t.Helper()
	var want, got any
	switch {
	case s.kind == kString && envGetters[s.key] != nil:
		want, got = v, envGetters[s.key](c)
		if s.key == "ilpAddress" && v == "unknown" {
			want = ""
		}
	case s.kind == kBool:
		want, got = v == "1" || v == "true", envGetters[s.key](c)
	case s.kind == kInteger:
		n, _ := refJSNumber(v)
		if !n.IsInt() {
			t.Fatalf("%s=%q: a fraction was accepted", EnvName(s.key), v)
		}
		want, got = n.Num().String(), envInt(envGetters[s.key](c))
	case s.key == "spread":
		n, _ := refJSNumber(v)
		want, got = n.RatString(), c.Spread.Rat().RatString()
	case s.key == "backendConfig" || s.key == "storeConfig":
		raw := c.BackendConfig
		if s.key == "storeConfig" {
			raw = c.StoreConfig
		}
		want, got = decodeExact(t, []byte(v)), decodeExact(t, raw)
	case s.key == "disableMiddleware":
		var names []string
		_ = json.Unmarshal([]byte(v), &names)
		want, got = names, c.DisableMiddleware
	default:
		return
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("%s=%q set %#v, want %#v", EnvName(s.key), v, got, want)
	}
}

// envInt is an integer setting in its own unit: ports as they are, durations in milliseconds.
func envInt(v any) string {
	if d, ok := v.(time.Duration); ok {
		if d%time.Millisecond != 0 {
			return "not whole ms: " + d.String()
		}
		return strconv.FormatInt(int64(d/time.Millisecond), 10)
	}
	return strconv.Itoa(v.(int))
}

// decodeExact decodes JSON keeping numbers as written.
func decodeExact(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return v
}

func FuzzParseAccount(f *testing.F) {
	for _, s := range []string{
		`{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9}`,
		`{"relation":"child","plugin":"ilp-plugin-mini-accounts","assetCode":"XRP","assetScale":"6","maxPacketAmount":"1000",` +
			`"balance":{"minimum":"-Infinity","maximum":"1000000","settleThreshold":"-500","settleTo":"0"},"options":{"b":1.50,"a":"x"}}`,
		`{"relation":"parent","plugin":"p","assetCode":"EUR","assetScale":2,"maxPacketAmount":"99999999999999999999999",` +
			`"balance":{"minimum":"-99999999999999999999","maximum":"Infinity"},"throughput":{"incomingAmount":"5"},` +
			`"rateLimit":{"refillCount":3},"deduplicate":{"packetLifetime":10},"settlementEngine":{"url":"http://e:3000","settleEvery":1000}}`,
		`{"relation":"peer","plugin":"p","assetCode":"USD","assetScale":1e2}`,
		"{\"relation\":\"peer\",\"plugin\":\"p\",\"assetCode\":\"\xff\",\"assetScale\":0}",
		`{"relation":"peer","plugin":"p","assetCode":"USD","assetScale":0,"Relation":"child"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAccount("a", data)
		if err != nil {
			if len(FieldErrors(err)) == 0 {
				t.Fatalf("an error without FieldErrors: %v", err)
			}
			return
		}
		if !utf8.Valid(data) {
			t.Fatalf("%q (not UTF-8) was accepted: JSON replaces its invalid bytes", data)
		}
		checkAccount(t, data, a)
	})
}

// checkAccount compares the parsed account with what an exact-key reader finds in data.
func checkAccount(t *testing.T, data []byte, a Account) {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("accepted %q: %v", data, err)
	}
	for k, got := range map[string]string{"relation": string(a.Relation), "plugin": a.Plugin, "assetCode": a.AssetCode} {
		var want string
		if err := json.Unmarshal(obj[k], &want); err != nil || want != got {
			t.Fatalf("%s = %q, want %q (%v)", k, got, want, err)
		}
	}
	if n := refNumberField(t, obj["assetScale"]); n.Cmp(big.NewRat(int64(a.AssetScale), 1)) != 0 {
		t.Fatalf("assetScale = %d, want %s", a.AssetScale, n.RatString())
	}
	if raw, ok := obj["maxPacketAmount"]; ok {
		want := refNumberField(t, raw).Num()
		if want.Cmp(new(big.Int).SetUint64(math.MaxUint64)) > 0 {
			want.SetUint64(math.MaxUint64) // documented: no packet carries more
		}
		if a.MaxPacketAmount == nil || want.Cmp(new(big.Int).SetUint64(*a.MaxPacketAmount)) != 0 {
			t.Fatalf("maxPacketAmount = %v, want %s", a.MaxPacketAmount, want)
		}
	}
	if raw, ok := obj["options"]; ok && !reflect.DeepEqual(decodeExact(t, raw), decodeExact(t, a.Options)) {
		t.Fatalf("options %s became %s", raw, a.Options)
	}
	checkBalance(t, obj["balance"], a.Balance)
}

func checkBalance(t *testing.T, raw json.RawMessage, b *Balance) {
	t.Helper()
	if raw == nil {
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || b == nil {
		t.Fatalf("balance %s: %v, %v", raw, b, err)
	}
	for _, f := range []struct {
		k   string
		got *int64
	}{{"minimum", b.Minimum}, {"maximum", b.Maximum}, {"settleThreshold", b.SettleThreshold}, {"settleTo", &b.SettleTo}} {
		r, ok := obj[f.k]
		if !ok {
			continue
		}
		want, inf := refBound(t, r)
		switch {
		case inf != 0 && f.got == nil: // an infinite bound is no bound
		case inf != 0 || f.got == nil:
			if f.got == nil || (inf > 0) != (*f.got == math.MaxInt64) || (inf < 0) != (*f.got == math.MinInt64) {
				t.Fatalf("balance.%s %s = %v", f.k, r, f.got)
			}
		case !clampInt64(want).IsInt64() || clampInt64(want).Int64() != *f.got:
			t.Fatalf("balance.%s %s = %d, want %s (saturated)", f.k, r, *f.got, want)
		}
	}
}

// refNumberField reads a JSON number or a string holding one, as an exact rational.
func refNumberField(t *testing.T, raw json.RawMessage) *big.Rat {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(bytes.TrimSpace(raw))
	}
	n, ok := new(big.Rat).SetString(strings.TrimSpace(s))
	if !ok {
		t.Fatalf("accepted %s, which is not a number", raw)
	}
	return n
}

// refBound reads a balance bound: an integer, or ±Infinity (inf = ±1).
func refBound(t *testing.T, raw json.RawMessage) (*big.Int, int) {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(bytes.TrimSpace(raw))
	}
	switch s {
	case "Infinity":
		return nil, 1
	case "-Infinity":
		return nil, -1
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("accepted bound %s", raw)
	}
	return n, 0
}

func clampInt64(n *big.Int) *big.Int {
	lo, hi := big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)
	if n.Cmp(hi) > 0 {
		return hi
	}
	if n.Cmp(lo) < 0 {
		return lo
	}
	return n
}

// FuzzExcerpt: an excerpt has one marker, and it shows nothing of text but JSON whitespace,
// punctuation and object keys. Text without ':' has no keys, so that nothing else of it may
// appear: a test for the structure-only rule that needs no JSON grammar.
func FuzzExcerpt(f *testing.F) {
	for _, s := range []string{`{"a":1,}`, `{"secret":'x'}`, "{\r\n \"a\": \"b\"\r\n}", `["x\"y",z]`, `"unterminated`, "a\nb\tc", "…é\xff"} {
		f.Add(s, uint16(3))
	}
	f.Fuzz(func(t *testing.T, text string, at uint16) {
		pos := int(at) % (len(text) + 1)
		got := excerpt(text, pos)
		if n := strings.Count(got, jsonMarker); n != 1 {
			t.Fatalf("excerpt(%q, %d) = %q: %d markers", text, pos, got, n)
		}
		if strings.Contains(text, ":") {
			return
		}
		rest := strings.NewReplacer(jsonMarker, "", valueMask, "", "…", "", `\t`, "", `\r`, "", " ", "").Replace(got)
		if strings.Trim(rest, "{}[],") != "" {
			t.Fatalf("excerpt(%q, %d) = %q shows %q", text, pos, got, rest)
		}
	})
}
