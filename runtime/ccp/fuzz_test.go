package ccp

import (
	"bytes"
	"reflect"
	"testing"
)

// The seeds are encodings built by the codec itself (so that a change to the encoder moves
// the corpus with it), the JS/interledger-rs vectors of codec_test.go, and a few malformed
// shapes the decoders must refuse: forged counts and truncations.

func controlSeeds() []ControlRequest {
	return []ControlRequest{
		{Mode: ModeSync, LastKnownRoutingTableID: TableID{0x70, 0xd1, 0xa1, 0x34}, LastKnownEpoch: 32, Features: []string{"foo", "bar"}},
		{Mode: ModeIdle},
		{Mode: ModeSync, LastKnownEpoch: 1<<32 - 1, Features: []string{"", string(make([]byte, 200))}},
	}
}

func updateSeeds() []UpdateRequest {
	return []UpdateRequest{
		{RoutingTableID: TableID{0x21, 0xe5}, CurrentEpochIndex: 52, FromEpochIndex: 52, ToEpochIndex: 52, HoldDownTime: 30000, Speaker: "example.alice"},
		{
			RoutingTableID: TableID{0xbf, 0xfb}, CurrentEpochIndex: 52, FromEpochIndex: 46, ToEpochIndex: 50, HoldDownTime: 30000,
			Speaker: "example.alice",
			NewRoutes: []Route{
				{Prefix: "example.prefix1", Path: []string{"example.prefix1"}, Auth: [32]byte{0x7a, 0x6c}},
				{Prefix: "example.prefix2", Path: []string{"example.connector1", "example.prefix2"}, Auth: [32]byte{31: 1},
					Props: []Prop{{Meta: PropTransitive | PropUTF8, ID: 0, Value: []byte("hello world")},
						{Meta: PropOptional | PropTransitive | PropPartial, ID: 0xffff, Value: []byte{0xa0, 0xa0}}}},
			},
			WithdrawnRoutes: []string{"example.prefix3", "example.prefix4"},
		},
		{Speaker: "g.x", WithdrawnRoutes: []string{string(make([]byte, 300))}}, // a long-form length
	}
}

func FuzzParseControlRequest(f *testing.F) {
	for _, c := range controlSeeds() {
		enc, _ := c.AppendBinary(nil)
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
	}
	for _, s := range []string{
		"0170d1a134a0df4f47964f6e19e2ab379000000020010203666f6f03626172", // the JS vector
		"0170d1a134a0df4f47964f6e19e2ab37900000002004ffffffff",           // 2^32 features announced
		"0270d1a134a0df4f47964f6e19e2ab3790000000200100",                 // mode 2
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		c, err := ParseControlRequest(b)
		if !bytes.Equal(in, b) {
			t.Fatal("ParseControlRequest modified its input")
		}
		if err != nil {
			if c != nil {
				t.Fatal("a request and an error")
			}
			return
		}
		if c.Mode != ModeIdle && c.Mode != ModeSync {
			t.Fatalf("accepted mode %d", c.Mode)
		}
		enc, _ := c.AppendBinary(nil)
		// OER is canonical and the decoder ignores only trailing bytes (RFC 30 extensibility):
		// what it accepted is the re-encoding followed by whatever came after it.
		if !bytes.HasPrefix(b, enc) {
			t.Fatalf("re-encoding %x is not a prefix of the input %x", enc, b)
		}
		c2, err := ParseControlRequest(enc)
		if err != nil {
			t.Fatalf("re-parse of %x: %v", enc, err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", c, c2)
		}
	})
}

func FuzzParseUpdateRequest(f *testing.F) {
	for _, u := range updateSeeds() {
		enc, _ := u.AppendBinary(nil)
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	for _, s := range []string{
		"21e55f8eabcd4e979ab9bf0ff00a224c00000034000000340000003400007530" + "0d6578616d706c652e616c696365" + "08ffffffffffffffff", // 2^64-1 routes
		"21e55f8eabcd4e979ab9bf0ff00a224c00000034000000340000003400007530" + "0d6578616d706c652e616c696365" + "0100047fffffff",     // 2^31-1 withdrawn
		// One route whose property meta has neither the optional nor the transitive bit.
		"21e55f8eabcd4e979ab9bf0ff00a224c00000034000000340000003400007530" + "0d6578616d706c652e616c696365" + "0101" +
			"0167" + "0100" + "0000000000000000000000000000000000000000000000000000000000000000" + "0101" + "000001" + "0100" + "0100",
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		u, err := ParseUpdateRequest(b)
		if !bytes.Equal(in, b) {
			t.Fatal("ParseUpdateRequest modified its input")
		}
		if err != nil {
			if u != nil {
				t.Fatal("a request and an error")
			}
			return
		}
		if u2 := decodeCopy(t, u); !reflect.DeepEqual(u2, asWritten(u)) {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", asWritten(u), u2)
		}
		// Strings and values are copies: scribbling over the input must not change them.
		scratch := bytes.Clone(b)
		u, _ = ParseUpdateRequest(scratch)
		before := decodeCopy(t, u)
		for i := range scratch {
			scratch[i] ^= 0xff
		}
		if after := decodeCopy(t, u); !reflect.DeepEqual(before, after) {
			t.Fatal("the parsed request aliases its input")
		}
	})
}

// decodeCopy encodes u and parses it back; the encoding must parse, and re-encode to itself.
func decodeCopy(t *testing.T, u *UpdateRequest) *UpdateRequest {
	t.Helper()
	enc, _ := u.AppendBinary(nil)
	u2, err := ParseUpdateRequest(enc)
	if err != nil {
		t.Fatalf("re-parse of %x: %v", enc, err)
	}
	if enc2, _ := u2.AppendBinary(nil); !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding is not stable:\n%x\n%x", enc, enc2)
	}
	return u2
}

// asWritten is u as the encoder writes it: a property that is not optional is marked
// transitive (appendRoute follows the JS writer), every other field unchanged.
func asWritten(u *UpdateRequest) *UpdateRequest {
	w := *u
	w.NewRoutes = make([]Route, len(u.NewRoutes))
	for i, r := range u.NewRoutes {
		r.Props = append([]Prop(nil), r.Props...)
		for j := range r.Props {
			if r.Props[j].Meta&PropOptional == 0 {
				r.Props[j].Meta |= PropTransitive
			}
		}
		w.NewRoutes[i] = r
	}
	if u.NewRoutes == nil {
		w.NewRoutes = nil
	}
	return &w
}
