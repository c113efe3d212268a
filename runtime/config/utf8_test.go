package config

import (
	"strings"
	"testing"
)

// Found by FuzzEnvSetting and FuzzParseAccount: encoding/json replaces invalid UTF-8 with
// U+FFFD, so a value with such bytes used to be accepted with a different value than given.
func TestInvalidUTF8IsRefused(t *testing.T) {
	account := func(code string) string {
		return `{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"` + code + `","assetScale":2,"options":{"secret":"s"}}`
	}
	cases := []struct {
		name, key, value string
		wantErr          bool
	}{
		{"string variable", "CONNECTOR_STORE_PATH", "/var/lib/\xff", true},
		{"host", "CONNECTOR_ADMIN_API_HOST", "\xc3", true},
		{"object variable", "CONNECTOR_BACKEND_CONFIG", "{\"k\":\"\xfe\"}", true},
		{"array variable", "CONNECTOR_DISABLE_MIDDLEWARE", "[\"\xff\"]", true},
		{"account field", "CONNECTOR_ACCOUNTS", `{"a":` + account("US\xffD") + `}`, true},
		{"account id", "CONNECTOR_ACCOUNTS", "{\"a\xff\":" + account("USD") + `}`, true},
		{"UTF-8 path kept", "CONNECTOR_STORE_PATH", "/var/lib/café", false},
		{"UTF-8 account kept", "CONNECTOR_ACCOUNTS", `{"a":` + account("€") + `}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := FromEnv(envOf(base(map[string]string{c.key: c.value})))
			if !c.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if cfg != nil || err == nil || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("got %v, %v; want an error naming %s", cfg, err, c.key)
			}
		})
	}
}

func TestParseAccountRefusesInvalidUTF8(t *testing.T) {
	for _, data := range []string{
		"{\"relation\":\"peer\",\"plugin\":\"p\",\"assetCode\":\"\xff\",\"assetScale\":0}",
		"{\"relation\":\"peer\",\"plugin\":\"p\",\"assetCode\":\"USD\",\"assetScale\":0,\"options\":{\"token\":\"\xf0\x28\"}}",
	} {
		if _, err := ParseAccount("a", []byte(data)); err == nil {
			t.Errorf("ParseAccount(%q) accepted it", data)
		}
	}
	a, err := ParseAccount("a", []byte(`{"relation":"peer","plugin":"p","assetCode":"€","assetScale":0}`))
	if err != nil || a.AssetCode != "€" {
		t.Fatalf("a UTF-8 asset code: %+v, %v", a, err)
	}
}
