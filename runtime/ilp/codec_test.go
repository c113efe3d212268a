package ilp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// env builds an envelope around contents, with a canonical length.
func env(typ byte, contents []byte) []byte {
	return AppendVarOctetString([]byte{typ}, contents)
}

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var (
	testExpiry    = time.Date(2017, 12, 23, 1, 21, 40, 549_000_000, time.UTC)
	testCondition = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
)

// prepareFixed is amount 107, the test expiry and condition: the fixed part of a Prepare.
func prepareFixed() []byte {
	b := AppendUint64(nil, 107)
	b = AppendTimestamp(b, testExpiry)
	return append(b, testCondition[:]...)
}

func vs(s string) []byte          { return AppendVarString(nil, s) }
func vo(b []byte) []byte          { return AppendVarOctetString(nil, b) }
func repeat(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

// longAddress is a valid address of n bytes.
func longAddress(n int) string { return "g." + strings.Repeat("x", n-2) }

// wantErr checks err against a sentinel (if any) and a message fragment.
func wantErr(t *testing.T, err, is error, fragment string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", fragment)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("error %q is not %q", err, is)
	}
	if !strings.Contains(err.Error(), fragment) {
		t.Errorf("error %q does not say %q", err, fragment)
	}
}

func TestParsePrepareMalformed(t *testing.T) {
	valid := cat(prepareFixed(), vs("example.alice"), vo([]byte("hi")))
	badTime := cat(AppendUint64(nil, 1), []byte("20171324161432200"), testCondition[:], vs("g.a"), vo(nil))
	tests := []struct {
		name     string
		in       []byte
		is       error
		fragment string
	}{
		{"empty input", nil, ErrShort, "empty input where a Prepare was expected"},
		{"wrong type", env(TypeFulfill, make([]byte, 33)), ErrWrongType, "got Fulfill (13), want Prepare (12)"},
		{"unknown type", env(7, valid), ErrWrongType, "unknown type 7"},
		{"type only", []byte{TypePrepare}, ErrShort, "Prepare envelope"},
		{"envelope longer than input", env(TypePrepare, valid)[:20], ErrShort, "Prepare envelope"},
		{"bytes after the envelope", append(env(TypePrepare, valid), 0), ErrTrailingBytes, "1 bytes follow the"},
		{"non-canonical long length", cat([]byte{TypePrepare, 0x81, byte(len(valid))}, valid), nil, "must use the short form"},
		{"indefinite length", cat([]byte{TypePrepare, 0x80}, valid), nil, "indefinite length"},
		{"length with leading zero", cat([]byte{TypePrepare, 0x82, 0, byte(len(valid))}, valid), nil, "leading zeros"},
		{"contents shorter than fixed fields", env(TypePrepare, make([]byte, 56)), ErrShort, "amount, expiresAt and executionCondition"},
		{"month 13", env(TypePrepare, badTime), ErrInvalidTimestamp, "month 13 is out of range"},
		{"non-digit expiry", env(TypePrepare, cat(AppendUint64(nil, 1), []byte("2017122416143220Z"), testCondition[:], vs("g.a"), vo(nil))), ErrInvalidTimestamp, "byte 16 is not a digit"},
		{"no destination", env(TypePrepare, prepareFixed()), ErrShort, "Prepare destination"},
		{"empty destination", env(TypePrepare, cat(prepareFixed(), vs(""), vo(nil))), ErrInvalidAddress, "address is empty"},
		{"invalid destination", env(TypePrepare, cat(prepareFixed(), vs("example.alice!"), vo(nil))), ErrInvalidAddress, "invalid character '!'"},
		{"destination over 1023", env(TypePrepare, cat(prepareFixed(), vs(longAddress(1024)), vo(nil))), ErrTooLarge, "destination is 1024 bytes, the limit is 1023"},
		{"destination length past end", env(TypePrepare, cat(prepareFixed(), []byte{0x20, 'g', '.'})), ErrShort, "Prepare destination"},
		{"no data", env(TypePrepare, cat(prepareFixed(), vs("g.a"))), ErrShort, "Prepare data"},
		{"data length past end", env(TypePrepare, cat(prepareFixed(), vs("g.a"), []byte{0x05, 1, 2})), ErrShort, "Prepare data"},
		{"data over 32767", env(TypePrepare, cat(prepareFixed(), vs("g.a"), vo(make([]byte, MaxDataSize+1)))), ErrTooLarge, "data is 32768 bytes, the limit is 32767"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePrepare(tt.in)
			if p != nil {
				t.Errorf("got a packet: %+v", p)
			}
			wantErr(t, err, tt.is, tt.fragment)
		})
	}
}

