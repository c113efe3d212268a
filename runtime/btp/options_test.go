package btp

import (
	"encoding/json"
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
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"}}`, &PeerServerOptions{Port: 7768, Secret: "s"}, ""},
		{PluginBTP, `{"listener":{"host":"127.0.0.1","port":7768,"secret":"s"},"responseTimeout":1}`,
			&PeerServerOptions{Host: "127.0.0.1", Port: 7768, Secret: "s", Common: Common{ResponseTimeout: time.Millisecond}}, ""},
		{PluginBTP, `{}`, nil, "set server"},
		{PluginBTP, ``, nil, "set server"},
		{PluginBTP, `{"server":"btp+ws://a:b@x","listener":{"port":1,"secret":"s"}}`, nil, "not both"},
		{PluginBTP, `{"server":"ws://a:b@x"}`, nil, "btp+ws://"},
		{PluginBTP, `{"server":"btp+ws://a:b@x","responseTimeout":-1}`, nil, "responseTimeout"},
		{PluginBTP, `{"server":"btp+ws://a:b@x","responseTimeout":1.5}`, nil, "responseTimeout"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s","wsOpts":{"host":"127.0.0.1","port":7000}}}`,
			&PeerServerOptions{Host: "127.0.0.1", Port: 7000, Secret: "s"}, ""},
		{PluginBTP, `{"listener":{"secret":"s","wsOpts":{"port":7000}}}`, &PeerServerOptions{Port: 7000, Secret: "s"}, ""},
		{PluginBTP, `{"listener":{"host":"a","port":1,"secret":"s","wsOpts":{"host":"b"}}}`, nil, "not both"},
		{PluginBTP, `{"listener":{"port":7768}}`, nil, "listener.secret"},
		{PluginBTP, `{"listener":{"port":0,"secret":"s"}}`, nil, "listener.port"},
		{PluginBTP, `{"listener":{"port":7768,"secret":"s"},"reconnectInterval":5}`, nil, "reconnectInterval"},
		{PluginBTP, `{"server":"btp+ws://a:b@x","sevrer":"typo"}`, nil, `unknown field "sevrer"`},
		{PluginBTP, `{"server":"btp+ws://a:b@x"} {}`, nil, "after the JSON"},
		{PluginBTP, `[1]`, nil, "cannot unmarshal"},
		{PluginMiniAccounts, `{}`, &ChildServerOptions{Port: 3000}, ""},
		{PluginMiniAccounts, `{"port":7768}`, &ChildServerOptions{Port: 7768}, ""},
		{PluginMiniAccounts, `{"port":1,"wsOpts":{"host":"0.0.0.0","port":7768},"currencyScale":6,"allowedOrigins":["example.com"],"generateAccount":true}`,
			&ChildServerOptions{Host: "0.0.0.0", Port: 7768, AllowedOrigins: []string{"example.com"}, GenerateAccount: &yes}, ""},
		{PluginMiniAccounts, `{"wsOpts":{"host":"h"}}`, nil, "wsOpts.port"},
		{PluginMiniAccounts, `{"wsOpts":{"port":7768,"perMessageDeflate":true}}`, nil, `unknown field "perMessageDeflate"`},
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
