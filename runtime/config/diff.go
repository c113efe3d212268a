package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Changes is what differs between a running config and a new one: the runtime applies a new
// config as these changes (docs/configuration.md, "Reloading"), never as a restart.
type Changes struct {
	Added   []string        // account ids to connect, sorted
	Removed []string        // account ids to drain and close, sorted
	Changed []AccountChange // accounts present in both that differ, sorted by id
	// RoutesChanged: the static routes or the account the default route resolves to changed,
	// so the routing table must be rebuilt (accounts added or removed also change it).
	RoutesChanged bool
	Globals       []string // JS keys of the other top-level settings that changed, sorted
}

// AccountChange says what changed in one account.
type AccountChange struct {
	ID     string
	Fields []string // JS keys: "balance", "rateLimit", "options", …
	// Reconnect is true when the link itself changed — plugin, options (endpoint and
	// credentials), relation, assetCode, assetScale or ilpAddressSegment — so the link must be
	// closed and opened again (relation, asset and segment are what the peer learnt over
	// IL-DCP at connect time). Otherwise only limits and middleware settings changed, and the
	// runtime swaps them in place.
	Reconnect bool
	// RenewTLS is true when the only change of options is inside the tls object of a listening
	// link, set before and after, and leaves its client checks alone (Fields then holds
	// "options.listener.tls", "options.tls" or "options.incoming.tls" instead of "options"): a
	// renewed certificate or key (cert, certFile, key, keyFile). The link takes the new
	// material for its new handshakes, in place, without a reconnect: its peers stay
	// connected. A change of clientCa, clientCaFile or clientNames (set, removed, other PEM,
	// path or names) must hold for every peer, the connected ones too, so it reconnects as any
	// change of options;
	// so does adding or removing that tls object, which changes the port's protocol.
	RenewTLS bool
}

// Empty reports whether there is nothing to apply.
func (c Changes) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Changed) == 0 && !c.RoutesChanged && len(c.Globals) == 0
}

// reconnectFields are the account fields whose change forces a reconnect.
var reconnectFields = map[string]bool{
	"plugin": true, "options": true, "relation": true, "assetCode": true, "assetScale": true, "ilpAddressSegment": true,
}

// listenerTLSPaths are, by plugin, where the tls object of a listening link sits in options:
// the one part of options a running link takes in place (AccountChange.RenewTLS).
var listenerTLSPaths = map[string][]string{
	PluginBTP:          {"listener", "tls"},
	PluginMiniAccounts: {"tls"},
	PluginHTTP:         {"incoming", "tls"},
}

// listenerTLSField is the Fields entry of a change inside the listening tls object of plugin's
// options ("options.listener.tls").
func listenerTLSField(plugin string) string {
	return "options." + strings.Join(listenerTLSPaths[plugin], ".")
}

// clientCheckKeys are the keys of a listening tls object whose change reconnects the link: the
// client authorities and names it checks, which must hold for the connected peers too.
var clientCheckKeys = []string{"clientCa", "clientCaFile", "clientNames"}

// onlyListenerTLS reports whether the options a and b of a link of plugin differ only inside
// the listening tls object, which both have (not null), and not in its client checks (CA,
// names).
func onlyListenerTLS(plugin string, a, b json.RawMessage) bool {
	path := listenerTLSPaths[plugin]
	if path == nil {
		return false
	}
	strip := func(raw json.RawMessage) ([]byte, bool) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // as canonicalJSON: numbers compare as written
		var top map[string]any
		if dec.Decode(&top) != nil {
			return nil, false
		}
		obj := top
		for _, k := range path[:len(path)-1] {
			if obj, _ = obj[k].(map[string]any); obj == nil {
				return nil, false
			}
		}
		t, _ := obj[path[len(path)-1]].(map[string]any)
		if t == nil {
			return nil, false
		}
		// What stays of the tls object: its client checks (a change of them reconnects).
		ca := map[string]any{}
		for _, k := range clientCheckKeys {
			if v := t[k]; v != nil { // null is unset
				ca[k] = v
			}
		}
		obj[path[len(path)-1]] = ca
		out, err := json.Marshal(top)
		return out, err == nil
	}
	sa, oka := strip(a)
	sb, okb := strip(b)
	return oka && okb && bytes.Equal(sa, sb)
}

// Diff compares old and new. A nil old means "nothing was running": every account is added
// and every global counts as changed.
func Diff(old, new *Config) Changes {
	var ch Changes
	if old == nil {
		old = &Config{}
		ch.Globals = settingKeysExcept("accounts", "routes", "middlewares")
	}
	for _, id := range sortedKeys(new.Accounts) {
		oa, ok := old.Accounts[id]
		if !ok {
			ch.Added = append(ch.Added, id)
			continue
		}
		na := new.Accounts[id]
		if fields := accountDiff(&oa, &na); len(fields) > 0 {
			ac := AccountChange{ID: id, Fields: fields}
			for _, f := range fields {
				ac.Reconnect = ac.Reconnect || reconnectFields[f]
				ac.RenewTLS = ac.RenewTLS || f == listenerTLSField(na.Plugin)
			}
			ch.Changed = append(ch.Changed, ac)
		}
	}
	for _, id := range sortedKeys(old.Accounts) {
		if _, ok := new.Accounts[id]; !ok {
			ch.Removed = append(ch.Removed, id)
		}
	}
	ch.RoutesChanged = !reflect.DeepEqual(routesOrNil(old.Routes), routesOrNil(new.Routes)) ||
		old.DefaultRouteAccount() != new.DefaultRouteAccount()
	if ch.Globals == nil {
		for _, g := range globalGetters {
			if g.get(old) != g.get(new) {
				ch.Globals = append(ch.Globals, g.key)
			}
		}
		sort.Strings(ch.Globals)
	}
	return ch
}

