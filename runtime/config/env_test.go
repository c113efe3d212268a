package config

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// envOf turns a map into a lookup function.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// base is a valid minimal environment that each case extends.
func base(extra map[string]string) map[string]string {
	m := map[string]string{"CONNECTOR_ILP_ADDRESS": "test.quickstart", "CONNECTOR_ACCOUNTS": "{}"}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestDefaultsAreTheJSDefaults(t *testing.T) {
	d := Defaults()
	checks := []struct {
		name      string
		got, want any
	}{
		{"env", d.Env, "test"},
		{"ilpAddress (JS \"unknown\")", d.ILPAddress, ""},
		{"ilpAddressInheritFrom", d.ILPAddressInheritFrom, ""},
		{"accounts", len(d.Accounts), 0},
		{"defaultRoute", d.DefaultRoute, "auto"},
		{"routes", len(d.Routes), 0},
		{"spread", d.Spread.String(), "0.002"},
		{"minMessageWindow", d.MinMessageWindow, 1000 * time.Millisecond},
		{"maxHoldTime", d.MaxHoldTime, 30000 * time.Millisecond},
		{"routeBroadcastEnabled", d.RouteBroadcastEnabled, true},
		{"routeBroadcastInterval", d.RouteBroadcastInterval, 30000 * time.Millisecond},
		{"routeCleanupInterval", d.RouteCleanupInterval, 1000 * time.Millisecond},
		{"routeExpiry", d.RouteExpiry, 45000 * time.Millisecond},
		{"routingSecret", len(d.RoutingSecret), 0},
		{"backend (JS ecb, documented)", d.Backend, "one-to-one"},
		{"backendConfig", string(d.BackendConfig), "{}"},
		{"store (JS leveldown, documented)", d.Store, "memory"},
		{"storePath", d.StorePath, ""},
		{"storeConfig", string(d.StoreConfig), "{}"},
		{"disableMiddleware", len(d.DisableMiddleware), 0},
		{"reflectPayments", d.ReflectPayments, true},
		{"initialConnectTimeout", d.InitialConnectTimeout, 10000 * time.Millisecond},
		{"adminApi", d.AdminAPI, false},
		{"adminApiPort", d.AdminAPIPort, 7780},
		{"adminApiHost", d.AdminAPIHost, "127.0.0.1"},
		{"collectDefaultMetrics", d.CollectDefaultMetrics, false},
		{"settlementApiHost (ilpfleet)", d.SettlementAPIHost, "127.0.0.1"},
		{"settlementApiPort (ilpfleet; interledger-rs's)", d.SettlementAPIPort, 7771},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	// Every setting has a check above (middlewares has no model field).
	if len(checks) != len(settings)-1 {
		t.Errorf("%d default checks for %d settings", len(checks), len(settings)-1)
	}
	// An empty environment (with the required address) gives exactly the defaults.
	c, err := FromEnv(envOf(map[string]string{"CONNECTOR_ILP_ADDRESS": "test.a"}))
	if err != nil {
		t.Fatal(err)
	}
	c.ILPAddress = ""
	if !reflect.DeepEqual(c, Defaults()) {
		t.Errorf("FromEnv with no variables:\n got %+v\nwant %+v", c, Defaults())
	}
}

func TestEnvNamesAreTheJSNames(t *testing.T) {
	want := []string{
		"CONNECTOR_ENV", "CONNECTOR_ILP_ADDRESS", "CONNECTOR_ILP_ADDRESS_INHERIT_FROM", "CONNECTOR_ACCOUNTS",
		"CONNECTOR_DEFAULT_ROUTE", "CONNECTOR_ROUTES", "CONNECTOR_SPREAD", "CONNECTOR_MIN_MESSAGE_WINDOW",
		"CONNECTOR_MAX_HOLD_TIME", "CONNECTOR_ROUTE_BROADCAST_ENABLED", "CONNECTOR_ROUTE_BROADCAST_INTERVAL",
		"CONNECTOR_ROUTE_CLEANUP_INTERVAL", "CONNECTOR_ROUTE_EXPIRY", "CONNECTOR_ROUTING_SECRET", "CONNECTOR_BACKEND",
		"CONNECTOR_BACKEND_CONFIG", "CONNECTOR_STORE", "CONNECTOR_STORE_PATH", "CONNECTOR_STORE_CONFIG",
		"CONNECTOR_MIDDLEWARES", "CONNECTOR_DISABLE_MIDDLEWARE", "CONNECTOR_REFLECT_PAYMENTS",
		"CONNECTOR_INITIAL_CONNECT_TIMEOUT", "CONNECTOR_ADMIN_API", "CONNECTOR_ADMIN_API_PORT",
		"CONNECTOR_ADMIN_API_HOST", "CONNECTOR_COLLECT_DEFAULT_METRICS",
		// ilpfleet's own, after the JS ones:
		"CONNECTOR_SETTLEMENT_API_HOST", "CONNECTOR_SETTLEMENT_API_PORT",
	}
	var got []string
	for _, s := range settings {
		got = append(got, EnvName(s.key))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

const btpChild = `{"relation":"child","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9}`

func TestFromEnvVariables(t *testing.T) {
	u64 := func(v uint64) *uint64 { return &v }
	i64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name    string
		env     map[string]string
		check   func(*Config) any // returns the value to compare with want
		want    any
		wantErr []string // substrings of the error; nil means no error
	}{
		// CONNECTOR_ENV
		{"env production", map[string]string{"CONNECTOR_ENV": "production", "CONNECTOR_ILP_ADDRESS": "g.acme"}, func(c *Config) any { return c.Env }, "production", nil},
		{"env bad", base(map[string]string{"CONNECTOR_ENV": "prod"}), nil, nil, []string{`CONNECTOR_ENV = "prod": expected "test" or "production"`}},
		{"env test with g address", map[string]string{"CONNECTOR_ILP_ADDRESS": "g.acme"}, nil, nil, []string{`CONNECTOR_ILP_ADDRESS = "g.acme": a g. (live network) address is not allowed on the test network`, "RFC 34"}},
		{"env production with test address", map[string]string{"CONNECTOR_ENV": "production", "CONNECTOR_ILP_ADDRESS": "test.a"}, nil, nil, []string{`CONNECTOR_ILP_ADDRESS = "test.a"`, "not allowed on the production network"}},
		// CONNECTOR_ILP_ADDRESS
		{"address", base(nil), func(c *Config) any { return c.ILPAddress }, "test.quickstart", nil},
		{"address unknown means inherit", map[string]string{"CONNECTOR_ILP_ADDRESS": "unknown", "CONNECTOR_ACCOUNTS": `{"up":` + strings.Replace(btpChild, "child", "parent", 1) + `}`}, func(c *Config) any { return c.ILPAddress + "|" + c.InheritFrom() }, "|up", nil},
		{"address bad chars", base(map[string]string{"CONNECTOR_ILP_ADDRESS": "test.a b"}), nil, nil, []string{`CONNECTOR_ILP_ADDRESS = "test.a b": invalid character ' '`}},
		{"address bad scheme", base(map[string]string{"CONNECTOR_ILP_ADDRESS": "acme.a"}), nil, nil, []string{"unknown scheme"}},
		{"address missing without parent", map[string]string{}, nil, nil, []string{`CONNECTOR_ILP_ADDRESS: required when no account has relation "parent"`}},
		// CONNECTOR_ILP_ADDRESS_INHERIT_FROM
		{"inherit from parent", map[string]string{"CONNECTOR_ILP_ADDRESS_INHERIT_FROM": "b", "CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, "child", "parent", 1) + `,"b":` + strings.Replace(btpChild, "child", "parent", 1) + `}`}, func(c *Config) any { return c.InheritFrom() }, "b", nil},
		{"inherit from child", map[string]string{"CONNECTOR_ILP_ADDRESS_INHERIT_FROM": "kid", "CONNECTOR_ACCOUNTS": `{"kid":` + btpChild + `}`}, nil, nil, []string{`CONNECTOR_ILP_ADDRESS_INHERIT_FROM = "kid": account has relation "child"`}},
		{"inherit from missing", base(map[string]string{"CONNECTOR_ILP_ADDRESS_INHERIT_FROM": "nope"}), nil, nil, []string{`CONNECTOR_ILP_ADDRESS_INHERIT_FROM = "nope": no such account`}},
		{"first parent in JSON order", map[string]string{"CONNECTOR_ACCOUNTS": `{"z":` + strings.Replace(btpChild, "child", "parent", 1) + `,"a":` + strings.Replace(btpChild, "child", "parent", 1) + `}`}, func(c *Config) any { return c.InheritFrom() + c.DefaultRouteAccount() }, "zz", nil},
		// CONNECTOR_ACCOUNTS
		{"accounts", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"alice":` + btpChild + `}`}), func(c *Config) any { return c.Accounts["alice"].AssetCode }, "USD", nil},
		{"accounts not JSON", base(map[string]string{"CONNECTOR_ACCOUNTS": `{alice}`}), nil, nil, []string{"CONNECTOR_ACCOUNTS: expected JSON; syntax error at character 2 of 7: invalid character 'a' looking for beginning of object key string; near: {<<here>>***}"}},
		{"accounts array", base(map[string]string{"CONNECTOR_ACCOUNTS": `[]`}), nil, nil, []string{`CONNECTOR_ACCOUNTS: expected a JSON object of accounts by id, e.g. {"up":{"relation":"parent",...}}; got an array`}},
		{"account missing fields", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":{"relation":"peer"}}`}), nil, nil, []string{`CONNECTOR_ACCOUNTS: account "a": plugin: required`, `account "a": assetCode: required`, `account "a": assetScale: required`}},
		{"account relation bad", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `"child"`, `"friend"`, 1) + `}`}), nil, nil, []string{`account "a": relation = "friend": expected "parent", "peer" or "child"`}},
		{"account plugin unsupported", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, "ilp-plugin-btp", "ilp-plugin-xrp-paychan", 1) + `}`}), nil, nil, []string{`account "a": plugin = "ilp-plugin-xrp-paychan": not supported by the Go connector; supported plugins: ilp-plugin-btp, ilp-plugin-mini-accounts`}},
		{"account assetScale 256", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `9}`, `256}`, 1) + `}`}), nil, nil, []string{`account "a": assetScale = 256: expected an integer from 0 to 255`}},
		{"account assetScale fraction", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `9}`, `2.5}`, 1) + `}`}), nil, nil, []string{`assetScale = 2.5: expected an integer`}},
		{"account unknown key", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"maxPacketAmmount":"5"}`, 1) + `}`}), nil, nil, []string{`account "a": maxPacketAmmount: unknown account setting (did you mean "maxPacketAmount"?)`}},
		{"account balance", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"balance":{"minimum":"-Infinity","maximum":"1000","settleThreshold":"-500","settleTo":"-100"}}`, 1) + `}`}), func(c *Config) any { return *c.Accounts["a"].Balance }, Balance{Maximum: i64(1000), SettleThreshold: i64(-500), SettleTo: -100}, nil},
		{"account balance infinity max and huge min", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"balance":{"minimum":"-99999999999999999999","maximum":"Infinity"}}`, 1) + `}`}), func(c *Config) any { return *c.Accounts["a"].Balance }, Balance{Minimum: i64(math.MinInt64)}, nil},
		{"account balance bad", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"balance":{"maximum":"1e3","settleTo":"Infinity"}}`, 1) + `}`}), nil, nil, []string{`account "a": balance.maximum = "1e3": expected an integer string`, `balance.settleTo = "Infinity": expected an integer string`}},
		{"account balance no maximum", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"balance":{"minimum":"0"}}`, 1) + `}`}), nil, nil, []string{`balance.maximum: required when balance is set`}},
		{"account maxPacketAmount", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"maxPacketAmount":"18446744073709551615"}`, 1) + `}`}), func(c *Config) any { return *c.Accounts["a"].MaxPacketAmount }, uint64(math.MaxUint64), nil},
		{"account maxPacketAmount zero", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"maxPacketAmount":"0"}`, 1) + `}`}), nil, nil, []string{`maxPacketAmount = "0": expected a positive integer string`}},
		{"account throughput", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"throughput":{"incomingAmount":"100"}}`, 1) + `}`}), func(c *Config) any { return *c.Accounts["a"].Throughput }, Throughput{RefillPeriod: time.Second, IncomingAmount: u64(100)}, nil},
		{"account throughput bad", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"throughput":{"refillPeriod":50,"outgoingAmount":"-1"}}`, 1) + `}`}), nil, nil, []string{`throughput.refillPeriod = 50: expected a whole number of milliseconds, at least 100`, `throughput.outgoingAmount = "-1"`}},
		{"account rateLimit JS defaults", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"rateLimit":{"refillCount":5}}`, 1) + `}`}), func(c *Config) any { return *c.Accounts["a"].RateLimit }, RateLimit{RefillPeriod: time.Minute, RefillCount: 5, Capacity: 5}, nil},
		{"account rateLimit bad", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"rateLimit":{"refillCount":0}}`, 1) + `}`}), nil, nil, []string{`rateLimit.refillCount = 0: expected an integer from 1`}},
		{"account deduplicate", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"deduplicate":{"packetLifetime":5000}}`, 1) + `}`}), func(c *Config) any { return *c.Accounts["a"].Deduplicate }, Deduplicate{CleanupInterval: 30 * time.Second, PacketLifetime: 5 * time.Second}, nil},
		{"account routes flags", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"sendRoutes":true}`, 1) + `}`}), func(c *Config) any { a := c.Accounts["a"]; return [2]bool{a.SendsRoutes(), a.ReceivesRoutes()} }, [2]bool{true, false}, nil},
		{"account routes flag bad", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"receiveRoutes":"yes"}`, 1) + `}`}), nil, nil, []string{`receiveRoutes = "yes": expected true or false`}},
		{"account options", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"options":{"b":1, "a":"x"}}`, 1) + `}`}), func(c *Config) any { return string(c.Accounts["a"].Options) }, `{"a":"x","b":1}`, nil},
		{"account options not object", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"options":"ws://x"}`, 1) + `}`}), nil, nil, []string{`CONNECTOR_ACCOUNTS: account "a": options: expected a JSON object (the plugin's options); got a string`}},
		{"account segment", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"ilpAddressSegment":"bob"}`, 1) + `}`}), func(c *Config) any { return c.Accounts["a"].ILPAddressSegment }, "bob", nil},
		{"account segment bad", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"ilpAddressSegment":"b b"}`, 1) + `}`}), nil, nil, []string{`ilpAddressSegment = "b b": expected an address segment`}},
		{"account settlementEngine", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"settlementEngine":{"url":"http://xrp-engine:3000"}}`, 1) + `}`}), func(c *Config) any { return *c.Accounts["a"].SettlementEngine }, SettlementEngine{URL: "http://xrp-engine:3000"}, nil},
		{"account settlementEngine settleEvery", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"settlementEngine":{"url":"http://e:3000","settleEvery":60000}}`, 1) + `}`}), func(c *Config) any { return *c.Accounts["a"].SettlementEngine }, SettlementEngine{URL: "http://e:3000", SettleEvery: time.Minute}, nil},
		{"account settlementEngine settleEvery too short", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"settlementEngine":{"url":"http://e:3000","settleEvery":10}}`, 1) + `}`}), nil, nil, []string{`settlementEngine.settleEvery = 10: expected a whole number of milliseconds, at least 1000`}},
		{"account settlementEngine no url", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"settlementEngine":{}}`, 1) + `}`}), nil, nil, []string{`account "a": settlementEngine.url: required`}},
		{"account settlementEngine bad url", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"settlementEngine":{"url":"ftp://x"}}`, 1) + `}`}), nil, nil, []string{`account "a": settlementEngine.url = "ftp://x": want http:// or https://`}},
		{"account settlementEngine bad url with a password", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"settlementEngine":{"url":"ftp://u:pw@x"}}`, 1) + `}`}), nil, nil, []string{`account "a": settlementEngine.url = "ftp://xxxxx@x": want http:// or https://`}},
		{"account settlementEngine typo", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, `}`, `,"settlementEngine":{"uri":"http://x"}}`, 1) + `}`}), nil, nil, []string{`settlementEngine.uri: unknown setting (did you mean "url"?)`}},
		// CONNECTOR_SETTLEMENT_API_*
		{"settlement api", base(map[string]string{"CONNECTOR_SETTLEMENT_API_HOST": "0.0.0.0", "CONNECTOR_SETTLEMENT_API_PORT": "8771"}), func(c *Config) any { return c.SettlementAPIHost + ":" + strconv.Itoa(c.SettlementAPIPort) }, "0.0.0.0:8771", nil},
		{"settlement api port bad", base(map[string]string{"CONNECTOR_SETTLEMENT_API_PORT": "70000"}), nil, nil, []string{`CONNECTOR_SETTLEMENT_API_PORT = "70000": expected a TCP port from 0 to 65535`}},
		// CONNECTOR_DEFAULT_ROUTE
		{"default route none", base(map[string]string{"CONNECTOR_DEFAULT_ROUTE": ""}), func(c *Config) any { return c.DefaultRoute }, "", nil},
		{"default route account", base(map[string]string{"CONNECTOR_DEFAULT_ROUTE": "a", "CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `}`}), func(c *Config) any { return c.DefaultRouteAccount() }, "a", nil},
		{"default route missing", base(map[string]string{"CONNECTOR_DEFAULT_ROUTE": "up"}), nil, nil, []string{`CONNECTOR_DEFAULT_ROUTE = "up": expected "auto", "" (no default route) or an account id`}},
		// CONNECTOR_ROUTES
		{"routes", base(map[string]string{"CONNECTOR_ROUTES": `[{"targetPrefix":"test.other","peerId":"a"}]`, "CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `}`}), func(c *Config) any { return c.Routes }, []Route{{"test.other", "a"}}, nil},
		{"routes bare scheme", base(map[string]string{"CONNECTOR_ROUTES": `[{"targetPrefix":"test","peerId":"a"}]`, "CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `}`}), func(c *Config) any { return c.Routes[0].TargetPrefix }, "test", nil},
		{"routes bad", base(map[string]string{"CONNECTOR_ROUTES": `[{"targetPrefix":"test.","peerId":"zz"},{"peerId":"a"},{"targetPrefix":"test.x","peerId":"a","x":1}]`, "CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `}`}), nil, nil, []string{`CONNECTOR_ROUTES: [1].targetPrefix: required`, `[2].x: unknown setting`}},
		{"routes semantic", base(map[string]string{"CONNECTOR_ROUTES": `[{"targetPrefix":"test.","peerId":"zz"}]`, "CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `}`}), nil, nil, []string{`CONNECTOR_ROUTES: [0].targetPrefix = "test.": expected an ILP address prefix`, `CONNECTOR_ROUTES: [0].peerId = "zz": no such account (accounts: a)`}},
		{"routes not array", base(map[string]string{"CONNECTOR_ROUTES": `{}`}), nil, nil, []string{`CONNECTOR_ROUTES: expected a JSON array of {"targetPrefix": "g.example", "peerId": "account id"}; got an object`}},
		{"routes null", base(map[string]string{"CONNECTOR_ROUTES": `null`}), nil, nil, []string{`CONNECTOR_ROUTES: expected a JSON array of {"targetPrefix": "g.example", "peerId": "account id"}; got null`}},
		{"routes null after a space", base(map[string]string{"CONNECTOR_ROUTES": ` null`}), nil, nil, []string{`CONNECTOR_ROUTES: expected a JSON array of {"targetPrefix": "g.example", "peerId": "account id"}; got null`}},
		// CONNECTOR_SPREAD
		{"spread", base(map[string]string{"CONNECTOR_SPREAD": "0.005"}), func(c *Config) any { return c.Spread.String() }, "0.005", nil},
		{"spread zero", base(map[string]string{"CONNECTOR_SPREAD": "0"}), func(c *Config) any { return c.Spread.IsZero() }, true, nil},
		{"spread exponent", base(map[string]string{"CONNECTOR_SPREAD": "5e-3"}), func(c *Config) any { return c.Spread.Equal(decimal.RequireFromString("0.005")) }, true, nil},
		{"spread empty is 0 as in JS", base(map[string]string{"CONNECTOR_SPREAD": ""}), func(c *Config) any { return c.Spread.IsZero() }, true, nil},
		{"spread bad", base(map[string]string{"CONNECTOR_SPREAD": "0,5"}), nil, nil, []string{`CONNECTOR_SPREAD = "0,5": expected a number`}},
		{"spread negative", base(map[string]string{"CONNECTOR_SPREAD": "-0.1"}), nil, nil, []string{`CONNECTOR_SPREAD = -0.1: expected a fraction from 0`}},
		// durations in ms
		{"min message window", base(map[string]string{"CONNECTOR_MIN_MESSAGE_WINDOW": "1500"}), func(c *Config) any { return c.MinMessageWindow }, 1500 * time.Millisecond, nil},
		{"min message window bad", base(map[string]string{"CONNECTOR_MIN_MESSAGE_WINDOW": "1.5s"}), nil, nil, []string{`CONNECTOR_MIN_MESSAGE_WINDOW = "1.5s": expected a number`}},
		{"max hold time JSON exponent", base(map[string]string{"CONNECTOR_MAX_HOLD_TIME": "2e4"}), func(c *Config) any { return c.MaxHoldTime }, 20 * time.Second, nil},
		{"max hold time hex like Number()", base(map[string]string{"CONNECTOR_MAX_HOLD_TIME": " 0x10 "}), func(c *Config) any { return c.MaxHoldTime }, 16 * time.Millisecond, nil},
		{"max hold time fraction", base(map[string]string{"CONNECTOR_MAX_HOLD_TIME": "100.5"}), nil, nil, []string{`CONNECTOR_MAX_HOLD_TIME = "100.5": expected a whole number of milliseconds`}},
		{"max hold time zero", base(map[string]string{"CONNECTOR_MAX_HOLD_TIME": "0"}), nil, nil, []string{`CONNECTOR_MAX_HOLD_TIME = "0": expected a whole number of milliseconds, at least 1`}},
		{"route broadcast interval", base(map[string]string{"CONNECTOR_ROUTE_BROADCAST_INTERVAL": "60000"}), func(c *Config) any { return c.RouteBroadcastInterval }, time.Minute, nil},
		{"route broadcast interval negative", base(map[string]string{"CONNECTOR_ROUTE_BROADCAST_INTERVAL": "-1"}), nil, nil, []string{`CONNECTOR_ROUTE_BROADCAST_INTERVAL = "-1": expected a whole number of milliseconds, at least 1`}},
		{"route cleanup interval", base(map[string]string{"CONNECTOR_ROUTE_CLEANUP_INTERVAL": "500"}), func(c *Config) any { return c.RouteCleanupInterval }, 500 * time.Millisecond, nil},
		{"route cleanup interval bad", base(map[string]string{"CONNECTOR_ROUTE_CLEANUP_INTERVAL": "soon"}), nil, nil, []string{`CONNECTOR_ROUTE_CLEANUP_INTERVAL = "soon"`}},
		{"route expiry", base(map[string]string{"CONNECTOR_ROUTE_EXPIRY": "90000"}), func(c *Config) any { return c.RouteExpiry }, 90 * time.Second, nil},
		{"route expiry zero", base(map[string]string{"CONNECTOR_ROUTE_EXPIRY": "0"}), nil, nil, []string{`CONNECTOR_ROUTE_EXPIRY = "0": expected a whole number of milliseconds, at least 1`}},
		{"initial connect timeout", base(map[string]string{"CONNECTOR_INITIAL_CONNECT_TIMEOUT": "0"}), func(c *Config) any { return c.InitialConnectTimeout }, time.Duration(0), nil},
		{"initial connect timeout bad", base(map[string]string{"CONNECTOR_INITIAL_CONNECT_TIMEOUT": "NaN"}), nil, nil, []string{`CONNECTOR_INITIAL_CONNECT_TIMEOUT = "NaN": expected a number`}},
		// booleans
		{"broadcast disabled 0", base(map[string]string{"CONNECTOR_ROUTE_BROADCAST_ENABLED": "0"}), func(c *Config) any { return c.RouteBroadcastEnabled }, false, nil},
		{"broadcast disabled empty", base(map[string]string{"CONNECTOR_ROUTE_BROADCAST_ENABLED": ""}), func(c *Config) any { return c.RouteBroadcastEnabled }, false, nil},
		{"broadcast bad", base(map[string]string{"CONNECTOR_ROUTE_BROADCAST_ENABLED": "TRUE"}), nil, nil, []string{`CONNECTOR_ROUTE_BROADCAST_ENABLED = "TRUE": expected "true", "false", "1", "0" or ""`}},
		{"reflect payments false", base(map[string]string{"CONNECTOR_REFLECT_PAYMENTS": "false"}), func(c *Config) any { return c.ReflectPayments }, false, nil},
		{"reflect payments bad", base(map[string]string{"CONNECTOR_REFLECT_PAYMENTS": "no"}), nil, nil, []string{`CONNECTOR_REFLECT_PAYMENTS = "no"`}},
		{"admin api 1", base(map[string]string{"CONNECTOR_ADMIN_API": "1"}), func(c *Config) any { return c.AdminAPI }, true, nil},
		{"admin api bad", base(map[string]string{"CONNECTOR_ADMIN_API": "on"}), nil, nil, []string{`CONNECTOR_ADMIN_API = "on"`}},
		{"collect metrics true", base(map[string]string{"CONNECTOR_COLLECT_DEFAULT_METRICS": "true"}), func(c *Config) any { return c.CollectDefaultMetrics }, true, nil},
		{"collect metrics bad", base(map[string]string{"CONNECTOR_COLLECT_DEFAULT_METRICS": "y"}), nil, nil, []string{`CONNECTOR_COLLECT_DEFAULT_METRICS = "y"`}},
		// admin API host and port
		{"admin port", base(map[string]string{"CONNECTOR_ADMIN_API_PORT": "9000"}), func(c *Config) any { return c.AdminAPIPort }, 9000, nil},
		{"admin port range", base(map[string]string{"CONNECTOR_ADMIN_API_PORT": "70000"}), nil, nil, []string{`CONNECTOR_ADMIN_API_PORT = "70000": expected a TCP port from 0 to 65535`}},
		{"admin host", base(map[string]string{"CONNECTOR_ADMIN_API_HOST": "0.0.0.0"}), func(c *Config) any { return c.AdminAPIHost }, "0.0.0.0", nil},
		{"admin host empty with api", base(map[string]string{"CONNECTOR_ADMIN_API_HOST": "", "CONNECTOR_ADMIN_API": "true"}), nil, nil, []string{`CONNECTOR_ADMIN_API_HOST: required when the admin API is enabled`}},
		// routing secret
		{"routing secret", base(map[string]string{"CONNECTOR_ROUTING_SECRET": "AAEC"}), func(c *Config) any { return c.RoutingSecret }, []byte{0, 1, 2}, nil},
		{"routing secret bad", base(map[string]string{"CONNECTOR_ROUTING_SECRET": "!!!"}), nil, nil, []string{`CONNECTOR_ROUTING_SECRET = (hidden): expected base64`}},
		// backend
		{"backend one-to-one", base(map[string]string{"CONNECTOR_BACKEND": "one-to-one"}), func(c *Config) any { return c.Backend }, "one-to-one", nil},
		{"backend ecb", base(map[string]string{"CONNECTOR_BACKEND": "ecb"}), func(c *Config) any { return c.Backend }, "ecb", nil},
		{"backend ecb with mixed assets and a mirror", base(map[string]string{"CONNECTOR_BACKEND": "ecb", "CONNECTOR_BACKEND_CONFIG": `{"url":"http://127.0.0.1:8080/eurofxref-daily.xml"}`, "CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `,"b":` + strings.Replace(btpChild, "USD", "EUR", 1) + `}`}), func(c *Config) any { return c.Backend + " " + string(c.BackendConfig) }, `ecb {"url":"http://127.0.0.1:8080/eurofxref-daily.xml"}`, nil},
		{"backend ecb config the backend refuses", base(map[string]string{"CONNECTOR_BACKEND": "ecb", "CONNECTOR_BACKEND_CONFIG": `{"url":"http://u:s3cret@mirror/r.xml","maxAge":60000}`}), nil, nil, []string{`CONNECTOR_BACKEND_CONFIG: backendConfig for ecb: maxAge 1m0s must be longer than refreshInterval 1h0m0s`}},
		{"backend static without rates", base(map[string]string{"CONNECTOR_BACKEND": "static", "CONNECTOR_BACKEND_CONFIG": `{"base":"EUR"}`}), nil, nil, []string{`CONNECTOR_BACKEND_CONFIG: backendConfig for static: "rates" is empty`}},
		{"backend static without the price of an account's asset", base(map[string]string{"CONNECTOR_BACKEND": "static", "CONNECTOR_BACKEND_CONFIG": `{"base":"EUR","rates":{"USD":"1.08"}}`, "CONNECTOR_ACCOUNTS": `{"a":` + strings.Replace(btpChild, "USD", "XRP", 1) + `}`}), nil, nil, []string{`account "a": assetCode = "XRP": the static backend has no price for it`}},
		{"backend static with the base as an account's asset", base(map[string]string{"CONNECTOR_BACKEND": "static", "CONNECTOR_BACKEND_CONFIG": `{"base":"USD","rates":{"EUR":"0.9"}}`, "CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `}`}), func(c *Config) any { return c.Backend }, "static", nil},
		{"backend ecb-plus-xrp", base(map[string]string{"CONNECTOR_BACKEND": "ecb-plus-xrp"}), nil, nil, []string{`CONNECTOR_BACKEND = "ecb-plus-xrp": the JS "ecb-plus-xrp" backend fetches prices from public APIs other than the ECB's`, `use "ecb" (the ECB's daily rates, fetched and refreshed) or "static"`}},
		{"backend ecb-plus-coinmarketcap", base(map[string]string{"CONNECTOR_BACKEND": "ecb-plus-coinmarketcap"}), nil, nil, []string{`CONNECTOR_BACKEND = "ecb-plus-coinmarketcap"`, `use "ecb"`}},
		{"backend fixerio", base(map[string]string{"CONNECTOR_BACKEND": "fixerio"}), nil, nil, []string{`CONNECTOR_BACKEND = "fixerio"`, `use "ecb"`}},
		{"backend unknown", base(map[string]string{"CONNECTOR_BACKEND": "my-backend"}), nil, nil, []string{`CONNECTOR_BACKEND = "my-backend": not supported by the Go connector; supported backends: one-to-one, static, ecb`}},
		{"backend default with mixed assets", base(map[string]string{"CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `,"b":` + strings.Replace(btpChild, "USD", "EUR", 1) + `}`}), nil, nil, []string{`CONNECTOR_BACKEND: not set, and the accounts use different assets (EUR, USD)`, `default "ecb" backend`}},
		{"backend explicit with mixed assets", base(map[string]string{"CONNECTOR_BACKEND": "one-to-one", "CONNECTOR_ACCOUNTS": `{"a":` + btpChild + `,"b":` + strings.Replace(btpChild, "USD", "EUR", 1) + `}`}), func(c *Config) any { return len(c.Accounts) }, 2, nil},
		{"backend config", base(map[string]string{"CONNECTOR_BACKEND_CONFIG": `{"rates": {"EUR": "1.1"}}`}), func(c *Config) any { return string(c.BackendConfig) }, `{"rates":{"EUR":"1.1"}}`, nil},
		{"backend config bad", base(map[string]string{"CONNECTOR_BACKEND_CONFIG": `[1]`}), nil, nil, []string{`CONNECTOR_BACKEND_CONFIG: expected a JSON object; got an array`}},
		// store
		{"store memdown", base(map[string]string{"CONNECTOR_STORE": "memdown"}), func(c *Config) any { return c.Store }, "memory", nil},
		{"store ilp-store-redis", base(map[string]string{"CONNECTOR_STORE": "ilp-store-redis"}), func(c *Config) any { return c.Store }, "redis", nil},
		{"store path picks file like leveldown", base(map[string]string{"CONNECTOR_STORE_PATH": "/data"}), func(c *Config) any { return c.Store + ":" + c.StorePath }, "file:/data", nil},
		{"store leveldown without path", base(map[string]string{"CONNECTOR_STORE": "leveldown"}), nil, nil, []string{`CONNECTOR_STORE_PATH: required with store "file"`}},
		{"store unknown", base(map[string]string{"CONNECTOR_STORE": "ilp-store-mongo"}), nil, nil, []string{`CONNECTOR_STORE = "ilp-store-mongo": not supported by the Go connector; supported stores: memory, file, redis`}},
		{"store config", base(map[string]string{"CONNECTOR_STORE": "redis", "CONNECTOR_STORE_CONFIG": `{"url":"redis://127.0.0.1:6379"}`}), func(c *Config) any { return string(c.StoreConfig) }, `{"url":"redis://127.0.0.1:6379"}`, nil},
		{"store config bad", base(map[string]string{"CONNECTOR_STORE_CONFIG": `"x"`}), nil, nil, []string{`CONNECTOR_STORE_CONFIG: expected a JSON object; got a string`}},
		// middlewares
		{"middlewares empty", base(map[string]string{"CONNECTOR_MIDDLEWARES": `{}`}), func(c *Config) any { return c.Backend }, "one-to-one", nil},
		{"middlewares custom", base(map[string]string{"CONNECTOR_MIDDLEWARES": `{"audit":{"type":"ilp-middleware-audit"}}`}), nil, nil, []string{`CONNECTOR_MIDDLEWARES: custom middlewares are npm modules, which the Go connector cannot load (audit)`}},
		{"disable middleware", base(map[string]string{"CONNECTOR_DISABLE_MIDDLEWARE": `["rateLimit","deduplicate"]`}), func(c *Config) any { return c.DisableMiddleware }, []string{"rateLimit", "deduplicate"}, nil},
		{"disable middleware unknown", base(map[string]string{"CONNECTOR_DISABLE_MIDDLEWARE": `["ratelimit"]`}), nil, nil, []string{`CONNECTOR_DISABLE_MIDDLEWARE: [0] = "ratelimit": unknown middleware (did you mean "rateLimit"?)`}},
		{"disable middleware not array", base(map[string]string{"CONNECTOR_DISABLE_MIDDLEWARE": `rateLimit`}), nil, nil, []string{`CONNECTOR_DISABLE_MIDDLEWARE: expected JSON; syntax error at character 1 of 9: invalid character 'r' looking for beginning of value; near: <<here>>***`}},
		{"disable middleware null after a space", base(map[string]string{"CONNECTOR_DISABLE_MIDDLEWARE": " null\n"}), nil, nil, []string{`CONNECTOR_DISABLE_MIDDLEWARE: expected a JSON array of middleware names, e.g. ["rateLimit"]; got null`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(envOf(tt.env))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				if c != nil {
					t.Error("config returned with an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.check(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestFromEnvCollectsAllErrors(t *testing.T) {
	_, err := FromEnv(envOf(base(map[string]string{
		"CONNECTOR_SPREAD":    "x",
		"CONNECTOR_ADMIN_API": "yes",
		"CONNECTOR_ACCOUNTS":  `{"a":{"relation":"child","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":300,"balance":{"maximum":"z"}}}`,
	})))
	fes := FieldErrors(err)
	if len(fes) != 4 {
		t.Fatalf("got %d errors, want 4:\n%v", len(fes), err)
	}
	for _, fe := range fes {
		if fe.Source == "" && !strings.HasPrefix(fe.Field, EnvPrefix) {
			t.Errorf("error names no variable: %v", fe)
		}
	}
}

func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{"CONNECTOR_SPRAED=1", "CONNECTOR_SPREAD=0", "HOME=/root", "CONNECTOR_PEERS=a"})
	want := []string{
		`unknown environment variable CONNECTOR_PEERS ignored`,
		`unknown environment variable CONNECTOR_SPRAED ignored (did you mean "CONNECTOR_SPREAD"?)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	c, warnings, err := FromEnviron([]string{"CONNECTOR_ILP_ADDRESS=test.a", "CONNECTOR_SPRAED=1"})
	if err != nil || c == nil || len(warnings) != 1 {
		t.Errorf("FromEnviron: %v %v %v", c, warnings, err)
	}
}

// TestReadmeExample is the PM2 launch config of the JS README, with its env as a JS user
// writes it. Its parent plugin (ilp-plugin-xrp-asym) is not one the Go connector has, and
// the error must say so; with a BTP parent the same config loads.
func TestReadmeExample(t *testing.T) {
	parent := map[string]any{"relation": "parent", "assetScale": 6, "assetCode": "XRP", "plugin": "ilp-plugin-xrp-asym", "options": map[string]any{}}
	env := func() map[string]string {
		accounts, _ := json.Marshal(map[string]any{"up": parent})
		return map[string]string{
			"CONNECTOR_BACKEND":    "one-to-one",
			"CONNECTOR_SPREAD":     "0",
			"CONNECTOR_STORE_PATH": "/home/bob/connector",
			"CONNECTOR_ACCOUNTS":   string(accounts),
		}
	}
	_, err := FromEnv(envOf(env()))
	if err == nil || !strings.Contains(err.Error(), `CONNECTOR_ACCOUNTS: account "up": plugin = "ilp-plugin-xrp-asym": not supported by the Go connector; supported plugins: ilp-plugin-btp, ilp-plugin-mini-accounts`) {
		t.Fatalf("got %v", err)
	}
	parent["plugin"] = "ilp-plugin-btp"
	parent["options"] = map[string]any{"server": "btp+wss://:secret@ilsp.example/btp"}
	c, err := FromEnv(envOf(env()))
	if err != nil {
		t.Fatal(err)
	}
	if c.InheritFrom() != "up" || c.DefaultRouteAccount() != "up" || !c.Spread.IsZero() || c.Store != StoreFile || c.Accounts["up"].AssetScale != 6 {
		t.Errorf("unexpected config %+v", c)
	}
	// And the quickstart line of the README.
	if _, err := FromEnv(envOf(map[string]string{"CONNECTOR_STORE_PATH": "/tmp/x", "CONNECTOR_ACCOUNTS": "{}", "CONNECTOR_ILP_ADDRESS": "test.quickstart"})); err != nil {
		t.Errorf("quickstart: %v", err)
	}
}
