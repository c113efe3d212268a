package settlement

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestQuantityUnmarshalJSON(t *testing.T) {
	cases := []struct {
		name, in string
		want     Quantity
		err      string // a part of the error; "" when the input is valid
	}{
		{"valid", `{"amount":"254","scale":2}`, Quantity{"254", 2}, ""},
		{"unknown keys ignored", `{"amount":"254","scale":2,"note":"x"}`, Quantity{"254", 2}, ""},
		{"leading zeros kept as written", `{"amount":"007","scale":0}`, Quantity{"007", 0}, ""},
		// Found by FuzzQuantityJSON: encoding/json matches keys case-insensitively, so a
		// differently spelt key used to replace the amount or scale an RFC 38 engine meant.
		{"other spelling of scale ignored", `{"amount":"5","scale":2,"Scale":3}`, Quantity{"5", 2}, ""},
		{"other spelling of amount ignored", `{"amount":"5","AMOUNT":"7","scale":2}`, Quantity{"5", 2}, ""},
		{"only other spellings", `{"Amount":"0","sCAle":10}`, Quantity{}, `"amount" is missing`},
		{"scale spelt otherwise", `{"amount":"5","Scale":2}`, Quantity{}, `"scale" is missing`},
		{"null scale", `{"amount":"5","scale":null}`, Quantity{}, `"scale" is missing`},
		{"null amount", `{"amount":null,"scale":2}`, Quantity{}, `"amount" is missing`},
		{"number amount", `{"amount":5,"scale":2}`, Quantity{}, `"amount"`},
		{"fractional scale", `{"amount":"5","scale":2.5}`, Quantity{}, `"scale"`},
		{"scale 256", `{"amount":"5","scale":256}`, Quantity{}, "want 0 to 255"},
		{"negative amount", `{"amount":"-5","scale":2}`, Quantity{}, "digits only"},
		{"not an object", `[1]`, Quantity{}, "quantity:"},
		{"null", `null`, Quantity{}, `"amount" is missing`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var q Quantity
			err := json.Unmarshal([]byte(c.in), &q)
			switch {
			case c.err == "" && (err != nil || q != c.want):
				t.Fatalf("got %+v, %v; want %+v", q, err, c.want)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("got %+v, %v; want an error containing %q", q, err, c.err)
			}
		})
	}
}
