package ilp

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The codec of RFC 27 packets. Every packet is an envelope: a type byte, then its contents as a
// var-octet-string. Parsing is strict where ambiguity would hurt (canonical lengths, the
// envelope must be the whole input, size limits, valid addresses and timestamps) and lenient
// where RFC 30 asks for it: bytes after the last known field inside the contents are ignored,
// so that future fields do not break us. Parsed packets alias the input: Data is a sub-slice of
// it, not a copy.

// Errors of the codec, for errors.Is. Messages say which packet and field was at fault.
var (
	ErrWrongType        = errors.New("ilp: wrong packet type")
	ErrTrailingBytes    = errors.New("ilp: bytes after the end of the packet")
	ErrTooLarge         = errors.New("ilp: field is larger than its limit")
	ErrEmptyTriggeredBy = errors.New("ilp: Reject triggeredBy is empty")
	ErrInvalidCode      = errors.New("ilp: Reject code is not 3 bytes")
)

// The packets implement the standard encoding interfaces.
var (
	_ encoding.BinaryAppender  = (*Prepare)(nil)
	_ encoding.BinaryMarshaler = (*Prepare)(nil)
	_ encoding.BinaryAppender  = (*Fulfill)(nil)
	_ encoding.BinaryMarshaler = (*Fulfill)(nil)
	_ encoding.BinaryAppender  = (*Reject)(nil)
	_ encoding.BinaryMarshaler = (*Reject)(nil)
)

// typeName names a packet type for error messages.
func typeName(t byte) string {
	switch t {
	case TypePrepare:
		return "Prepare"
	case TypeFulfill:
		return "Fulfill"
	case TypeReject:
		return "Reject"
	}
	return fmt.Sprintf("unknown type %d", t)
}

// envelope checks the type byte and returns the contents of the packet in b.
func envelope(b []byte, want byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("ilp: empty input where a %s was expected: %w", typeName(want), ErrShort)
	}
	if b[0] != want {
		return nil, fmt.Errorf("%w: got %s (%d), want %s (%d)", ErrWrongType, typeName(b[0]), b[0], typeName(want), want)
	}
	r := Reader{b: b[1:]}
	c := r.VarOctetString()
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("ilp: %s envelope: %w", typeName(want), err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes follow the %d-byte %s", ErrTrailingBytes, r.Len(), len(b)-r.Len(), typeName(want))
	}
	return c, nil
}

// fieldErr wraps a Reader failure with the packet and field it happened in.
func fieldErr(packet byte, field string, err error) error {
	return fmt.Errorf("ilp: %s %s: %w", typeName(packet), field, err)
}

// sizeErr reports a field over its ASN.1 size limit.
func sizeErr(packet byte, field string, n, limit int) error {
	return fmt.Errorf("%w: %s %s is %d bytes, the limit is %d", ErrTooLarge, typeName(packet), field, n, limit)
}

// readData reads the data field that ends every packet.
func readData(r *Reader, packet byte) ([]byte, error) {
	data := r.VarOctetString()
	if err := r.Err(); err != nil {
		return nil, fieldErr(packet, "data", err)
	}
	if len(data) > MaxDataSize {
		return nil, sizeErr(packet, "data", len(data), MaxDataSize)
	}
	return data, nil
}

// readAddress reads a var-string address; empty is allowed only if emptyOK.
func readAddress(r *Reader, packet byte, field string, emptyOK bool) (Address, error) {
	raw := r.VarOctetString()
	if err := r.Err(); err != nil {
		return "", fieldErr(packet, field, err)
	}
	if len(raw) > MaxAddressSize {
		return "", sizeErr(packet, field, len(raw), MaxAddressSize)
	}
	if len(raw) == 0 && emptyOK {
		return "", nil
	}
	s := string(raw) // a copy: an Address must not change if the caller reuses its buffer
	if err := ValidateAddress(s); err != nil {
		return "", fmt.Errorf("ilp: %s %s: %w", typeName(packet), field, err)
	}
	return Address(s), nil
}

// ParsePrepare parses an ILP Prepare. Data aliases b.
func ParsePrepare(b []byte) (*Prepare, error) {
	c, err := envelope(b, TypePrepare)
	if err != nil {
		return nil, err
	}
	if len(c) < staticPrepareSize {
		return nil, fieldErr(TypePrepare, "amount, expiresAt and executionCondition", ErrShort)
	}
	p := &Prepare{Amount: binary.BigEndian.Uint64(c[0:8])}
	if p.ExpiresAt, err = ParseTimestamp(c[8:25]); err != nil {
		return nil, fmt.Errorf("ilp: Prepare expiresAt: %w", err)
	}
	copy(p.ExecutionCondition[:], c[25:staticPrepareSize])
	r := Reader{b: c[staticPrepareSize:]}
	if p.Destination, err = readAddress(&r, TypePrepare, "destination", false); err != nil {
		return nil, err
	}
	if p.Data, err = readData(&r, TypePrepare); err != nil {
		return nil, err
	}
	return p, nil
}

