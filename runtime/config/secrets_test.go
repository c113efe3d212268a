package config

import (
	"strings"
	"testing"
)

// TestExcerptShowsNoSecret: the excerpt of a JSON syntax error shows no secret, however it is
// written: the excerpt shows the structure only (jsonShape), as no pattern finds secrets in
// text that is not valid JSON.
func TestExcerptShowsNoSecret(t *testing.T) {
	accts := func(opts string) string {
		return `{"a":{"relation":"child","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,"options":` + opts + `}}`
	}
	for name, v := range map[string]string{
		"single-quoted secret (JS habit)":  accts(`{"listener":{"port":7768,"secret":'HUNTER2'}}`),
		"unquoted secret":                  accts(`{"listener":{"port":7768,"secret":HUNTER2}}`),
		"URL password holding @":           accts(`{"server":"btp+ws://:p@HUNTER2@up:7768",}`),
		"URL with escaped slashes":         accts(`{"server":"btp+ws:\/\/:HUNTER2@up:7768",}`),
		"URL password with escaped quote":  accts(`{"server":"btp+ws://:HUNTER2\"x@up:7768",}`),
		"secret key with a unicode escape": accts(`{"listener":{"port":7768,"s\u0065cret":"HUNTER2",}}`),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := FromEnv(envOf(base(map[string]string{"CONNECTOR_ACCOUNTS": v})))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "HUNTER2") {
				t.Errorf("secret in the message: %v", err)
			}
		})
	}
}

// TestNonObjectSettingShowsNoSecret: a settlementEngine written as a URL string (not the
// {"url": …} object) is named by its kind, not quoted with its password; Validate redacts the
// same URL (settlement.RedactURL) when it is given as an object.
func TestNonObjectSettingShowsNoSecret(t *testing.T) {
	v := `{"a":{"relation":"peer","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,` +
		`"settlementEngine":"http://u:HUNTER2@eng:3000","options":{"server":"btp+ws://:x@h:1"}}}`
	_, err := FromEnv(envOf(base(map[string]string{"CONNECTOR_ACCOUNTS": v})))
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "HUNTER2") {
		t.Errorf("secret in the message: %v", err)
	}
}
