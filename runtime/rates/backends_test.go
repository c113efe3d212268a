package rates

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name, backend string
		config        string
		wantName      string
		wantErr       string
	}{
		{"one-to-one no config", "one-to-one", "", "one-to-one", ""},
		{"one-to-one null", "one-to-one", "null", "one-to-one", ""},
		{"one-to-one ignores options", "one-to-one", `{"anything":1}`, "one-to-one", ""},
		{"one-to-one bad json", "one-to-one", `[1`, "", "backendConfig for one-to-one: not a JSON object"},
		{"static", "static", `{"rates":{"USD":1}}`, "static", ""},
		{"ecb", "ecb", "", "ecb", ""},
		{"ecb with a mirror", "ecb", `{"url":"http://127.0.0.1:1/eurofxref-daily.xml"}`, "ecb", ""},
		{"ecb bad config", "ecb", `{"url":""x}`, "", "backendConfig for ecb"},
		{"ecb-plus-xrp", "ecb-plus-xrp", "", "", `backend "ecb-plus-xrp" fetches prices from a public API other than the ECB's`},
		{"ecb-plus-coinmarketcap", "ecb-plus-coinmarketcap", "", "", `use "ecb" for the ECB's currencies, or "static"`},
		{"unknown", "randomizer", "", "", `unknown backend "randomizer"; the backends are: one-to-one, static, ecb`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(tc.backend, json.RawMessage(tc.config))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || b.Name() != tc.wantName {
				t.Fatalf("New = %v, %v; want %s", b, err, tc.wantName)
			}
		})
	}
}

func TestNewStaticErrors(t *testing.T) {
	tests := []struct{ config, want string }{
		{``, "backendConfig for static: want"},
		{`{"rates":{}}`, `"rates" is empty`},
		{`{"rates":{"USD":1},"bse":"EUR"}`, `unknown field "bse"`},
		{`{"rates":{"USD":0}}`, `rates["USD"]: price 0 must be greater than zero`},
		{`{"rates":{"USD":"-1.5"}}`, `must be greater than zero`},
		{`{"rates":{"USD":"abc"}}`, `rates["USD"]: "abc" is not a decimal number`},
		{`{"rates":{"USD":true}}`, `want a number or a decimal string, got true`},
		{`{"rates":{"":1}}`, `empty asset code`},
		{`{"rates":{"A":"x","B":0}}`, `rates["A"]`}, // every bad entry is reported
	}
	for _, tc := range tests {
		_, err := NewStatic(json.RawMessage(tc.config))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewStatic(%s) err = %v, want it to contain %q", tc.config, err, tc.want)
		}
	}
	_, err := NewStatic(json.RawMessage(`{"rates":{"A":"x","B":0}}`))
	if err == nil || !strings.Contains(err.Error(), `rates["B"]`) {
		t.Errorf("second bad entry not reported: %v", err)
	}
}

func TestStaticParsesExactly(t *testing.T) {
	// 1.0000000000000000001 is 1 as a float64; the static backend must keep every digit.
	s, err := NewStatic(json.RawMessage(`{"base":"EUR","rates":{"EUR":5,"A":1.0000000000000000001,"B":"2.5e3"}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ src, dst, want string }{
		{"EUR", "A", "1.0000000000000000001"},
		{"EUR", "B", "2500"},
		{"B", "EUR", "0.0004"},
		{"EUR", "EUR", "1"}, // the base is worth 1, whatever the table said
	}
	for _, tc := range tests {
		got, err := s.Rate(tc.src, tc.dst)
		if err != nil || !got.Equal(decimal.RequireFromString(tc.want)) {
			t.Errorf("Rate(%s, %s) = %s, %v; want %s", tc.src, tc.dst, got, err, tc.want)
		}
	}
	if r, _ := (OneToOne{}).Rate("X", "Y"); !r.Equal(one) {
		t.Errorf("one-to-one Rate = %s", r)
	}
}

func TestRoundSignificant(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0", "0"},
		{"1", "1"},
		{"0.92592592592592592593", "0.925925925925926"},
		{"123456789012345.5", "123456789012346"},
		{"1234567890123455", "1234567890123460"},
		{"0.00000009240740740740482", "0.0000000924074074074048"},
		{"9.999999999999999", "10"},
		{"0.1234567890123445", "0.123456789012345"}, // a 5 in the 16th digit rounds up (half-up)
	}
	for _, tc := range tests {
		got := roundSignificant(decimal.RequireFromString(tc.in), 15)
		if !got.Equal(decimal.RequireFromString(tc.want)) {
			t.Errorf("roundSignificant(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
