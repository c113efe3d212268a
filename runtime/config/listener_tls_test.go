package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
)

// TestValidateListenerTLS: the tls object of a listening link — ilp-plugin-btp's listener.tls,
// ilp-plugin-mini-accounts' tls, ilp-plugin-http's incoming.tls — is checked in step 2 with
// the account's other fields (its keys, PEM text and files), so a bad one is that account's
// problem, named by its option path; a good one passes.
func TestValidateListenerTLS(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	srv, other := ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1")
	good := testcert.TLSOption("cert", string(srv.CertPEM), "key", string(srv.KeyPEM), "clientCa", string(ca.PEM))
	mismatch := testcert.TLSOption("cert", string(srv.CertPEM), "key", string(other.KeyPEM))
	for _, tc := range []struct {
		name, plugin, opts, problem string // problem "" when valid
	}{
		{"btp listener", PluginBTP, `{"listener":{"port":7768,"secret":"s3cret","tls":` + good + `}}`, ""},
		{"btp listener mismatch", PluginBTP, `{"listener":{"port":7768,"secret":"s3cret","tls":` + mismatch + `}}`,
			`account "bad": options: ilp-plugin-btp options: listener.tls.cert and listener.tls.key do not match`},
		{"btp listener typo", PluginBTP, `{"listener":{"port":7768,"secret":"s3cret","tls":{"keyfile":"/k"}}}`,
			`account "bad": options: ilp-plugin-btp options: unknown option "listener.tls.keyfile" (did you mean "keyFile"?)`},
		{"mini-accounts", PluginMiniAccounts, `{"port":7768,"tls":` + good + `}`, ""},
		{"mini-accounts unreadable file", PluginMiniAccounts, `{"port":7768,"tls":{"certFile":"/nonexistent/tls.crt","key":"x"}}`,
			`account "bad": options: ilp-plugin-mini-accounts options: tls.certFile: cannot read "/nonexistent/tls.crt"`},
		{"http incoming", PluginHTTP, `{"incoming":{"port":7768,"staticToken":"s3cret","tls":` + good + `}}`, ""},
		{"http incoming without key", PluginHTTP, `{"incoming":{"port":7768,"staticToken":"s3cret","tls":{"cert":"x"}}}`,
			`account "bad": options: ilp-plugin-http options: incoming.tls needs the certificate's private key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.ILPAddress = "test.me"
			c.Accounts = map[string]Account{"bad": {Relation: RelationPeer, Plugin: tc.plugin, AssetCode: "USD", Options: json.RawMessage(tc.opts)}}
			var msg string
			if err := c.Validate(); err != nil {
				msg = err.Error()
			}
			switch {
			case strings.Contains(msg, "s3cret") || strings.Contains(msg, "-----BEGIN"):
				t.Fatalf("error quotes the options: %s", msg)
			case tc.problem == "" && msg != "":
				t.Fatalf("valid options refused: %s", msg)
			case tc.problem != "" && !strings.Contains(msg, tc.problem):
				t.Fatalf("error %q; want one saying %q", msg, tc.problem)
			}
		})
	}
}
