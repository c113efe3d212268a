package btp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// jsProtocols are the four entries of btp-packet's test vectors (test/index.spec.ts).
var jsProtocols = []ProtocolData{
	{Name: "ilp", ContentType: ContentOctetStream, Data: []byte{}},
	{Name: "foo", ContentType: ContentOctetStream, Data: []byte("bar")},
	{Name: "beep", ContentType: ContentText, Data: []byte("boop")},
	{Name: "json", ContentType: ContentJSON, Data: []byte("{}")},
}

const jsProtocolsHex = "0104" + "03696c700000" + "03666f6f0003626172" + "04626565700104626f6f70" + "046a736f6e02027b7d"

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameVectors(t *testing.T) {
	jsTime := time.Date(2017, 8, 28, 18, 32, 0, 0, time.UTC)
	rsTime := time.Date(2018, 8, 31, 2, 53, 24, 899e6, time.UTC)
	tests := []struct {
		name  string
		hex   string
		frame Frame
	}{
		{"js response", "0100000001" + "25" + jsProtocolsHex, Frame{Type: TypeResponse, RequestID: 1, Protocols: jsProtocols}},
		{"js message", "0600000001" + "25" + jsProtocolsHex, Frame{Type: TypeMessage, RequestID: 1, Protocols: jsProtocols}},
		{"js transfer", "0700000001" + "2d" + "0000000000000064" + jsProtocolsHex,
			Frame{Type: TypeTransfer, RequestID: 1, Amount: 100, Protocols: jsProtocols}},
		{"js error", "0200000001" + "4a" + "4c3133" + "096572726f724e616d65" + "13" + hex.EncodeToString([]byte("20170828183200.000Z")) +
			"03626f6f" + jsProtocolsHex,
			Frame{Type: TypeError, RequestID: 1, Code: "L13", Name: "errorName", TriggeredAt: jsTime, ErrorData: []byte("boo"), Protocols: jsProtocols}},
		{"rust message", "060000000217010204746573740002ffff0474657874010568656c6c6f", Frame{Type: TypeMessage, RequestID: 2, Protocols: []ProtocolData{
			{Name: "test", ContentType: ContentOctetStream, Data: []byte{0xff, 0xff}},
			{Name: "text", ContentType: ContentText, Data: []byte("hello")},
		}}},
		{"rust error", "02000000012c" + hex.EncodeToString([]byte("T00")) + "10" + hex.EncodeToString([]byte("UnreachableError")) +
			"13" + hex.EncodeToString([]byte("20180831025324.899Z")) + "0101" + "0100",
			Frame{Type: TypeError, RequestID: 1, Code: "T00", Name: "UnreachableError", TriggeredAt: rsTime, ErrorData: []byte{1}, Protocols: []ProtocolData{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := mustHex(t, tt.hex)
			var got Frame
			if err := ParseFrame(wire, &got); err != nil {
				t.Fatalf("ParseFrame: %v", err)
			}
			if !got.TriggeredAt.Equal(tt.frame.TriggeredAt) {
				t.Errorf("TriggeredAt = %v, want %v", got.TriggeredAt, tt.frame.TriggeredAt)
			}
			got.TriggeredAt = tt.frame.TriggeredAt
			if !reflect.DeepEqual(normalize(got), normalize(tt.frame)) {
				t.Errorf("ParseFrame =\n%+v\nwant\n%+v", got, tt.frame)
			}
			enc, err := AppendFrame(nil, &tt.frame)
			if err != nil {
				t.Fatalf("AppendFrame: %v", err)
			}
			if !bytes.Equal(enc, wire) {
				t.Errorf("AppendFrame =\n%x\nwant\n%x", enc, wire)
			}
		})
	}
}

// normalize makes nil and empty slices compare equal.
func normalize(f Frame) Frame {
	if len(f.ErrorData) == 0 {
		f.ErrorData = nil
	}
	ps := make([]ProtocolData, len(f.Protocols))
	for i, p := range f.Protocols {
		if len(p.Data) == 0 {
			p.Data = nil
		}
		ps[i] = p
	}
	f.Protocols = ps
	return f
}

func TestParseFrameMalformed(t *testing.T) {
	tests := []struct {
		name string
		hex  string
		is   error  // errors.Is target, or nil
		has  string // substring of the message
	}{
		{"empty", "", ilp.ErrShort, "envelope"},
		{"header only", "0100000001", ilp.ErrShort, "envelope"},
		{"contents cut", "01000000010501", ilp.ErrShort, "envelope"},
		{"no protocol count", "010000000100", ilp.ErrShort, "type 1"},
		{"entry cut", "01000000010401010369", ilp.ErrShort, "entry 0"},
		{"count has leading zero", "0100000001030200" + "01", nil, "leading zeros"},
		{"too many entries", "0100000001030201ff", nil, "at most 256"},
		{"transfer without amount", "0700000001020100", ilp.ErrShort, "type 7"},
		{"unknown type", "0900000007020100", ErrUnknownType, "type 9 (request 7)"},
		{"btp 1.0 prepare", "0300000007020100", ErrUnknownType, "type 3"},
		{"non-canonical length", "01000000018102" + "0100", nil, "short form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			err := ParseFrame(mustHex(t, tt.hex), &f)
			if err == nil {
				t.Fatalf("ParseFrame accepted %s: %+v", tt.hex, f)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.has) {
				t.Errorf("error %q does not mention %q", err, tt.has)
			}
		})
	}
}

