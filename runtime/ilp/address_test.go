package ilp

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateAddress(t *testing.T) {
	// The valid and invalid lists of ILPJS packages/ilp-packet/test/parser.spec.ts.
	valid := []string{
		"test.alice.XYZ.1234.-_~",
		"g.us-fed.ach.0.acmebank.swx0a0.acmecorp.sales.199.~ipr.cdfa5e16-e759-4ba3-88f6-8b9dc83c1868.2",
		"g.A", "private.A", "example.A", "peer.A", "self.A", "test.A", "test1.A", "test2.A", "test3.A", "local.A",
		"peer.config", "peer.route.control",
		longAddress(1023),
	}
	for _, s := range valid {
		if err := ValidateAddress(s); err != nil {
			t.Errorf("ValidateAddress(%.40q): %v", s, err)
		}
	}
	invalid := []struct{ in, fragment string }{
		{"", "address is empty"},
		{"test.alice 123", "invalid character ' ' at byte 10"},
		{"test.alice!123", "invalid character '!'"},
		{"test.alice/123", "invalid character '/'"},
		{"test.alic\xF0", "invalid character 0xf0 at byte 9"},
		{"test", "scheme but no segment"},
		{"what.alice", `unknown scheme "what"`},
		{"test4.alice", `unknown scheme "test4"`},
		{"G.alice", `unknown scheme "G"`},
		{"test.", "ends with an empty segment"},
		{"test.alice.", "ends with an empty segment"},
		{".test.alice", `unknown scheme ""`},
		{"test..alice", "empty segment before byte 5"},
		{longAddress(1024), "1024 bytes, more than the maximum of 1023"},
	}
	for _, tt := range invalid {
		err := ValidateAddress(tt.in)
		if err == nil {
			t.Errorf("ValidateAddress(%.40q) accepted it", tt.in)
			continue
		}
		var ae *AddressError
		if !errors.As(err, &ae) || !errors.Is(err, ErrInvalidAddress) {
			t.Errorf("%q: error %T is not an *AddressError", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.fragment) {
			t.Errorf("ValidateAddress(%.40q) = %q, want it to say %q", tt.in, err, tt.fragment)
		}
	}
}

func TestAddressErrorShortensLongAddresses(t *testing.T) {
	err := ValidateAddress(longAddress(1024))
	if len(err.Error()) > 300 {
		t.Fatalf("message of %d bytes: %s", len(err.Error()), err)
	}
}

func TestAddressHasPrefix(t *testing.T) {
	tests := []struct {
		a, prefix Address
		want      bool
	}{
		{"g.alice", "g.alice", true},
		{"g.alice.bob", "g.alice", true},
		{"g.alice2", "g.alice", false},
		{"g.alice2.x", "g.alice", false},
		{"g.alic", "g.alice", false},
		{"g.alice", "", true},
		{"g.alice", "g", true},
		{"g.alice", "g.", true},
		{"g.alice", "g.ali", false},
		{"test.alice", "test1", false},
	}
	for _, tt := range tests {
		if got := tt.a.HasPrefix(tt.prefix); got != tt.want {
			t.Errorf("%q.HasPrefix(%q) = %v, want %v", tt.a, tt.prefix, got, tt.want)
		}
	}
}

func TestAddressScheme(t *testing.T) {
	for a, want := range map[Address]string{"g.us.bob": "g", "test3.x": "test3", "peer.config": "peer", "nodot": "nodot", "": ""} {
		if got := a.Scheme(); got != want {
			t.Errorf("%q.Scheme() = %q, want %q", a, got, want)
		}
	}
}

func TestCheckNetwork(t *testing.T) {
	tests := []struct {
		a        Address
		env      string
		fragment string // "" when allowed
	}{
		{"g.alice", EnvProduction, ""},
		{"g.alice", EnvTest, "not allowed on the test network"},
		{"test.alice", EnvTest, ""},
		{"test2.alice", EnvTest, ""},
		{"test.alice", EnvProduction, "test. (test network) address is not allowed on the production network"},
		{"test3.alice", EnvProduction, "test3."},
		{"private.x", EnvProduction, ""},
		{"private.x", EnvTest, ""},
		{"local.x", EnvProduction, ""},
		{"peer.config", EnvTest, ""},
		{"example.x", EnvProduction, ""},
		{"g.alice", "prod", `unknown network environment "prod"`},
		{"test.alice", "", `unknown network environment ""`},
	}
	for _, tt := range tests {
		err := CheckNetwork(tt.a, tt.env)
		switch {
		case tt.fragment == "" && err != nil:
			t.Errorf("CheckNetwork(%q, %q): %v", tt.a, tt.env, err)
		case tt.fragment != "" && (err == nil || !strings.Contains(err.Error(), tt.fragment)):
			t.Errorf("CheckNetwork(%q, %q) = %v, want %q", tt.a, tt.env, err, tt.fragment)
		}
	}
}

// RFC 30 §ILP Address: encodings of a short address and of a 130-byte one (long-form length).
func TestAddressEncodingRFC30(t *testing.T) {
	long := "example.very.long.address.to.exceed.127.characters.and.trigger.a.long.form.length.determinant.to.show.how.that.works.great.as.well"
	tests := []struct {
		addr string
		hex  string
	}{
		{"example.top.middle.lower", "18 6578616d706c652e746f702e6d6964646c652e6c6f776572"},
		{long, "8182" + strings.ReplaceAll("6578 616D706C 652E7665 72792E6C 6F6E672E 61646472 6573732E 746F2E65 78636565 642E3132 372E6368 61726163 74657273 2E616E64 2E747269 67676572 2E612E6C 6F6E672E 666F726D 2E6C656E 6774682E 64657465 726D696E 616E742E 746F2E73 686F772E 686F772E 74686174 2E776F72 6B732E67 72656174 2E61732E 77656C6C", " ", "")},
	}
	for _, tt := range tests {
		if err := ValidateAddress(tt.addr); err != nil {
			t.Fatal(err)
		}
		want := mustHex(t, tt.hex)
		if got := AppendVarString(nil, tt.addr); string(got) != string(want) {
			t.Errorf("encoding of %q\n got %x\nwant %x", tt.addr, got, want)
		}
		r := NewReader(want)
		if got := string(r.VarOctetString()); got != tt.addr || r.Err() != nil || r.Len() != 0 {
			t.Errorf("decoding: %q %v", got, r.Err())
		}
	}
}
