package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// kind is the JSON schema type of a top-level setting; it decides how the environment
// source reads the variable (as the JS loader does) and what a file may hold.
type kind int

const (
	kString kind = iota
	kBool
	kInteger
	kNumber
	kObject
	kArray
)

// setting is one top-level key of the JS config (camelCase, as in files) and how to set it.
type setting struct {
	key  string
	kind kind
	set  func(c *Config, raw json.RawMessage, l *fieldErrors)
}

// settings lists every top-level key of the JS connector's config schema (v23), in the
// schema's order.
var settings = []setting{
	{"env", kString, setString(func(c *Config) *string { return &c.Env })},
	{"ilpAddress", kString, setILPAddress},
	{"ilpAddressInheritFrom", kString, setString(func(c *Config) *string { return &c.ILPAddressInheritFrom })},
	{"accounts", kObject, func(c *Config, raw json.RawMessage, l *fieldErrors) {
		c.Accounts, c.AccountOrder = parseAccounts(raw, l)
	}},
	{"defaultRoute", kString, setString(func(c *Config) *string { return &c.DefaultRoute })},
	{"routes", kArray, setRoutes},
	{"spread", kNumber, setSpread},
	{"minMessageWindow", kInteger, setMillis("minMessageWindow")},
	{"maxHoldTime", kInteger, setMillis("maxHoldTime")},
	{"routeBroadcastEnabled", kBool, setBool(func(c *Config) *bool { return &c.RouteBroadcastEnabled })},
	{"routeBroadcastInterval", kInteger, setMillis("routeBroadcastInterval")},
	{"routeCleanupInterval", kInteger, setMillis("routeCleanupInterval")},
	{"routeExpiry", kInteger, setMillis("routeExpiry")},
	{"routingSecret", kString, setRoutingSecret},
	{"backend", kString, setString(func(c *Config) *string { return &c.Backend })},
	{"backendConfig", kObject, setObject(func(c *Config) *json.RawMessage { return &c.BackendConfig })},
	{"store", kString, setString(func(c *Config) *string { return &c.Store })},
	{"storePath", kString, setString(func(c *Config) *string { return &c.StorePath })},
	{"storeConfig", kObject, setObject(func(c *Config) *json.RawMessage { return &c.StoreConfig })},
	{"middlewares", kObject, setMiddlewares},
	{"disableMiddleware", kArray, setDisableMiddleware},
	{"reflectPayments", kBool, setBool(func(c *Config) *bool { return &c.ReflectPayments })},
	{"initialConnectTimeout", kInteger, setMillis("initialConnectTimeout")},
	{"adminApi", kBool, setBool(func(c *Config) *bool { return &c.AdminAPI })},
	{"adminApiPort", kInteger, setPortOf(func(c *Config) *int { return &c.AdminAPIPort })},
	{"adminApiHost", kString, setString(func(c *Config) *string { return &c.AdminAPIHost })},
	{"collectDefaultMetrics", kBool, setBool(func(c *Config) *bool { return &c.CollectDefaultMetrics })},
	// ilpfleet's own, after the JS schema's:
	{"settlementApiHost", kString, setString(func(c *Config) *string { return &c.SettlementAPIHost })},
	{"settlementApiPort", kInteger, setPortOf(func(c *Config) *int { return &c.SettlementAPIPort })},
}

// millisSetting is a top-level duration setting: its key, the fewest milliseconds it may have
// and its field. The minimum is 0 where JS accepts 0, 1 where a zero interval or hold time
// would make no sense (docs/configuration.md: "> 0"). Both the sources (setMillis) and
// Validate (millisGlobals) read it here, so both steps say the same thing.
type millisSetting struct {
	key   string
	min   int64 // ms
	field func(*Config) *time.Duration
}

var millisSettings = []millisSetting{
	{"minMessageWindow", 0, func(c *Config) *time.Duration { return &c.MinMessageWindow }},
	{"maxHoldTime", 1, func(c *Config) *time.Duration { return &c.MaxHoldTime }},
	{"routeBroadcastInterval", 1, func(c *Config) *time.Duration { return &c.RouteBroadcastInterval }},
	{"routeCleanupInterval", 1, func(c *Config) *time.Duration { return &c.RouteCleanupInterval }},
	{"routeExpiry", 1, func(c *Config) *time.Duration { return &c.RouteExpiry }},
	{"initialConnectTimeout", 0, func(c *Config) *time.Duration { return &c.InitialConnectTimeout }},
}

func settingKeys() []string {
	keys := make([]string, len(settings))
	for i, s := range settings {
		keys[i] = s.key
	}
	return keys
}