func TestParseFrameLenient(t *testing.T) {
	// Bytes after the protocol data and after the envelope are ignored (RFC 30); an Error with
	// an unreadable triggeredAt is still read.
	tests := []struct {
		name string
		hex  string
	}{
		{"extra bytes in contents", "0100000001030100ff"},
		{"extra bytes after envelope", "01000000010201007777"},
		{"bad triggeredAt", "0200000001" + "0d" + "463030" + "00" + "056e6f772121" + "00" + "0100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			if err := ParseFrame(mustHex(t, tt.hex), &f); err != nil {
				t.Fatalf("ParseFrame: %v", err)
			}
		})
	}
}

func TestFrameSizeLimits(t *testing.T) {
	big := Frame{Type: TypeMessage, Protocols: []ProtocolData{{Name: "ilp", Data: make([]byte, MaxFrameSize)}}}
	if _, err := AppendFrame(nil, &big); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("AppendFrame of a huge frame: %v, want ErrFrameTooLarge", err)
	}
	var f Frame
	if err := ParseFrame(make([]byte, MaxFrameSize+1), &f); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("ParseFrame of a huge input: %v, want ErrFrameTooLarge", err)
	}
	bad := []Frame{
		{Type: TypeError, Code: "F0"},
		{Type: TypeError, Code: "F00", ErrorData: make([]byte, maxErrorData+1)},
		{Type: 9},
	}
	for _, f := range bad {
		if _, err := AppendFrame(nil, &f); err == nil {
			t.Errorf("AppendFrame(%+v) succeeded", f)
		}
	}
}

func TestRoundTripManyEntries(t *testing.T) {
	ps := make([]ProtocolData, 200)
	for i := range ps {
		ps[i] = ProtocolData{Name: strings.Repeat("p", i%130), ContentType: ContentType(i % 3), Data: bytes.Repeat([]byte{byte(i)}, i)}
	}
	in := Frame{Type: TypeTransfer, RequestID: 0xdeadbeef, Amount: 1<<64 - 1, Protocols: ps}
	b, err := AppendFrame(nil, &in)
	if err != nil {
		t.Fatal(err)
	}
	var out Frame
	if err := ParseFrame(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(in), normalize(out)) {
		t.Error("round trip changed the frame")
	}
}

func TestGeneralizedTime(t *testing.T) {
	base := time.Date(2017, 12, 24, 16, 14, 32, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"20171224161432Z", base, true},
		{"20171224161432.2Z", base.Add(200 * time.Millisecond), true},
		{"20171224161432.27Z", base.Add(270 * time.Millisecond), true},
		{"20171224161432.279Z", base.Add(279 * time.Millisecond), true},
		{"20171224161432.000Z", base, true},
		{"20161231235960Z", time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC), true}, // leap second
		{"20171224161432", time.Time{}, false},
		{"20171224161432.Z", time.Time{}, false},
		{"20171224161432.2790Z", time.Time{}, false},
		{"2017122416143Z", time.Time{}, false},
		{"20171324161432Z", time.Time{}, false},
		{"2017122416143aZ", time.Time{}, false},
		{"", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := ParseGeneralizedTime([]byte(tt.in))
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("ParseGeneralizedTime(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	enc := appendGeneralizedTime(nil, base.Add(5*time.Millisecond).In(time.FixedZone("x", 3600)))
	if string(enc[1:]) != "20171224161432.005Z" || int(enc[0]) != len(enc)-1 {
		t.Errorf("appendGeneralizedTime = %q", enc)
	}
}

func TestAppendILPFrameMatchesAppendFrame(t *testing.T) {
	for _, n := range []int{0, 10, 100, 127, 128, 300, 32767} {
		ful := &ilp.Fulfill{Data: bytes.Repeat([]byte{7}, n)}
		pkt, err := ful.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		want, err := AppendFrame(nil, &Frame{Type: TypeResponse, RequestID: 42, Protocols: []ProtocolData{{Name: "ilp", Data: pkt}}})
		if err != nil {
			t.Fatal(err)
		}
		prefix := []byte("keep")
		got, err := appendILPFrame(prefix, TypeResponse, 42, ful)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("data %d: appendILPFrame =\n%x\nwant\n%x", n, got, want)
		}
		if string(prefix) != "keep" {
			t.Errorf("appendILPFrame overwrote the bytes before it")
		}
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 1, 2, 1, 0})
	f.Add([]byte{2, 0, 0, 0, 1, 5, 'F', '0', '0', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Frame
		if ParseFrame(b, &fr) != nil {
			return
		}
		enc, err := AppendFrame(nil, &fr)
		if err != nil {
			return // what the reader accepts and the writer refuses (AppendFrame is the stricter)
		}
		var again Frame
		if err := ParseFrame(enc, &again); err != nil {
			t.Fatalf("re-parse of %x: %v", enc, err)
		}
	})
}
