package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
)

// TestValidateBTPTLSPlace: tls where ParseOptions refuses it (beside a btp+ws:// server or a
// listener) is refused in step 2 as well, as that account's problem (docs/configuration.md:
// the tls option of ilp-plugin-btp is checked in step 2), not left to step 3, which refuses the
// whole config. tls null is no tls, anywhere.
func TestValidateBTPTLSPlace(t *testing.T) {
	for _, tc := range []struct {
		opts, problem string // problem "" when valid
	}{
		{`{"server":"btp+ws://:s3cret@bob.example/btp","tls":{}}`,
			`account "bad": options: ilp-plugin-btp options: tls applies to btp+wss:// URLs only; server is btp+ws://:xxxxx@bob.example/btp`},
		{`{"listener":{"port":7768,"secret":"s3cret"},"tls":{}}`,
			`account "bad": options: ilp-plugin-btp options: tls applies to server (the dialing side); a listener's TLS goes in listener.tls`},
		{`{"server":"btp+ws://:s3cret@bob.example/btp","tls":null}`, ""},
		{`{"listener":{"port":7768,"secret":"s3cret"},"tls":null}`, ""},
		{`{"server":"btp+wss://:s3cret@bob.example/btp","listener":null,"tls":{}}`, ""},
	} {
		c := Defaults()
		c.ILPAddress = "test.me"
		c.Accounts = map[string]Account{"bad": {Relation: RelationPeer, Plugin: PluginBTP, AssetCode: "USD", Options: json.RawMessage(tc.opts)}}
		var msg string
		if err := c.Validate(); err != nil {
			msg = err.Error()
		}
		_, perr := btp.ParseOptions(btp.PluginBTP, json.RawMessage(tc.opts))
		switch {
		case strings.Contains(msg, "s3cret"):
			t.Errorf("%s: error quotes the secret: %s", tc.opts, msg)
		case tc.problem == "" && (msg != "" || perr != nil):
			t.Errorf("%s: Validate: %q, ParseOptions: %v; want both to accept it", tc.opts, msg, perr)
		case tc.problem != "" && !strings.Contains(msg, tc.problem):
			t.Errorf("%s: Validate (step 2): %q, want it to say %q (ParseOptions, step 3: %v)", tc.opts, msg, tc.problem, perr)
		}
	}
}
