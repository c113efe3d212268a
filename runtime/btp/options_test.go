package btp

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	yes := true
	tests := []struct {
		plugin string
		json   string
		want   Options
		err    string // substring of the error, when one is expected
	}{
		{PluginBTP, `{"server":"btp+ws://a:b@peer:7768"}`, &ClientOptions{Server: "btp+ws://a:b@peer:7768"}, ""},
		{PluginBTP, `{"server":"btp+wss://:b@peer/btp","reconnectInterval":500,"responseTimeout":10000}`,
			&ClientOptions{Server: "btp+wss://:b@peer/btp", ReconnectInterval: 500 * time.Millisecond,
				Common: Common{ResponseTimeout: 10 * time.Second}}, ""},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"}}`, &PeerServerOptions{Port: 7768, Secret: "s", portOption: "listener.port"}, ""},
		{PluginBTP, `{"listener":{"host":"127.0.0.1","port":7768,"secret":"s"},"responseTimeout":1}`,
			&PeerServerOptions{Host: "127.0.0.1", Port: 7768, Secret: "s", Common: Common{ResponseTimeout: time.Millisecond}, portOption: "listener.port"}, ""},
		{PluginBTP, `{}`, nil, "set server"},
		{PluginBTP, ``, nil, "set server"},
		{PluginBTP, `{"server":"btp+ws://a:b@x","listener":{"port":1,"secret":"s"}}`, nil, "not both"},
		{PluginBTP, `{"server":"ws://a:b@x"}`, nil, "btp+ws://"},
		{PluginBTP, `{"server":"btp+ws://a:b@x","responseTimeout":-1}`, nil, "responseTimeout"},
		{PluginBTP, `{"server":"btp+ws://a:b@x","responseTimeout":1.5}`, nil, "responseTimeout"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s","wsOpts":{"host":"127.0.0.1","port":7000}}}`,
			&PeerServerOptions{Host: "127.0.0.1", Port: 7000, Secret: "s", portOption: "listener.wsOpts.port"}, ""},
		{PluginBTP, `{"listener":{"secret":"s","wsOpts":{"port":7000}}}`, &PeerServerOptions{Port: 7000, Secret: "s", portOption: "listener.wsOpts.port"}, ""},
		// wsOpts without a port keeps listener.port (the host alone comes from wsOpts).
		{PluginBTP, `{"listener":{"port":7768,"secret":"s","wsOpts":{"host":"127.0.0.1"}}}`,
			&PeerServerOptions{Host: "127.0.0.1", Port: 7768, Secret: "s", portOption: "listener.port"}, ""},
		{PluginBTP, `{"listener":{"host":"a","port":1,"secret":"s","wsOpts":{"host":"b"}}}`, nil, "not both"},
		{PluginBTP, `{"listener":{"port":7768}}`, nil, "listener.secret"},
		{PluginBTP, `{"listener":{"port":0,"secret":"s"}}`, nil, "listener.port"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"},"reconnectInterval":5}`, nil, "reconnectInterval applies to server"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"},"btpToken":"t"}`, nil, "btpToken applies to server"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"},"reconnectIntervals":[]}`, nil, "reconnectIntervals applies to server"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"},"btpAuthFlags":{}}`, nil, "btpAuthFlags applies to server"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"},"reconnectClearTryTimeout":0}`, nil, "reconnectClearTryTimeout applies to server"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"},"btpAccount":null,"reconnectInterval":null}`, &PeerServerOptions{Port: 7768, Secret: "s", portOption: "listener.port"}, ""},
		{PluginBTP, `{"server":"btp+ws://a:b@x","sevrer":"typo"}`, nil, `unknown option "sevrer" (did you mean "server"?); known options here: server, listener,`},
		{PluginBTP, `{"listener":{"port":1,"secert":"s"}}`, nil, `unknown option "listener.secert" (did you mean "secret"?); known options here: port, secret, wsOpts, host`},
		{PluginBTP, `{"listener":{"port":1,"secret":"s","wsOpts":{"port":2,"bakclog":5}}}`, nil, `unknown option "listener.wsOpts.bakclog" (did you mean "backlog"?)`},
		// The JS options of ilp-plugin-btp's client, with their JS units (ms).
		{PluginBTP, `{"server":"btp+ws://peer:7768","btpAccount":"alice","btpToken":"tok"}`,
			&ClientOptions{Server: "btp+ws://peer:7768", Account: "alice", Token: "tok"}, ""},
		{PluginBTP, `{"server":"btp+ws://:t@peer","btpToken":"tok"}`, nil, "not both"},
		{PluginBTP, `{"server":"btp+ws://a@peer","btpAccount":"b"}`, nil, "not both"},
		// JS tests truthiness: an empty btpAccount/btpToken beside the URL's credentials is none.
		{PluginBTP, `{"server":"btp+ws://a:b@peer","btpAccount":"","btpToken":""}`, &ClientOptions{Server: "btp+ws://a:b@peer"}, ""},
		{PluginBTP, `{"server":"btp+ws://:b@peer","btpAccount":""}`, &ClientOptions{Server: "btp+ws://:b@peer"}, ""},
		{PluginBTP, `{"server":"btp+ws://:b@peer","btpAccount":"","btpToken":"t"}`, nil, "not both"},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectIntervals":[0,1000,2000],"reconnectClearTryTimeout":30000}`,
			&ClientOptions{Server: "btp+ws://peer", ReconnectIntervals: []time.Duration{0, time.Second, 2 * time.Second},
				ReconnectClearTryTimeout: 30 * time.Second}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectIntervals":[1000],"reconnectInterval":5}`,
			&ClientOptions{Server: "btp+ws://peer", ReconnectIntervals: []time.Duration{time.Second},
				Ignored: []IgnoredOption{{"reconnectInterval", "reconnectIntervals is set and takes precedence, as in JS"}}}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectClearTryTimeout":5}`, &ClientOptions{Server: "btp+ws://peer",
			Ignored: []IgnoredOption{{"reconnectClearTryTimeout", "it resets the reconnectIntervals schedule, which is not set; ilpfleet's default backoff starts over after each authenticated connection"}}}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectIntervals":[]}`, nil, "at least one"},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectIntervals":[-1]}`, nil, "reconnectIntervals[0]"},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectIntervals":"1000"}`, nil, "cannot unmarshal"},
		// JS reads these with `||` (reconnectInterval with `&&`): 0 is the default. Negatives are refused.
		{PluginBTP, `{"server":"btp+ws://peer","reconnectIntervals":[1000],"reconnectClearTryTimeout":0}`,
			&ClientOptions{Server: "btp+ws://peer", ReconnectIntervals: []time.Duration{time.Second}}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectClearTryTimeout":0}`, &ClientOptions{Server: "btp+ws://peer"}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectClearTryTimeout":-1}`, nil, "reconnectClearTryTimeout must be 0"},
		{PluginBTP, `{"server":"btp+ws://peer","responseTimeout":0}`, &ClientOptions{Server: "btp+ws://peer"}, ""},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"},"responseTimeout":0}`, &PeerServerOptions{Port: 7768, Secret: "s", portOption: "listener.port"}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectInterval":0}`, &ClientOptions{Server: "btp+ws://peer"}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectIntervals":[1000],"reconnectInterval":0}`,
			&ClientOptions{Server: "btp+ws://peer", ReconnectIntervals: []time.Duration{time.Second}}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","reconnectInterval":-1}`, nil, "reconnectInterval must be 0"},
		{PluginBTP, `{"server":"btp+ws://peer","btpAuthFlags":{"z":"text","a":{"k":[1, 2]}}}`,
			&ClientOptions{Server: "btp+ws://peer", AuthFlags: []ProtocolData{
				{Name: "a", ContentType: ContentJSON, Data: []byte(`{"k":[1,2]}`)},
				{Name: "z", ContentType: ContentText, Data: []byte("text")}}}, ""},
		// Only a JSON string is text; null is JSON, as JS sends it (typeof null is 'object').
		{PluginBTP, `{"server":"btp+ws://peer","btpAuthFlags":{"n":null,"e":"","i":7,"b":false}}`,
			&ClientOptions{Server: "btp+ws://peer", AuthFlags: []ProtocolData{
				{Name: "b", ContentType: ContentJSON, Data: []byte(`false`)},
				{Name: "e", ContentType: ContentText, Data: []byte("")},
				{Name: "i", ContentType: ContentJSON, Data: []byte(`7`)},
				{Name: "n", ContentType: ContentJSON, Data: []byte(`null`)}}}, ""},
		{PluginBTP, `{"server":"btp+ws://peer","btpAuthFlags":{"":"x"}}`, nil, "empty name"},
		{PluginBTP, `{"server":"btp+ws://a:b@x"} {}`, nil, "after the JSON"},
		{PluginBTP, `[1]`, nil, "cannot unmarshal"},
		{PluginMiniAccounts, `{}`, &ChildServerOptions{Port: 3000}, ""},
		{PluginMiniAccounts, `{"port":7768}`, &ChildServerOptions{Port: 7768, portOption: "port"}, ""},
		{PluginMiniAccounts, `{"port":1,"wsOpts":{"host":"0.0.0.0","port":7768},"currencyScale":6,"allowedOrigins":["example.com"],"generateAccount":true}`,
			&ChildServerOptions{Host: "0.0.0.0", Port: 7768, AllowedOrigins: []string{"example.com"}, GenerateAccount: &yes, portOption: "wsOpts.port",
				Ignored: []IgnoredOption{{"currencyScale", "mini-accounts keeps it for subclasses that settle; children learn the account's assetScale over IL-DCP"}}}, ""},
		{PluginMiniAccounts, `{"wsOpts":{"host":"h"}}`, nil, "wsOpts.port"},
		{PluginMiniAccounts, `{"wsOpts":{"port":7768,"perMessageDefalte":true}}`, nil, `unknown option "wsOpts.perMessageDefalte" (did you mean "perMessageDeflate"?)`},
		{PluginMiniAccounts, `{"port":7768,"debugHostIldcpInfo":{"clientAddress":"test.x","assetScale":9,"assetCode":"XRP"}}`,
			&ChildServerOptions{Port: 7768, portOption: "port", Ignored: []IgnoredOption{{"debugHostIldcpInfo", "a debugging stand-in for asking the connector over IL-DCP; ilpfleet's connector gives the address and asset directly"}}}, ""},
		{PluginMiniAccounts, `{"generateAcount":true}`, nil, `unknown option "generateAcount" (did you mean "generateAccount"?); known options here: port, wsOpts, currencyScale, debugHostIldcpInfo, allowedOrigins, generateAccount`},
		{PluginMiniAccounts, `{"responseTimeout":1000}`, nil, `unknown option "responseTimeout"`},
		{PluginMiniAccounts, `{"port":70000}`, nil, "between 1 and 65535"},
		{"ilp-plugin-http", `{}`, nil, "not a BTP plugin"},
	}
	for _, tt := range tests {
		got, err := ParseOptions(tt.plugin, json.RawMessage(tt.json))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseOptions(%s, %s) error = %v; want one mentioning %q", tt.plugin, tt.json, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseOptions(%s, %s) = %#v, %v; want %#v", tt.plugin, tt.json, got, err, tt.want)
			continue
		}
		if _, err := New(got); err != nil && tt.plugin == PluginBTP {
			t.Errorf("New(%#v) = %v", got, err)
		}
	}
}

// TestCheckKeysNestedByPath: a rule for nested keys applies at its path only, not wherever an
// object of that name appears.
func TestCheckKeysNestedByPath(t *testing.T) {
	known := []string{"listener", "wsOpts"}
	nested := map[string][]string{"listener": {"wsOpts"}, "listener.wsOpts": {"port"}}
	tests := []struct {
		json string
		err  string // the Path of the *UnknownOptionError, "" for none
	}{
		{`{"listener":{"wsOpts":{"port":1}}}`, ""},
		{`{"listener":{"wsOpts":{"host":"h"}}}`, "listener.wsOpts.host"},
		{`{"wsOpts":{"host":"h"}}`, ""}, // no rule for a top-level wsOpts here
		{`{"listener":{"host":"h"}}`, "listener.host"},
	}
	for _, tt := range tests {
		err := checkKeys("p", "", json.RawMessage(tt.json), known, nested)
		var u *UnknownOptionError
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("checkKeys(%s) = %v; want nil", tt.json, err)
		case tt.err != "" && (!errors.As(err, &u) || u.Path != tt.err):
			t.Errorf("checkKeys(%s) = %v; want an unknown option at %s", tt.json, err, tt.err)
		}
	}
}