// contentLen is the size of the Prepare contents (without the envelope).
func (p *Prepare) contentLen() int {
	return staticPrepareSize + LengthSize(len(p.Destination)) + len(p.Destination) +
		LengthSize(len(p.Data)) + len(p.Data)
}

// AppendBinary appends the encoded Prepare to b. It refuses an invalid destination, data over
// 32767 bytes and an expiry outside the years 0000-9999; b is returned unchanged then. With
// enough capacity in b it does not allocate.
func (p *Prepare) AppendBinary(b []byte) ([]byte, error) {
	if err := ValidateAddress(string(p.Destination)); err != nil {
		return b, fmt.Errorf("ilp: Prepare destination: %w", err)
	}
	if len(p.Data) > MaxDataSize {
		return b, sizeErr(TypePrepare, "data", len(p.Data), MaxDataSize)
	}
	if !timestampInRange(p.ExpiresAt) {
		return b, fmt.Errorf("ilp: Prepare expiresAt %s: %w", p.ExpiresAt.Format(time.RFC3339), ErrTimestampRange)
	}
	n := p.contentLen()
	b = slices.Grow(b, 1+LengthSize(n)+n)
	b = AppendLength(append(b, TypePrepare), n)
	b = AppendUint64(b, p.Amount)
	b = AppendTimestamp(b, p.ExpiresAt)
	b = append(b, p.ExecutionCondition[:]...)
	b = AppendVarString(b, string(p.Destination))
	return AppendVarOctetString(b, p.Data), nil
}

// MarshalBinary encodes the Prepare into a new buffer of the exact size.
func (p *Prepare) MarshalBinary() ([]byte, error) {
	n := p.contentLen()
	return p.AppendBinary(make([]byte, 0, 1+LengthSize(n)+n))
}

// ParseFulfill parses an ILP Fulfill. Data aliases b.
func ParseFulfill(b []byte) (*Fulfill, error) {
	c, err := envelope(b, TypeFulfill)
	if err != nil {
		return nil, err
	}
	r := Reader{b: c}
	fulfillment := r.Bytes(FulfillmentSize)
	if err := r.Err(); err != nil {
		return nil, fieldErr(TypeFulfill, "fulfillment", err)
	}
	f := &Fulfill{}
	copy(f.Fulfillment[:], fulfillment)
	if f.Data, err = readData(&r, TypeFulfill); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *Fulfill) contentLen() int {
	return FulfillmentSize + LengthSize(len(f.Data)) + len(f.Data)
}

// AppendBinary appends the encoded Fulfill to b. It refuses data over 32767 bytes.
func (f *Fulfill) AppendBinary(b []byte) ([]byte, error) {
	if len(f.Data) > MaxDataSize {
		return b, sizeErr(TypeFulfill, "data", len(f.Data), MaxDataSize)
	}
	n := f.contentLen()
	b = slices.Grow(b, 1+LengthSize(n)+n)
	b = AppendLength(append(b, TypeFulfill), n)
	b = append(b, f.Fulfillment[:]...)
	return AppendVarOctetString(b, f.Data), nil
}

// MarshalBinary encodes the Fulfill into a new buffer of the exact size.
func (f *Fulfill) MarshalBinary() ([]byte, error) {
	n := f.contentLen()
	return f.AppendBinary(make([]byte, 0, 1+LengthSize(n)+n))
}

// knownCodes lets the parser return the ErrorCode constants instead of allocating a string.
var knownCodes = func() []ErrorCode {
	codes := make([]ErrorCode, 0, len(codeNames))
	for c := range codeNames {
		codes = append(codes, c)
	}
	return codes
}()

func internCode(b []byte) ErrorCode {
	for _, c := range knownCodes {
		if string(c) == string(b) {
			return c
		}
	}
	return ErrorCode(b)
}

