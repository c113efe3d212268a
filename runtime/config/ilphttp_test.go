package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestValidateHTTPPluginOptions: ilp-plugin-http accounts have their options checked at load,
// and the error never echoes the options (they hold tokens).
func TestValidateHTTPPluginOptions(t *testing.T) {
	tests := []struct {
		name    string
		options string
		problem string // "" when the options are valid
	}{
		{"valid", `{"incoming":{"port":4000,"staticToken":"s3cret"},"outgoing":{"url":"http://peer:4000/ilp","staticToken":"t0ken"}}`, ""},
		{"unknown key", `{"incoming":{"port":4000,"staticToken":"s3cret","prot":1}}`, "unknown field"},
		{"missing url", `{"outgoing":{"staticToken":"s3cret"}}`, "outgoing.url must be set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Env: EnvTest, ILPAddress: "test.me", Accounts: map[string]Account{
				"peer": {Relation: RelationPeer, Plugin: PluginHTTP, AssetCode: "USD", Options: json.RawMessage(tc.options)},
			}}
			err := c.Validate()
			var msg string
			if err != nil {
				msg = err.Error()
			}
			if strings.Contains(msg, "s3cret") {
				t.Fatalf("error echoes a token: %s", msg)
			}
			if tc.problem == "" && strings.Contains(msg, "options") {
				t.Fatalf("valid options refused: %s", msg)
			}
			if tc.problem != "" && !strings.Contains(msg, tc.problem) {
				t.Fatalf("error %q, want one saying %q", msg, tc.problem)
			}
		})
	}
}
