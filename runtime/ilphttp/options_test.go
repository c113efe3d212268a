package ilphttp

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		check func(t *testing.T, o *Options)
		err   string
	}{
		{"README shape (static tokens)", `{"incoming":{"port":4000,"staticToken":"shhh"},"outgoing":{"url":"https://example.com/ilp","staticToken":"othersecret","name":"alice"}}`,
			func(t *testing.T, o *Options) {
				if o.Mode != ModeSync || o.Incoming.Port != 4000 || o.Incoming.Auth.Token != "shhh" || o.Incoming.Host != "" ||
					o.Outgoing.URL != "https://example.com/ilp" || o.Outgoing.Auth.Token != "othersecret" || o.Outgoing.Name != "alice" || o.Outgoing.RawAuthorization {
					t.Fatalf("%+v %+v %+v", o, o.Incoming, o.Outgoing)
				}
			}, ""},
		{"JWT with expiry", `{"incoming":{"port":4000,"jwtSecret":"a"},"outgoing":{"url":"http://p/","jwtSecret":"b","jwtExpiry":60000,"http2":true,"http2MaxRequestsPerSession":100}}`,
			func(t *testing.T, o *Options) {
				if o.Incoming.Auth.JWTSecret != "a" || o.Outgoing.Auth.JWTSecret != "b" || o.Outgoing.JWTExpiry != time.Minute || !o.Outgoing.HTTP2 {
					t.Fatalf("%+v %+v", o.Incoming, o.Outgoing)
				}
			}, ""},
		{"legacy names send a raw token", `{"incoming":{"port":4000,"secretToken":"a"},"outgoing":{"url":"http://p/","secretToken":"b"}}`,
			func(t *testing.T, o *Options) {
				if o.Incoming.Auth.Token != "a" || o.Outgoing.Auth.Token != "b" || !o.Outgoing.RawAuthorization {
					t.Fatalf("%+v %+v", o.Incoming, o.Outgoing)
				}
			}, ""},
		{"host and async", `{"mode":"async","incoming":{"host":"127.0.0.1","port":4000,"staticToken":"a"},"outgoing":{"url":"http://p/","staticToken":"b","callbackUrl":"http://me:4000/cb"}}`,
			func(t *testing.T, o *Options) {
				if o.Mode != ModeAsync || o.Incoming.Host != "127.0.0.1" || o.Outgoing.CallbackURL != "http://me:4000/cb" {
					t.Fatalf("%+v %+v %+v", o, o.Incoming, o.Outgoing)
				}
			}, ""},
		{"outgoing only", `{"outgoing":{"url":"http://p/","staticToken":"b"}}`, func(t *testing.T, o *Options) {
			if o.Incoming != nil {
				t.Fatal("incoming set")
			}
		}, ""},
		{"ildcp accepted", `{"ildcp":{"clientAddress":"test.x","assetCode":"XRP","assetScale":9},"outgoing":{"url":"http://p/","staticToken":"b"}}`, nil, ""},
		{"empty", `{}`, nil, "set incoming"},
		{"unknown key", `{"incomming":{}}`, nil, "unknown field"},
		{"multi", `{"multi":true,"outgoing":{"url":"http://p/%","staticToken":"b"}}`, nil, "multi (multilateral) mode is not supported"},
		{"no port", `{"incoming":{"staticToken":"a"}}`, nil, "incoming.port must be set"},
		{"port range", `{"incoming":{"port":70000,"staticToken":"a"}}`, nil, "incoming.port must be set"},
		{"no incoming auth", `{"incoming":{"port":4000}}`, nil, "incoming needs staticToken"},
		{"no outgoing auth", `{"outgoing":{"url":"http://p/"}}`, nil, "outgoing needs staticToken"},
		{"both names", `{"incoming":{"port":4000,"staticToken":"a","secretToken":"b"}}`, nil, "not both"},
		{"no url", `{"outgoing":{"staticToken":"b"}}`, nil, "outgoing.url must be set"},
		{"bad url scheme", `{"outgoing":{"url":"btp+ws://p/","staticToken":"b"}}`, nil, "absolute http:// or https://"},
		{"credentials in url", `{"outgoing":{"url":"http://u:p@p/","staticToken":"b"}}`, nil, "must not carry credentials"},
		{"bad mode", `{"mode":"push","outgoing":{"url":"http://p/","staticToken":"b"}}`, nil, `mode must be "sync" or "async"`},
		{"async without incoming", `{"mode":"async","outgoing":{"url":"http://p/","staticToken":"b","callbackUrl":"http://me/"}}`, nil, "needs both incoming"},
		{"async with a Unicode peer host", `{"mode":"async","incoming":{"port":4000,"staticToken":"a"},"outgoing":{"url":"http://b\u00fccher.example/","staticToken":"b","callbackUrl":"http://me/"}}`, nil, "punycode"},
		{"async without callback", `{"mode":"async","incoming":{"port":4000,"staticToken":"a"},"outgoing":{"url":"http://p/","staticToken":"b"}}`, nil, "needs outgoing.callbackUrl"},
		{"jwt expiry too short", `{"outgoing":{"url":"http://p/","jwtSecret":"b","jwtExpiry":10}}`, nil, "jwtExpiry must be between"},
		{"trailing data", `{"outgoing":{"url":"http://p/","staticToken":"b"}} {}`, nil, "data after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOptions(json.RawMessage(tc.json))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}