func routesOrNil(r []Route) []Route {
	if len(r) == 0 {
		return nil
	}
	return r
}

func settingKeysExcept(skip ...string) []string {
	var out []string
	for _, k := range settingKeys() {
		if !contains(skip, k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// accountDiff lists the JS keys whose values differ. Route flags compare by their effective
// value (nil means the relation's default), options by canonical JSON.
func accountDiff(a, b *Account) []string {
	var out []string
	check := func(key string, same bool) {
		if !same {
			out = append(out, key)
		}
	}
	check("relation", a.Relation == b.Relation)
	check("plugin", a.Plugin == b.Plugin)
	check("assetCode", a.AssetCode == b.AssetCode)
	check("assetScale", a.AssetScale == b.AssetScale)
	check("balance", reflect.DeepEqual(a.Balance, b.Balance))
	check("maxPacketAmount", reflect.DeepEqual(a.MaxPacketAmount, b.MaxPacketAmount))
	check("throughput", reflect.DeepEqual(a.Throughput, b.Throughput))
	check("rateLimit", reflect.DeepEqual(a.RateLimit, b.RateLimit))
	check("deduplicate", reflect.DeepEqual(a.Deduplicate, b.Deduplicate))
	check("sendRoutes", a.SendsRoutes() == b.SendsRoutes())
	check("receiveRoutes", a.ReceivesRoutes() == b.ReceivesRoutes())
	check("ilpAddressSegment", a.ILPAddressSegment == b.ILPAddressSegment)
	switch {
	case bytes.Equal(canonicalObject(a.Options), canonicalObject(b.Options)):
	case a.Plugin == b.Plugin && onlyListenerTLS(a.Plugin, a.Options, b.Options):
		out = append(out, listenerTLSField(a.Plugin))
	default:
		out = append(out, "options")
	}
	check("settlementEngine", reflect.DeepEqual(a.SettlementEngine, b.SettlementEngine))
	return out
}

// globalGetters render each global setting as a string for comparison. ilpAddressInheritFrom
// compares the parent the address actually comes from, so adding a first parent counts.
var globalGetters = []struct {
	key string
	get func(*Config) string
}{
	{"env", func(c *Config) string { return c.Env }},
	{"ilpAddress", func(c *Config) string { return c.ILPAddress }},
	{"ilpAddressInheritFrom", func(c *Config) string { return c.InheritFrom() }},
	{"defaultRoute", func(c *Config) string { return c.DefaultRoute }},
	{"spread", func(c *Config) string { return c.Spread.String() }},
	{"minMessageWindow", func(c *Config) string { return c.MinMessageWindow.String() }},
	{"maxHoldTime", func(c *Config) string { return c.MaxHoldTime.String() }},
	{"routeBroadcastEnabled", func(c *Config) string { return strconv.FormatBool(c.RouteBroadcastEnabled) }},
	{"routeBroadcastInterval", func(c *Config) string { return c.RouteBroadcastInterval.String() }},
	{"routeCleanupInterval", func(c *Config) string { return c.RouteCleanupInterval.String() }},
	{"routeExpiry", func(c *Config) string { return c.RouteExpiry.String() }},
	{"routingSecret", func(c *Config) string { return base64.StdEncoding.EncodeToString(c.RoutingSecret) }},
	{"backend", func(c *Config) string { return c.Backend }},
	{"backendConfig", func(c *Config) string { return string(canonicalObject(c.BackendConfig)) }},
	{"store", func(c *Config) string { return c.Store }},
	{"storePath", func(c *Config) string { return c.StorePath }},
	{"storeConfig", func(c *Config) string { return string(canonicalObject(c.StoreConfig)) }},
	{"disableMiddleware", func(c *Config) string { return strings.Join(sortedCopy(c.DisableMiddleware), ",") }},
	{"reflectPayments", func(c *Config) string { return strconv.FormatBool(c.ReflectPayments) }},
	{"initialConnectTimeout", func(c *Config) string { return c.InitialConnectTimeout.String() }},
	{"adminApi", func(c *Config) string { return strconv.FormatBool(c.AdminAPI) }},
	{"adminApiPort", func(c *Config) string { return strconv.Itoa(c.AdminAPIPort) }},
	{"adminApiHost", func(c *Config) string { return c.AdminAPIHost }},
	{"collectDefaultMetrics", func(c *Config) string { return strconv.FormatBool(c.CollectDefaultMetrics) }},
	{"settlementApiHost", func(c *Config) string { return c.SettlementAPIHost }},
	{"settlementApiPort", func(c *Config) string { return strconv.Itoa(c.SettlementAPIPort) }},
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// canonicalObject is canonicalJSON with an absent object equal to {}.
func canonicalObject(raw []byte) []byte {
	if c := canonicalJSON(raw); len(c) > 0 && string(c) != "null" {
		return c
	}
	return []byte("{}")
}
