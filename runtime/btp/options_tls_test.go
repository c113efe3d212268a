package btp

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
)

// TestParseOptionsTLS: the `tls` object of a btp+wss:// client is read into ClientOptions.TLS;
// anywhere else, or with an unknown key, it is refused with a message naming the fix; so are
// the listening tls objects (listener.tls, mini-accounts' tls) that are wrong.
func TestParseOptionsTLS(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	client := ca.Client(t, "us")
	t.Run("accepted", func(t *testing.T) {
		raw := `{"server":"btp+wss://u:t@peer.example/btp","tls":` +
			testcert.TLSOption("ca", string(ca.PEM), "cert", string(client.CertPEM), "key", string(client.KeyPEM), "servername", "btp.peer.example") + `}`
		o, err := ParseOptions(PluginBTP, json.RawMessage(raw))
		if err != nil {
			t.Fatal(err)
		}
		c := o.(*ClientOptions).TLS
		switch {
		case c == nil:
			t.Fatal("TLS not set")
		case c.RootCAs == nil || !c.RootCAs.Equal(ca.Pool()):
			t.Error("RootCAs is not the pool of tls.ca")
		case c.GetClientCertificate == nil:
			t.Error("no client certificate")
		case c.ServerName != "btp.peer.example":
			t.Errorf("ServerName = %q", c.ServerName)
		}
		// An empty object is the defaults: system roots, no certificate.
		o, err = ParseOptions(PluginBTP, json.RawMessage(`{"server":"btp+wss://u:t@peer","tls":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		if c := o.(*ClientOptions).TLS; c == nil || c.RootCAs != nil || c.GetClientCertificate != nil {
			t.Errorf("tls {} = %+v; want a config with the system roots and no certificate", c)
		}
		// null is no tls.
		o, err = ParseOptions(PluginBTP, json.RawMessage(`{"server":"btp+ws://u:t@peer","tls":null}`))
		if err != nil || o.(*ClientOptions).TLS != nil {
			t.Errorf("tls null on btp+ws: %v, %+v", err, o)
		}
	})
	for _, tc := range []struct {
		name, plugin, json, want string
	}{
		{"plain ws", PluginBTP, `{"server":"btp+ws://u:t@peer","tls":{}}`, "tls applies to btp+wss:// URLs only; server is btp+ws://u:xxxxx@peer"},
		{"typo", PluginBTP, `{"server":"btp+wss://u:t@peer","tls":{"sevrername":"x"}}`,
			`unknown option "tls.sevrername" (did you mean "servername"?); known options here: ca, caFile, cert, certFile, key, keyFile, servername`},
		{"typo caFile", PluginBTP, `{"server":"btp+wss://u:t@peer","tls":{"cafile":"/x"}}`, `unknown option "tls.cafile" (did you mean "caFile"?)`},
		{"listener", PluginBTP, `{"listener":{"port":7768,"secret":"s"},"tls":{}}`, "tls applies to server (the dialing side); a listener's TLS goes in listener.tls"},
		{"mini-accounts without cert", PluginMiniAccounts, `{"tls":{}}`, "tls needs the server's certificate: set tls.cert"},
		{"mini-accounts typo", PluginMiniAccounts, `{"tls":{"clientCA":"x"}}`, `unknown option "tls.clientCA" (did you mean "clientCa"?)`},
		{"listener.tls typo", PluginBTP, `{"listener":{"port":7768,"secret":"s","tls":{"certfile":"/x"}}}`, `unknown option "listener.tls.certfile" (did you mean "certFile"?)`},
		{"listener.tls without key", PluginBTP, `{"listener":{"port":7768,"secret":"s","tls":{"certFile":"/x"}}}`, "listener.tls needs the certificate's private key: set listener.tls.key (PEM) or listener.tls.keyFile"},
		{"not an object", PluginBTP, `{"server":"btp+wss://u:t@peer","tls":"-----BEGIN CERTIFICATE-----"}`, "cannot unmarshal string"},
		{"bad CA", PluginBTP, `{"server":"btp+wss://u:t@peer","tls":{"ca":"nope"}}`, "btp: ilp-plugin-btp options: tls.ca holds no PEM CERTIFICATE block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseOptions(tc.plugin, json.RawMessage(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error %q quotes the PEM", err)
			}
		})
	}
}
