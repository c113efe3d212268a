package ilp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// RFC 30 §Length determinant examples, plus the canonical-form rules oer.go enforces.
func TestLengthRFC30(t *testing.T) {
	for hexStr, want := range map[string]int{"07": 7, "00": 0, "7f": 127, "8180": 128, "8182": 130, "821234": 4660, "83ABCDEF": 11259375} {
		b := mustHex(t, hexStr)
		r := NewReader(b)
		if got := r.Length(); got != want || r.Err() != nil || r.Len() != 0 {
			t.Errorf("Length(%s) = %d, %v; want %d", hexStr, got, r.Err(), want)
		}
		if enc := AppendLength(nil, want); !bytes.Equal(enc, b) {
			t.Errorf("AppendLength(%d) = %x, want %x", want, enc, b)
		}
		if LengthSize(want) != len(b) {
			t.Errorf("LengthSize(%d) = %d, want %d", want, LengthSize(want), len(b))
		}
	}
	// The RFC's 8-byte example is legal OER but beyond the 4-byte cap RFC 30 lets us set.
	bad := map[string]string{
		"88AC01055A1DEBAC1E": "length of length 8 is too large",
		"80":                 "indefinite length",
		"817f":               "must use the short form",
		"820080":             "leading zeros",
		"82":                 ErrShort.Error(),
		"":                   ErrShort.Error(),
	}
	for hexStr, fragment := range bad {
		r := NewReader(mustHex(t, hexStr))
		r.Length()
		if r.Err() == nil || !strings.Contains(r.Err().Error(), fragment) {
			t.Errorf("Length(%s): error %v, want %q", hexStr, r.Err(), fragment)
		}
	}
}

func TestUintsRFC30(t *testing.T) {
	r := NewReader(mustHex(t, "00 1234 ABABABAB AC01055A1DEBAC1E"))
	if v := r.Uint8(); v != 0 {
		t.Errorf("UInt8 %d", v)
	}
	if v := r.Bytes(2); !bytes.Equal(v, []byte{0x12, 0x34}) {
		t.Errorf("UInt16 bytes %x", v)
	}
	if v := r.Uint32(); v != 2880154539 {
		t.Errorf("UInt32 %d", v)
	}
	if v := r.Uint64(); v != 12394193534107495454 {
		t.Errorf("UInt64 %d", v)
	}
	if r.Err() != nil || r.Len() != 0 {
		t.Fatal(r.Err())
	}
	if r.Uint8(); !errors.Is(r.Err(), ErrShort) {
		t.Errorf("read past the end: %v", r.Err())
	}
}

// VarUInt zero is 01 00 (CCP/BTP practice), never a zero-length integer.
func TestVarUint(t *testing.T) {
	for v, hexStr := range map[uint64]string{0: "0100", 1: "0101", 255: "01ff", 256: "020100", ^uint64(0): "08ffffffffffffffff"} {
		want := mustHex(t, hexStr)
		if got := AppendVarUint(nil, v); !bytes.Equal(got, want) {
			t.Errorf("AppendVarUint(%d) = %x, want %x", v, got, want)
		}
		r := NewReader(want)
		if got := r.VarUint(); got != v || r.Err() != nil {
			t.Errorf("VarUint(%s) = %d, %v", hexStr, got, r.Err())
		}
	}
	for hexStr, fragment := range map[string]string{"00": "zero length", "020001": "leading zeros", "09010203040506070809": "does not fit"} {
		r := NewReader(mustHex(t, hexStr))
		r.VarUint()
		if r.Err() == nil || !strings.Contains(r.Err().Error(), fragment) {
			t.Errorf("VarUint(%s): %v, want %q", hexStr, r.Err(), fragment)
		}
	}
}
