package config

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestDiffTLSReconnects: a change of the tls option of either kind of dialing link — a rotated
// Secret that the Kubernetes side renders as new inline PEM, a file path, tls added — changes
// the account's options, so a reload closes the link and dials again with the new
// certificates; the same tls object written in another key order changes nothing.
func TestDiffTLSReconnects(t *testing.T) {
	btpOpts := func(tls string) json.RawMessage {
		return json.RawMessage(`{"server":"btp+wss://u:t@peer.example/btp"` + tls + `}`)
	}
	httpOpts := func(tls string) json.RawMessage {
		return json.RawMessage(`{"outgoing":{"url":"https://peer.example/ilp","staticToken":"t"` + tls + `}}`)
	}
	const (
		caV1  = `,"tls":{"ca":"-----BEGIN CERTIFICATE-----\nv1\n-----END CERTIFICATE-----\n","servername":"peer"}`
		caV1r = `,"tls":{"servername":"peer","ca":"-----BEGIN CERTIFICATE-----\nv1\n-----END CERTIFICATE-----\n"}`
		caV2  = `,"tls":{"ca":"-----BEGIN CERTIFICATE-----\nv2\n-----END CERTIFICATE-----\n","servername":"peer"}`
		keyV2 = `,"tls":{"ca":"-----BEGIN CERTIFICATE-----\nv1\n-----END CERTIFICATE-----\n","servername":"peer","cert":"c","key":"k2"}`
		file  = `,"tls":{"caFile":"/etc/ilp/ca.pem","servername":"peer"}`
	)
	cfg := func(btpTLS, httpTLS string) *Config {
		c := Defaults()
		c.ILPAddress = "test.a"
		c.Accounts = map[string]Account{
			"btp":  {Relation: RelationPeer, Plugin: PluginBTP, AssetCode: "USD", AssetScale: 9, Options: btpOpts(btpTLS)},
			"http": {Relation: RelationPeer, Plugin: PluginHTTP, AssetCode: "USD", AssetScale: 9, Options: httpOpts(httpTLS)},
		}
		return c
	}
	both := []AccountChange{{ID: "btp", Fields: []string{"options"}, Reconnect: true}, {ID: "http", Fields: []string{"options"}, Reconnect: true}}
	for _, tc := range []struct {
		name     string
		old, new *Config
		want     []AccountChange
	}{
		{"same tls, other key order", cfg(caV1, caV1), cfg(caV1r, caV1r), nil},
		{"CA rotated", cfg(caV1, caV1), cfg(caV2, caV2), both},
		{"client certificate added", cfg(caV1, caV1), cfg(keyV2, keyV2), both},
		{"inline to file", cfg(caV1, caV1), cfg(file, file), both},
		{"tls added", cfg("", ""), cfg(caV1, caV1), both},
		{"tls removed", cfg(caV1, caV1), cfg("", ""), both},
		{"one account only", cfg(caV1, caV1), cfg(caV1, caV2), both[1:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Diff(tc.old, tc.new)
			if !reflect.DeepEqual(got.Changed, tc.want) {
				t.Errorf("Changed = %+v; want %+v", got.Changed, tc.want)
			}
			if len(got.Added)+len(got.Removed) > 0 || got.RoutesChanged || len(got.Globals) > 0 {
				t.Errorf("changes beyond the accounts: %+v", got)
			}
		})
	}
}