func TestParsePrepareIgnoresExtraContents(t *testing.T) {
	contents := cat(prepareFixed(), vs("g.alice"), vo([]byte("data")), []byte("future field"))
	p, err := ParsePrepare(env(TypePrepare, contents))
	if err != nil {
		t.Fatal(err)
	}
	if p.Destination != "g.alice" || string(p.Data) != "data" || p.Amount != 107 || !p.ExpiresAt.Equal(testExpiry) {
		t.Fatalf("parsed %+v", p)
	}
}

func TestParseFulfillMalformed(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		is       error
		fragment string
	}{
		{"empty input", nil, ErrShort, "Fulfill was expected"},
		{"wrong type", env(TypeReject, nil), ErrWrongType, "got Reject (14), want Fulfill (13)"},
		{"short fulfillment", env(TypeFulfill, make([]byte, 31)), ErrShort, "Fulfill fulfillment"},
		{"no data", env(TypeFulfill, make([]byte, 32)), ErrShort, "Fulfill data"},
		{"data over 32767", env(TypeFulfill, cat(make([]byte, 32), vo(make([]byte, MaxDataSize+1)))), ErrTooLarge, "Fulfill data is 32768 bytes"},
		{"bytes after the envelope", append(env(TypeFulfill, cat(make([]byte, 32), vo(nil))), 1, 2), ErrTrailingBytes, "2 bytes follow the 35-byte Fulfill"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFulfill(tt.in)
			if f != nil {
				t.Errorf("got a packet: %+v", f)
			}
			wantErr(t, err, tt.is, tt.fragment)
		})
	}
}

func TestParseRejectMalformed(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		is       error
		fragment string
	}{
		{"empty input", nil, ErrShort, "Reject was expected"},
		{"wrong type", env(TypePrepare, nil), ErrWrongType, "got Prepare (12), want Reject (14)"},
		{"short code", env(TypeReject, []byte("F0")), ErrShort, "Reject code"},
		{"no triggeredBy", env(TypeReject, []byte("F00")), ErrShort, "Reject triggeredBy"},
		{"invalid triggeredBy", env(TypeReject, cat([]byte("F00"), vs("nope"), vs(""), vo(nil))), ErrInvalidAddress, "unknown scheme"},
		{"triggeredBy over 1023", env(TypeReject, cat([]byte("F00"), vs(longAddress(1024)), vs(""), vo(nil))), ErrTooLarge, "triggeredBy is 1024 bytes"},
		{"no message", env(TypeReject, cat([]byte("F00"), vs("g.a"))), ErrShort, "Reject message"},
		{"message over 8191", env(TypeReject, cat([]byte("F00"), vs("g.a"), vo(repeat('m', MaxMessageSize+1)), vo(nil))), ErrTooLarge, "message is 8192 bytes, the limit is 8191"},
		{"no data", env(TypeReject, cat([]byte("F00"), vs("g.a"), vs("msg"))), ErrShort, "Reject data"},
		{"data over 32767", env(TypeReject, cat([]byte("F00"), vs("g.a"), vs(""), vo(make([]byte, MaxDataSize+1)))), ErrTooLarge, "Reject data is 32768 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseReject(tt.in)
			if r != nil {
				t.Errorf("got a packet: %+v", r)
			}
			wantErr(t, err, tt.is, tt.fragment)
		})
	}
}

