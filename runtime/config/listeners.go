package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
)

// listener is one TCP port the connector listens on, and what for.
type listener struct {
	reportOn []string // the accounts a clash with an earlier listener is reported on ("": none)
	field    string   // and the field
	exact    string   // the exact option path of an account's port ("options.listener.port")
	value    string   // the port as the error shows it (with "(default)" when not written)
	name     string   // what it is, for the error of a later listener (with an exactRef)
	host     string   // "" or a wildcard: every interface
	port     int
}

// validateListeners refuses two listeners on one port: accounts' BTP and ILP-over-HTTP
// servers, the admin API and the settlement API. The second could not bind — at start, or at
// a hot reload after the rest of the config is in force, leaving its account unreachable. The
// conflict is reported on the later account (in the order of the accounts object), so the
// Kubernetes source leaves that Account out and keeps the one that had the port first; a
// settlement API that cannot bind is reported on every account with an engine (each needs
// it), so that source leaves them all out in one round.
func (c *Config) validateListeners(l *fieldErrors) {
	var seen []listener
	for _, li := range c.listeners() {
		if li.port == 0 { // any free port: cannot clash
			continue
		}
		for _, s := range seen {
			if s.port == li.port && overlap(s.host, li.host) {
				for _, id := range li.reportOn {
					l.addExact(id, li.field, li.exact, li.value, "port %d%s is already used by %s; give each listener its own port", li.port, li.what(), s.name)
				}
				break
			}
		}
		seen = append(seen, li)
	}
}

// listeners lists the ports of the config in the order they came: the admin API first (it is
// on from the start, or never), then the accounts' servers in account order, with the
// settlement API just before the first account with an engine, which turns it on.
func (c *Config) listeners() []listener {
	var out []listener
	if c.AdminAPI {
		out = append(out, listener{reportOn: []string{""}, field: "adminApiPort", value: strconv.Itoa(c.AdminAPIPort),
			name: keyRef("adminApiPort"), host: c.AdminAPIHost, port: c.AdminAPIPort})
	}
	ids := c.orderedIDs()
	var engines []string
	for _, id := range ids {
		if c.Accounts[id].SettlementEngine != nil {
			engines = append(engines, id)
		}
	}
	for _, id := range ids {
		a := c.Accounts[id]
		if len(engines) > 0 && id == engines[0] {
			out = append(out, listener{reportOn: engines, field: "settlementEngine", name: keyRef("settlementApiPort"),
				host: c.SettlementAPIHost, port: c.SettlementAPIPort})
		}
		if at, ok := accountListener(a); ok {
			value, where := strconv.Itoa(at.port), at.option
			if !at.written {
				value, where = value+" (default)", at.option+", by default"
			}
			out = append(out, listener{reportOn: []string{id}, field: "options", exact: at.option, value: value,
				name: fmt.Sprintf("account %q%s", id, exactRef(" ("+where+")")), host: at.host, port: at.port})
		}
	}
	return out
}

// what says which port of its account a settlement API clash is about.
func (l listener) what() string {
	if l.field == "settlementEngine" {
		return " (" + keyRef("settlementApiPort") + ", which this account's engine needs)"
	}
	return ""
}

// ListenersOverlap reports whether the links of a and b both listen, on ports that clash.
func ListenersOverlap(a, b Account) bool {
	la, oka := accountListener(a)
	lb, okb := accountListener(b)
	return oka && okb && la.port != 0 && la.port == lb.port && overlap(la.host, lb.host)
}

// listenAt is where an account's link listens, and the option that sets its port.
type listenAt struct {
	host    string
	port    int
	option  string // the option that sets the port, as the user writes it ("options.listener.port")
	written bool   // whether that option is written: mini-accounts listen on port 3000 without it
}

// accountListener is where an account's link listens, if it is a server. Options that do not
// parse are reported elsewhere (the link refuses them). The plugins say which option set the
// port (runtime/btp: wsOpts.port, when given, replaces the port).
func accountListener(a Account) (listenAt, bool) {
	switch a.Plugin {
	case PluginBTP, PluginMiniAccounts:
		opts, err := btp.ParseOptions(a.Plugin, a.Options)
		if err != nil {
			return listenAt{}, false
		}
		switch o := opts.(type) {
		case *btp.PeerServerOptions:
			path, written := o.PortOption()
			return listenAt{o.Host, o.Port, "options." + path, written}, true
		case *btp.ChildServerOptions:
			path, written := o.PortOption()
			return listenAt{o.Host, o.Port, "options." + path, written}, true
		}
	case PluginHTTP:
		if o, err := ilphttp.ParseOptions(a.Options); err == nil && o.Incoming != nil {
			return listenAt{o.Incoming.Host, o.Incoming.Port, "options.incoming.port", true}, true
		}
	}
	return listenAt{}, false
}

// overlap reports whether two listen hosts share an address, so that the second bind fails:
// equal addresses, the every-interface hosts ("" and "::", dual-stack in Go) with any, and
// 0.0.0.0 with any IPv4 address (or a name, which may resolve to one).
func overlap(a, b string) bool {
	a, b = canonicalHost(a), canonicalHost(b)
	switch {
	case a == b || a == "" || b == "":
		return true
	case a == "0.0.0.0":
		return maybeIPv4(b)
	case b == "0.0.0.0":
		return maybeIPv4(a)
	}
	return false
}

// canonicalHost writes one address one way: "" for every interface (any spelling of the
// unspecified IPv6 address, dual-stack in Go), localhost as the address Go binds for it,
// IPv4-mapped IPv6 as IPv4.
func canonicalHost(h string) string {
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if h == "localhost" {
		return "127.0.0.1"
	}
	ip, err := netip.ParseAddr(h)
	switch {
	case err != nil:
		return h
	case ip.Is6() && ip.IsUnspecified():
		return ""
	}
	return ip.Unmap().String()
}

func maybeIPv4(h string) bool {
	ip, err := netip.ParseAddr(h)
	return err != nil || ip.Is4()
}
