package config

import (
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
)

// TestValidateBTPTLSOption: the tls option of an ilp-plugin-btp account is checked with the
// account's other fields, so a bad one (a CA bundle with a certificate that does not parse, say
// a renewed Secret the operator rendered) is that account's problem, not a config the connector
// refuses whole when it builds the links; another account is not named.
func TestValidateBTPTLSOption(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	client := ca.Client(t, "alice")
	unparseable := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}))
	tests := []struct {
		name    string
		tls     string
		problem string // "" when valid
	}{
		{"CA and client certificate", testcert.TLSOption("ca", string(ca.PEM), "cert", string(client.CertPEM), "key", string(client.KeyPEM)), ""},
		{"CA bundle with a certificate that does not parse", testcert.TLSOption("ca", string(ca.PEM)+unparseable),
			`account "bad": options: ilp-plugin-btp options: tls.ca certificate 2 (PEM block 2) cannot be parsed`},
		{"certificate holding its key", testcert.TLSOption("cert", string(client.CertPEM)+string(client.KeyPEM), "key", string(client.KeyPEM)),
			`account "bad": options: ilp-plugin-btp options: tls.cert holds a PRIVATE KEY block`},
		{"unknown key", `{"cafile":"/x"}`, `account "bad": options: ilp-plugin-btp options: unknown option "tls.cafile"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.ILPAddress = "test.me"
			c.Accounts = map[string]Account{
				"bad":  {Relation: RelationPeer, Plugin: PluginBTP, AssetCode: "USD", Options: json.RawMessage(`{"server":"btp+wss://:s3cret@bob.example/btp","tls":` + tc.tls + `}`)},
				"good": {Relation: RelationPeer, Plugin: PluginBTP, AssetCode: "USD", Options: json.RawMessage(`{"server":"btp+wss://:s3cret@carol.example/btp"}`)},
			}
			var msg string
			if err := c.Validate(); err != nil {
				msg = err.Error()
			}
			switch {
			case strings.Contains(msg, "s3cret") || strings.Contains(msg, "-----BEGIN"):
				t.Fatalf("error quotes the options: %s", msg)
			case tc.problem == "" && msg != "":
				t.Fatalf("valid options refused: %s", msg)
			case tc.problem != "" && (!strings.Contains(msg, tc.problem) || strings.Contains(msg, `"good"`)):
				t.Fatalf("error %q, want one saying %q of account bad only", msg, tc.problem)
			}
		})
	}
}