// ilp-packet (JS) emits Rejects with an empty triggeredBy: we read them, but never write one.
func TestRejectEmptyTriggeredBy(t *testing.T) {
	b := env(TypeReject, cat([]byte("T01"), vs(""), vs("peer unreachable"), vo(nil)))
	r, err := ParseReject(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != CodePeerUnreachable || r.TriggeredBy != "" || r.Message != "peer unreachable" {
		t.Fatalf("parsed %+v", r)
	}
	_, err = r.MarshalBinary()
	wantErr(t, err, ErrEmptyTriggeredBy, "set it to the address of the node that rejects")
}

func TestParseRejectUnknownCode(t *testing.T) {
	r, err := ParseReject(env(TypeReject, cat([]byte("F42"), vs("g.a"), vs(""), vo(nil))))
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != "F42" || r.Code.Name() != "Unknown Error" {
		t.Fatalf("code %q", r.Code)
	}
}

func TestParseResponseWrongType(t *testing.T) {
	for _, in := range [][]byte{nil, {TypePrepare, 0}, {0xff}} {
		f, r, err := ParseResponse(in)
		if err == nil || f != nil || r != nil {
			t.Errorf("ParseResponse(%x) = %v, %v, %v", in, f, r, err)
		}
	}
	_, _, err := ParseResponse([]byte{9, 0})
	wantErr(t, err, ErrWrongType, "want Fulfill (13) or Reject (14)")
}

func TestEncodeErrors(t *testing.T) {
	okPrepare := func() *Prepare {
		return &Prepare{Amount: 1, ExpiresAt: testExpiry, Destination: "g.bob"}
	}
	okReject := func() *Reject { return &Reject{Code: CodeUnreachable, TriggeredBy: "g.conn", Message: "no route"} }
	tests := []struct {
		name     string
		v        interface{ AppendBinary([]byte) ([]byte, error) }
		is       error
		fragment string
	}{
		{"prepare invalid destination", func() *Prepare { p := okPrepare(); p.Destination = "g."; return p }(), ErrInvalidAddress, "Prepare destination"},
		{"prepare empty destination", func() *Prepare { p := okPrepare(); p.Destination = ""; return p }(), ErrInvalidAddress, "address is empty"},
		{"prepare destination over 1023", func() *Prepare { p := okPrepare(); p.Destination = Address(longAddress(1024)); return p }(), ErrInvalidAddress, "1024 bytes, more than the maximum of 1023"},
		{"prepare data over 32767", func() *Prepare { p := okPrepare(); p.Data = make([]byte, MaxDataSize+1); return p }(), ErrTooLarge, "Prepare data is 32768 bytes"},
		{"prepare expiry after 9999", func() *Prepare {
			p := okPrepare()
			p.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
			return p
		}(), ErrTimestampRange, "Prepare expiresAt"},
		{"prepare expiry before 0000", func() *Prepare { p := okPrepare(); p.ExpiresAt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC); return p }(), ErrTimestampRange, "years 0000-9999"},
		{"fulfill data over 32767", &Fulfill{Data: make([]byte, MaxDataSize+1)}, ErrTooLarge, "Fulfill data is 32768 bytes"},
		{"reject short code", func() *Reject { r := okReject(); r.Code = "F0"; return r }(), ErrInvalidCode, `"F0"`},
		{"reject empty triggeredBy", func() *Reject { r := okReject(); r.TriggeredBy = ""; return r }(), ErrEmptyTriggeredBy, "F02"},
		{"reject invalid triggeredBy", func() *Reject { r := okReject(); r.TriggeredBy = "g.a b"; return r }(), ErrInvalidAddress, "Reject triggeredBy"},
		{"reject message over 8191", func() *Reject { r := okReject(); r.Message = strings.Repeat("m", MaxMessageSize+1); return r }(), ErrTooLarge, "message is 8192 bytes"},
		{"reject data over 32767", func() *Reject { r := okReject(); r.Data = make([]byte, MaxDataSize+1); return r }(), ErrTooLarge, "Reject data is 32768 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := []byte("keep")
			out, err := tt.v.AppendBinary(buf)
			wantErr(t, err, tt.is, tt.fragment)
			if string(out) != "keep" {
				t.Errorf("buffer changed on error: %q", out)
			}
		})
	}
}

func TestPrepareRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 127, 128, 255, 256, 65535 % MaxDataSize, MaxDataSize}
	for _, n := range sizes {
		for _, dest := range []string{"g.a", longAddress(127), longAddress(128), longAddress(MaxAddressSize)} {
			p := &Prepare{
				Amount: ^uint64(0) - uint64(n), ExpiresAt: testExpiry, ExecutionCondition: testCondition,
				Destination: Address(dest), Data: repeat(byte(n), n),
			}
			b, err := p.AppendBinary([]byte("prefix"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatal("AppendBinary lost the prefix")
			}
			got, err := ParsePrepare(b[len("prefix"):])
			if err != nil {
				t.Fatalf("data %d, dest %d: %v", n, len(dest), err)
			}
			if got.Amount != p.Amount || !got.ExpiresAt.Equal(p.ExpiresAt) || got.ExecutionCondition != p.ExecutionCondition ||
				got.Destination != p.Destination || !bytes.Equal(got.Data, p.Data) {
				t.Fatalf("data %d, dest %d: round trip changed the packet", n, len(dest))
			}
		}
	}
}