// EnvName is the environment variable of a top-level config key, as the JS loader derives it
// (CONNECTOR_ + constantCase(key)): "adminApiPort" → "CONNECTOR_ADMIN_API_PORT".
func EnvName(key string) string {
	var b strings.Builder
	b.WriteString(EnvPrefix)
	for i, r := range key {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

func setString(field func(*Config) *string) func(*Config, json.RawMessage, *fieldErrors) {
	return func(c *Config, raw json.RawMessage, l *fieldErrors) {
		if s, ok := rawString(raw); ok {
			*field(c) = s
		} else {
			l.addRaw("", "", raw, "expected a string")
		}
	}
}

func setBool(field func(*Config) *bool) func(*Config, json.RawMessage, *fieldErrors) {
	return func(c *Config, raw json.RawMessage, l *fieldErrors) {
		if v, ok := rawBool(raw); ok {
			*field(c) = v
		} else {
			l.addRaw("", "", raw, "expected true or false")
		}
	}
}

// setMillis reads the duration setting key with its minimum in millisSettings, the one
// Validate checks, so that -1 and 0 get the same message where 0 is refused too.
func setMillis(key string) func(*Config, json.RawMessage, *fieldErrors) {
	i := slices.IndexFunc(millisSettings, func(m millisSetting) bool { return m.key == key })
	if i < 0 {
		panic("config: no millisSettings entry for " + key)
	}
	m := millisSettings[i]
	return func(c *Config, raw json.RawMessage, l *fieldErrors) {
		d, problem := rawMillis(raw, m.min)
		if problem != "" {
			l.addRaw("", "", raw, "%s", problem)
			return
		}
		*m.field(c) = d
	}
}

func setObject(field func(*Config) *json.RawMessage) func(*Config, json.RawMessage, *fieldErrors) {
	return func(c *Config, raw json.RawMessage, l *fieldErrors) {
		if !isJSONObject(raw) {
			l.add("", "", "", "expected a JSON object; got %s", jsonKind(raw))
			return
		}
		*field(c) = json.RawMessage(canonicalJSON(raw))
	}
}

// setILPAddress maps the JS default "unknown" to "", which means "inherit from a parent".
func setILPAddress(c *Config, raw json.RawMessage, l *fieldErrors) {
	s, ok := rawString(raw)
	if !ok {
		l.addRaw("", "", raw, "expected a string")
		return
	}
	if s == "unknown" {
		s = ""
	}
	c.ILPAddress = s
}

func setSpread(c *Config, raw json.RawMessage, l *fieldErrors) {
	d, ok := rawDecimal(raw)
	if !ok {
		l.addRaw("", "", raw, "expected a number such as 0.002 (a fraction: 0.002 is 0.2 %%)")
		return
	}
	c.Spread = d
}

func setPortOf(field func(*Config) *int) func(*Config, json.RawMessage, *fieldErrors) {
	return func(c *Config, raw json.RawMessage, l *fieldErrors) {
		v, problem := rawInt(raw, 0, 65535)
		if problem != "" {
			l.addRaw("", "", raw, "expected a TCP port from 0 to 65535")
			return
		}
		*field(c) = int(v)
	}
}

// setRoutingSecret decodes base64 as Node's Buffer.from(s, "base64") does for well-formed
// input: standard or URL alphabet, padding optional.
func setRoutingSecret(c *Config, raw json.RawMessage, l *fieldErrors) {
	s, ok := rawString(raw)
	if !ok {
		l.add("", "", hiddenValue, "expected a base64 string")
		return
	}
	if s == "" {
		c.RoutingSecret = nil
		return
	}
	t := strings.TrimRight(s, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(t); err == nil {
			c.RoutingSecret = b
			return
		}
	}
	l.add("", "", hiddenValue, "expected base64 (e.g. the output of `openssl rand -base64 32`)")
}

func setRoutes(c *Config, raw json.RawMessage, l *fieldErrors) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || isNull(raw) {
		l.add("", "", "", `expected a JSON array of {"targetPrefix": "g.example", "peerId": "account id"}; got %s`, jsonKind(raw))
		return
	}
	c.Routes = make([]Route, 0, len(items))
	for i, item := range items {
		field := "routes[" + strconv.Itoa(i) + "]"
		obj, ok := subObject("", field, item, []string{"targetPrefix", "peerId"}, l)
		if !ok {
			if item == nil {
				l.add("", field, "", "expected an object")
			}
			continue
		}
		var r Route
		for _, f := range []struct {
			k   string
			dst *string
		}{{"targetPrefix", &r.TargetPrefix}, {"peerId", &r.PeerID}} {
			v, ok := obj[f.k]
			if !ok {
				l.add("", field+"."+f.k, "", "required")
				continue
			}
			if *f.dst, ok = rawString(v); !ok {
				l.addRaw("", field+"."+f.k, v, "expected a string")
			}
		}
		c.Routes = append(c.Routes, r)
	}
}

// isNull reports whether raw is JSON null, which decodes into a nil slice without error but
// which JS's schema refuses where it wants an array.
func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func setDisableMiddleware(c *Config, raw json.RawMessage, l *fieldErrors) {
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil || isNull(raw) {
		l.add("", "", "", `expected a JSON array of middleware names, e.g. ["rateLimit"]; got %s`, jsonKind(raw))
		return
	}
	c.DisableMiddleware = names
}

// setMiddlewares accepts only an empty object: custom middlewares are npm modules that the Go
// connector cannot load.
func setMiddlewares(c *Config, raw json.RawMessage, l *fieldErrors) {
	obj, ok := parseObject(raw)
	if !ok {
		l.add("", "", "", "expected a JSON object; got %s", jsonKind(raw))
		return
	}
	if len(obj) > 0 {
		l.add("", "", "", "custom middlewares are npm modules, which the Go connector cannot load (%s); "+
			"remove them, or use the built-in middlewares and their account settings", strings.Join(sortedKeys(obj), ", "))
	}
}

// apply runs a setting's setter on raw and names the setting in the errors it reports.
func (s setting) apply(c *Config, raw json.RawMessage, l *fieldErrors) {
	var errs fieldErrors
	s.set(c, raw, &errs)
	for _, e := range errs {
		if e.Field == "" {
			e.Field = s.key
		}
	}
	*l = append(*l, errs...)
}
