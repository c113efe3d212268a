package config

import (
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// ListenerTLS is the TLS a's link serves — ilp-plugin-btp's listener.tls,
// ilp-plugin-mini-accounts' tls, ilp-plugin-http's incoming.tls (listenerTLSPaths) — parsed as
// the link parses its options, and loaded (its files read): what a reload renews a running
// listener with (AccountChange.RenewTLS). nil, nil when the link does not listen or serves no
// TLS; the options' error when they do not parse.
func (a *Account) ListenerTLS() (*tlsopt.Server, error) {
	if a.Plugin == PluginHTTP {
		o, err := ilphttp.ParseOptions(a.Options)
		if err != nil || o.Incoming == nil {
			return nil, err
		}
		return o.Incoming.TLS, nil
	}
	opts, err := btp.ParseOptions(a.Plugin, a.Options)
	if err != nil {
		return nil, err
	}
	switch o := opts.(type) {
	case *btp.PeerServerOptions:
		return o.TLS, nil
	case *btp.ChildServerOptions:
		return o.TLS, nil
	}
	return nil, nil
}