// ParseReject parses an ILP Reject. Data aliases b. Any 3-byte code is accepted (unknown codes
// are legal on the wire). TriggeredBy may be empty, because ilp-packet (JS) emits that; when
// present it must be a valid address.
func ParseReject(b []byte) (*Reject, error) {
	c, err := envelope(b, TypeReject)
	if err != nil {
		return nil, err
	}
	r := Reader{b: c}
	code := r.Bytes(3)
	if err := r.Err(); err != nil {
		return nil, fieldErr(TypeReject, "code", err)
	}
	rej := &Reject{Code: internCode(code)}
	if rej.TriggeredBy, err = readAddress(&r, TypeReject, "triggeredBy", true); err != nil {
		return nil, err
	}
	msg := r.VarOctetString()
	if err := r.Err(); err != nil {
		return nil, fieldErr(TypeReject, "message", err)
	}
	if len(msg) > MaxMessageSize {
		return nil, sizeErr(TypeReject, "message", len(msg), MaxMessageSize)
	}
	rej.Message = string(msg)
	if rej.Data, err = readData(&r, TypeReject); err != nil {
		return nil, err
	}
	return rej, nil
}

func (r *Reject) contentLen() int {
	return 3 + LengthSize(len(r.TriggeredBy)) + len(r.TriggeredBy) +
		LengthSize(len(r.Message)) + len(r.Message) + LengthSize(len(r.Data)) + len(r.Data)
}

// AppendBinary appends the encoded Reject to b. It refuses a code that is not 3 bytes, an
// empty or invalid triggeredBy, a message over 8191 bytes and data over 32767 bytes.
func (r *Reject) AppendBinary(b []byte) ([]byte, error) {
	if err := r.check(); err != nil {
		return b, err
	}
	n := r.contentLen()
	b = slices.Grow(b, 1+LengthSize(n)+n)
	b = AppendLength(append(b, TypeReject), n)
	b = append(b, r.Code...)
	b = AppendVarString(b, string(r.TriggeredBy))
	b = AppendVarString(b, r.Message)
	return AppendVarOctetString(b, r.Data), nil
}

// check validates the fields of a Reject before encoding.
func (r *Reject) check() error {
	switch {
	case len(r.Code) != 3:
		return fmt.Errorf("%w: %q", ErrInvalidCode, string(r.Code))
	case r.TriggeredBy == "":
		return fmt.Errorf("%w: set it to the address of the node that rejects (%s %q)", ErrEmptyTriggeredBy, r.Code, r.Message)
	case len(r.Message) > MaxMessageSize:
		return sizeErr(TypeReject, "message", len(r.Message), MaxMessageSize)
	case len(r.Data) > MaxDataSize:
		return sizeErr(TypeReject, "data", len(r.Data), MaxDataSize)
	}
	if err := ValidateAddress(string(r.TriggeredBy)); err != nil {
		return fmt.Errorf("ilp: Reject triggeredBy: %w", err)
	}
	return nil
}

// MarshalBinary encodes the Reject into a new buffer of the exact size.
func (r *Reject) MarshalBinary() ([]byte, error) {
	n := r.contentLen()
	return r.AppendBinary(make([]byte, 0, 1+LengthSize(n)+n))
}

// ParseResponse parses the answer to a Prepare: exactly one of the Fulfill and the Reject is
// non-nil when err is nil.
func ParseResponse(b []byte) (*Fulfill, *Reject, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("ilp: empty input where a Fulfill or Reject was expected: %w", ErrShort)
	}
	switch b[0] {
	case TypeFulfill:
		f, err := ParseFulfill(b)
		return f, nil, err
	case TypeReject:
		r, err := ParseReject(b)
		return nil, r, err
	}
	return nil, nil, fmt.Errorf("%w: got %s (%d), want Fulfill (%d) or Reject (%d)", ErrWrongType, typeName(b[0]), b[0], TypeFulfill, TypeReject)
}

// prepareContents returns the contents of the serialized Prepare in b, at least long enough for
// the fixed fields; writing into them writes into b.
func prepareContents(b []byte) ([]byte, error) {
	c, err := envelope(b, TypePrepare)
	if err != nil {
		return nil, err
	}
	if len(c) < staticPrepareSize {
		return nil, fieldErr(TypePrepare, "amount, expiresAt and executionCondition", ErrShort)
	}
	return c, nil
}

// SetPrepareAmount rewrites the amount of the serialized Prepare in b in place (contents offset
// 0). RFC 27 keeps amount and expiresAt fixed-size for exactly this. Zero is written like any
// other amount.
func SetPrepareAmount(b []byte, amount uint64) error {
	c, err := prepareContents(b)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint64(c[0:8], amount)
	return nil
}

// SetPrepareExpiry rewrites the expiresAt of the serialized Prepare in b in place (contents
// offset 8), truncated to the millisecond.
func SetPrepareExpiry(b []byte, t time.Time) error {
	if !timestampInRange(t) {
		return fmt.Errorf("ilp: Prepare expiresAt %s: %w", t.Format(time.RFC3339), ErrTimestampRange)
	}
	c, err := prepareContents(b)
	if err != nil {
		return err
	}
	putTimestamp(c[8:8+TimestampSize], t)
	return nil
}