// TestDiffListenerTLSRenews: a change of the certificate or key inside the tls object of a
// listening link (listener.tls, mini-accounts' tls, incoming.tls: new PEM, new file paths) is a
// RenewTLS change, taken in place without a reconnect; a change of its client CA (clientCa or
// clientCaFile set, removed, other PEM or path) or of its clientNames, tls added or removed, or changed with anything
// else of options, or the dialing tls of ilp-plugin-btp, reconnects.
func TestDiffListenerTLSRenews(t *testing.T) {
	const (
		v1     = `{"cert":"C1","key":"K1"}`
		v2     = `{"cert":"C2","key":"K2"}`
		v1CA   = `{"cert":"C1","key":"K1","clientCa":"CA"}`
		v2CA   = `{"cert":"C2","key":"K2","clientCa":"CA"}`
		v1CA2  = `{"cert":"C1","key":"K1","clientCa":"CA2"}`
		v1Null = `{"cert":"C1","key":"K1","clientCa":null}`
		file   = `{"certFile":"/etc/tls/tls.crt","keyFile":"/etc/tls/tls.key"}`
		caFile = `{"certFile":"/etc/tls/tls.crt","keyFile":"/etc/tls/tls.key","clientCaFile":"/etc/tls/ca.crt"}`
		caFil2 = `{"certFile":"/etc/tls/tls.crt","keyFile":"/etc/tls/tls.key","clientCaFile":"/etc/peers/ca.crt"}`
		caPEM  = `{"certFile":"/etc/tls/tls.crt","keyFile":"/etc/tls/tls.key","clientCa":"CA"}`
		caFil3 = `{"cert":"C2","key":"K2","clientCaFile":"/etc/tls/ca.crt"}`
		v1Nam  = `{"cert":"C1","key":"K1","clientCa":"CA","clientNames":["alice"]}`
		v2Nam  = `{"cert":"C2","key":"K2","clientCa":"CA","clientNames":["alice"]}`
		v1Nam2 = `{"cert":"C1","key":"K1","clientCa":"CA","clientNames":["bob"]}`
		v1Nam3 = `{"cert":"C1","key":"K1","clientCa":"CA","clientNames":["alice","bob"]}`
		v1NamN = `{"cert":"C1","key":"K1","clientCa":"CA","clientNames":null}`
	)
	// withTLS is the tls member of a listening object, "" for none.
	withTLS := func(tls string) string {
		if tls == "" {
			return ""
		}
		return `,"tls":` + tls
	}
	opts := map[string]func(port, tls string) string{
		PluginBTP: func(port, tls string) string {
			return `{"listener":{"port":` + port + `,"secret":"s"` + withTLS(tls) + `}}`
		},
		PluginMiniAccounts: func(port, tls string) string {
			return `{"port":` + port + withTLS(tls) + `}`
		},
		PluginHTTP: func(port, tls string) string {
			return `{"incoming":{"port":` + port + `,"staticToken":"t"` + withTLS(tls) + `}}`
		},
	}
	field := map[string]string{PluginBTP: "options.listener.tls", PluginMiniAccounts: "options.tls", PluginHTTP: "options.incoming.tls"}
	for plugin, o := range opts {
		cfg := func(opts string) *Config {
			c := Defaults()
			c.ILPAddress = "test.a"
			c.Accounts = map[string]Account{"a": {Relation: RelationChild, Plugin: plugin, AssetCode: "USD", AssetScale: 9, Options: json.RawMessage(opts)}}
			return c
		}
		renew := []AccountChange{{ID: "a", Fields: []string{field[plugin]}, RenewTLS: true}}
		reconnect := []AccountChange{{ID: "a", Fields: []string{"options"}, Reconnect: true}}
		for _, tc := range []struct {
			name     string
			old, new string
			want     []AccountChange
		}{
			{"same", o("7768", v1), o("7768", v1), nil},
			{"new certificate", o("7768", v1), o("7768", v2), renew},
			{"new certificate, same client CA", o("7768", v1CA), o("7768", v2CA), renew},
			{"inline to files", o("7768", v1), o("7768", file), renew},
			{"inline to files, same client CA", o("7768", v1CA), o("7768", caPEM), renew},
			{"new certificate, same clientCaFile", o("7768", caFile), o("7768", caFil3), renew},
			{"clientCa null is unset", o("7768", v1), o("7768", v1Null), renew},
			{"client CA added", o("7768", v1), o("7768", v1CA), reconnect},
			{"client CA added with a new certificate", o("7768", v1), o("7768", v2CA), reconnect},
			{"client CA removed", o("7768", v1CA), o("7768", v1), reconnect},
			{"client CA PEM changed", o("7768", v1CA), o("7768", v1CA2), reconnect},
			{"clientCaFile path changed", o("7768", caFile), o("7768", caFil2), reconnect},
			{"clientCa to clientCaFile", o("7768", caPEM), o("7768", caFile), reconnect},
			{"new certificate, same clientNames", o("7768", v1Nam), o("7768", v2Nam), renew},
			{"clientNames null is unset", o("7768", v1CA), o("7768", v1NamN), renew},
			{"clientNames added", o("7768", v1CA), o("7768", v1Nam), reconnect},
			{"clientNames removed", o("7768", v1Nam), o("7768", v1CA), reconnect},
			{"clientNames changed", o("7768", v1Nam), o("7768", v1Nam2), reconnect},
			{"clientNames gained a name", o("7768", v1Nam), o("7768", v1Nam3), reconnect},
			{"clientNames changed with a new certificate", o("7768", v2Nam), o("7768", v1Nam2), reconnect},
			{"tls added", o("7768", ""), o("7768", v1), reconnect},
			{"tls removed", o("7768", v1), o("7768", ""), reconnect},
			{"tls null to object", o("7768", "null"), o("7768", v1), reconnect},
			{"tls and port", o("7768", v1), o("7769", v2), reconnect},
		} {
			t.Run(plugin+"/"+tc.name, func(t *testing.T) {
				got := Diff(cfg(tc.old), cfg(tc.new))
				if !reflect.DeepEqual(got.Changed, tc.want) {
					t.Errorf("Changed = %+v; want %+v", got.Changed, tc.want)
				}
			})
		}
	}
	// The dialing tls of ilp-plugin-btp (top level) is no listener's: it reconnects.
	dial := func(tls string) *Config {
		c := Defaults()
		c.ILPAddress = "test.a"
		c.Accounts = map[string]Account{"a": {Relation: RelationPeer, Plugin: PluginBTP, AssetCode: "USD", AssetScale: 9,
			Options: json.RawMessage(`{"server":"btp+wss://u:t@peer/btp","tls":` + tls + `}`)}}
		return c
	}
	if got := Diff(dial(`{"ca":"A"}`), dial(`{"ca":"B"}`)).Changed; len(got) != 1 || !got[0].Reconnect || got[0].RenewTLS {
		t.Errorf("dialing tls changed: %+v; want a reconnect", got)
	}
}
