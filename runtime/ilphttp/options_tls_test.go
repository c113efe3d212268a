package ilphttp

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
)

// TestParseOptionsTLS: outgoing.tls of an https:// URL is read into OutgoingOptions.TLS; on
// http://, or with an unknown key, it is refused with a message naming the fix.
func TestParseOptionsTLS(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	client := ca.Client(t, "us")
	raw := `{"outgoing":{"url":"https://peer.example/ilp","staticToken":"t","tls":` +
		testcert.TLSOption("ca", string(ca.PEM), "cert", string(client.CertPEM), "key", string(client.KeyPEM), "servername", "ilp.peer.example") + `}}`
	o, err := ParseOptions(json.RawMessage(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := o.Outgoing.TLS
	switch {
	case c == nil:
		t.Fatal("TLS not set")
	case c.RootCAs == nil || !c.RootCAs.Equal(ca.Pool()):
		t.Error("RootCAs is not the pool of outgoing.tls.ca")
	case c.GetClientCertificate == nil:
		t.Error("no client certificate")
	case c.ServerName != "ilp.peer.example":
		t.Errorf("ServerName = %q", c.ServerName)
	}
	if o, err := ParseOptions(json.RawMessage(`{"outgoing":{"url":"http://peer","staticToken":"t","tls":null}}`)); err != nil || o.Outgoing.TLS != nil {
		t.Errorf("tls null on http: %v, %+v", err, o)
	}
	for _, tc := range []struct{ name, json, want string }{
		{"plain http", `{"outgoing":{"url":"http://peer:7768/ilp","staticToken":"t","tls":{}}}`,
			"ilphttp: ilp-plugin-http options: outgoing.tls applies to https:// URLs only; outgoing.url is http://peer:7768"},
		{"typo", `{"outgoing":{"url":"https://peer","staticToken":"t","tls":{"keyfile":"/k"}}}`,
			`ilphttp: ilp-plugin-http options: unknown option "outgoing.tls.keyfile" (did you mean "keyFile"?); known options here: ca, caFile, cert, certFile, key, keyFile, servername`},
		{"incoming without a certificate", `{"incoming":{"port":7768,"staticToken":"t","tls":{}}}`, "ilphttp: ilp-plugin-http options: incoming.tls needs the server's certificate: set incoming.tls.cert"},
		{"incoming typo", `{"incoming":{"port":7768,"staticToken":"t","tls":{"ca":"x"}}}`,
			`unknown option "incoming.tls.ca"; known options here: cert, certFile, key, keyFile, clientCa, clientCaFile`},
		{"not an object", `{"outgoing":{"url":"https://peer","staticToken":"t","tls":"-----BEGIN CERTIFICATE-----"}}`, "outgoing.tls must be an object"},
		{"wrong type", `{"outgoing":{"url":"https://peer","staticToken":"t","tls":{"ca":5}}}`, "outgoing.tls: json: cannot unmarshal number"},
		{"bad CA", `{"outgoing":{"url":"https://peer","staticToken":"t","tls":{"ca":"nope"}}}`, "outgoing.tls.ca holds no PEM CERTIFICATE block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseOptions(json.RawMessage(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error %q quotes the PEM", err)
			}
		})
	}
}