func TestFulfillRejectRoundTrip(t *testing.T) {
	for _, n := range []int{0, 127, 128, MaxDataSize} {
		f := &Fulfill{Fulfillment: testCondition, Data: repeat(7, n)}
		b, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := ParseResponse(b)
		if err != nil || got.Fulfillment != f.Fulfillment || !bytes.Equal(got.Data, f.Data) {
			t.Fatalf("fulfill %d: %v", n, err)
		}
		r := &Reject{Code: CodeAmountTooLarge, TriggeredBy: Address(longAddress(MaxAddressSize)),
			Message: strings.Repeat("é", n%MaxMessageSize/2), Data: repeat(9, n)}
		b, err = r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		_, gotR, err := ParseResponse(b)
		if err != nil || gotR.Code != r.Code || gotR.TriggeredBy != r.TriggeredBy || gotR.Message != r.Message || !bytes.Equal(gotR.Data, r.Data) {
			t.Fatalf("reject %d: %v", n, err)
		}
	}
}

// The Reject built by Rejectf and returned as an error encodes as is.
func TestRejectfEncodes(t *testing.T) {
	var err error = Rejectf(CodeInsufficientLiquidity, "g.conn", "balance %d would exceed %d", 10, 5)
	var r *Reject
	if !errors.As(err, &r) {
		t.Fatal("not a *Reject")
	}
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseReject(b)
	if err != nil || got.Message != "balance 10 would exceed 5" || got.Code != "T04" {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestSetPrepareAmountAndExpiry(t *testing.T) {
	b := loadHex(t, "ilpjs_prepare")
	newExpiry := time.Date(2030, 2, 28, 23, 59, 59, 999_999_999, time.FixedZone("CET", 3600))
	for _, amount := range []uint64{0, 1, ^uint64(0)} {
		if err := SetPrepareAmount(b, amount); err != nil {
			t.Fatal(err)
		}
		if err := SetPrepareExpiry(b, newExpiry); err != nil {
			t.Fatal(err)
		}
		p, err := ParsePrepare(b)
		if err != nil {
			t.Fatal(err)
		}
		if p.Amount != amount {
			t.Errorf("amount %d, want %d", p.Amount, amount)
		}
		if want := newExpiry.Truncate(time.Millisecond); !p.ExpiresAt.Equal(want) {
			t.Errorf("expiry %s, want %s", p.ExpiresAt, want)
		}
		if p.Destination != "example.alice" {
			t.Errorf("destination changed: %q", p.Destination)
		}
	}
}

func TestSetPrepareErrors(t *testing.T) {
	short := env(TypePrepare, make([]byte, 24))
	fulfill := env(TypeFulfill, make([]byte, 33))
	wantErr(t, SetPrepareAmount(short, 1), ErrShort, "amount, expiresAt and executionCondition")
	wantErr(t, SetPrepareAmount(fulfill, 1), ErrWrongType, "want Prepare")
	wantErr(t, SetPrepareAmount(nil, 1), ErrShort, "empty input")
	wantErr(t, SetPrepareExpiry(short, testExpiry), ErrShort, "amount")
	wantErr(t, SetPrepareExpiry(loadHex(t, "ilpjs_prepare"), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)), ErrTimestampRange, "expiresAt")
	if !bytes.Equal(short, env(TypePrepare, make([]byte, 24))) {
		t.Error("a failed rewrite changed the buffer")
	}
}

func TestAmountTooLargeData(t *testing.T) {
	b := AmountTooLargeData(1000, 999)
	if want := mustHex(t, "00000000000003e8 00000000000003e7"); !bytes.Equal(b, want) {
		t.Fatalf("%x, want %x", b, want)
	}
	got, max, err := ParseAmountTooLargeData(append(b, 0xff)) // extra bytes are ignored
	if err != nil || got != 1000 || max != 999 {
		t.Fatalf("%d %d %v", got, max, err)
	}
	_, _, err = ParseAmountTooLargeData(b[:15])
	wantErr(t, err, nil, "F08 data is 15 bytes, want 16")
}
