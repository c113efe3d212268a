package config

import (
	"fmt"
	"strconv"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
)

// listener is one TCP port the connector listens on, and what for.
type listener struct {
	account, field string // where the config sets it
	host           string // "" or a wildcard: every interface
	port           int
}

// validateListeners refuses two listeners on one port: accounts' BTP and ILP-over-HTTP
// servers, the admin API and the settlement API. The second could not bind — at start, or at
// a hot reload after the rest of the config is in force, leaving its account unreachable. The
// conflict is reported on the later account (in the order of the accounts object), so the
// Kubernetes source leaves that Account out and keeps the one that had the port first.
func (c *Config) validateListeners(l *fieldErrors) {
	var seen []listener
	for _, li := range c.listeners() {
		if li.port == 0 { // any free port: cannot clash
			continue
		}
		for _, s := range seen {
			if s.port == li.port && overlap(s.host, li.host) {
				l.add(li.account, li.field, strconv.Itoa(li.port), "port %d is already used by %s; give each listener its own port", li.port, s.owner())
				break
			}
		}
		seen = append(seen, li)
	}
}

// listeners lists the ports of the config: the connector's APIs first, then the accounts'
// servers in account order.
func (c *Config) listeners() []listener {
	var out []listener
	if c.AdminAPI {
		out = append(out, listener{field: "adminApiPort", host: c.AdminAPIHost, port: c.AdminAPIPort})
	}
	if c.settles() {
		out = append(out, listener{field: "settlementApiPort", host: c.SettlementAPIHost, port: c.SettlementAPIPort})
	}
	for _, id := range c.orderedIDs() {
		if host, port, ok := accountListener(c.Accounts[id]); ok {
			out = append(out, listener{account: id, field: "options", host: host, port: port})
		}
	}
	return out
}

// settles reports whether the settlement API is served: an account has a settlement engine.
func (c *Config) settles() bool {
	for _, a := range c.Accounts {
		if a.SettlementEngine != nil {
			return true
		}
	}
	return false
}

// accountListener is where an account's link listens, if it is a server. Options that do not
// parse are reported elsewhere (the link refuses them).
func accountListener(a Account) (host string, port int, ok bool) {
	switch a.Plugin {
	case PluginBTP, PluginMiniAccounts:
		opts, err := btp.ParseOptions(a.Plugin, a.Options)
		if err != nil {
			return "", 0, false
		}
		switch o := opts.(type) {
		case *btp.PeerServerOptions:
			return o.Host, o.Port, true
		case *btp.ChildServerOptions:
			return o.Host, o.Port, true
		}
	case PluginHTTP:
		if o, err := ilphttp.ParseOptions(a.Options); err == nil && o.Incoming != nil {
			return o.Incoming.Host, o.Incoming.Port, true
		}
	}
	return "", 0, false
}

// overlap reports whether two listen hosts share an address: equal, or either is a wildcard.
func overlap(a, b string) bool {
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" || h == "[::]" }
	return a == b || wild(a) || wild(b)
}

func (l listener) owner() string {
	if l.account == "" {
		return l.field
	}
	return fmt.Sprintf("account %q", l.account)
}
