package ilp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// OER primitives (RFC 30) shared by every codec of the runtime (ILP, IL-DCP, BTP, CCP).
// Decoding is strict about canonical forms: short-form lengths below 128, long-form lengths
// without leading zeros, VarUInts without leading zeros. A non-canonical encoding is an error,
// because two encodings of one packet would hash differently (dedupe) and hide bugs in peers.

// ErrShort is returned when the input ends before the value it announces.
var ErrShort = errors.New("oer: unexpected end of input")

// Reader reads OER values from a byte slice. It never copies: slices it returns alias the input.
// The first failure sticks: later reads return zero values and Err reports that failure.
type Reader struct {
	b   []byte
	err error
}

// NewReader reads from b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err is the first error the Reader met, or nil.
func (r *Reader) Err() error { return r.err }

// Len is the number of unread bytes.
func (r *Reader) Len() int { return len(r.b) }

func (r *Reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

// Bytes reads n raw bytes.
func (r *Reader) Bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail(ErrShort)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Uint8 reads one byte.
func (r *Reader) Uint8() uint8 {
	b := r.Bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// Uint32 reads a fixed 4-byte big-endian integer.
func (r *Reader) Uint32() uint32 {
	b := r.Bytes(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// Uint64 reads a fixed 8-byte big-endian integer.
func (r *Reader) Uint64() uint64 {
	b := r.Bytes(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Length reads a length determinant.
func (r *Reader) Length() int {
	first := r.Uint8()
	if r.err != nil || first < 0x80 {
		return int(first)
	}
	n := int(first & 0x7f)
	switch {
	case n == 0:
		r.fail(errors.New("oer: indefinite length is not allowed"))
		return 0
	case n > 4: // no field of any ILP protocol comes near 4 GiB
		r.fail(fmt.Errorf("oer: length of length %d is too large", n))
		return 0
	}
	b := r.Bytes(n)
	if b == nil {
		return 0
	}
	if b[0] == 0 {
		r.fail(errors.New("oer: length has leading zeros"))
		return 0
	}
	var v int
	for _, c := range b {
		v = v<<8 | int(c)
	}
	if v < 0x80 {
		r.fail(fmt.Errorf("oer: length %d must use the short form", v))
		return 0
	}
	return v
}

// VarOctetString reads a length-prefixed byte string.
func (r *Reader) VarOctetString() []byte {
	n := r.Length()
	if r.err != nil {
		return nil
	}
	return r.Bytes(n)
}

// VarUint reads a length-prefixed unsigned integer of at most 8 bytes.
func (r *Reader) VarUint() uint64 {
	b := r.VarOctetString()
	if r.err != nil {
		return 0
	}
	switch {
	case len(b) == 0:
		r.fail(errors.New("oer: VarUInt of zero length"))
		return 0
	case len(b) > 8:
		r.fail(fmt.Errorf("oer: VarUInt of %d bytes does not fit in 64 bits", len(b)))
		return 0
	case len(b) > 1 && b[0] == 0:
		r.fail(errors.New("oer: VarUInt has leading zeros"))
		return 0
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// AppendLength appends a length determinant for n.
func AppendLength(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	size := 1
	for v := n >> 8; v > 0; v >>= 8 {
		size++
	}
	b = append(b, 0x80|byte(size))
	for i := size - 1; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// LengthSize is the number of bytes AppendLength writes for n.
func LengthSize(n int) int {
	if n < 0x80 {
		return 1
	}
	size := 1
	for v := n; v > 0; v >>= 8 {
		size++
	}
	return size
}

// AppendVarOctetString appends a length-prefixed byte string.
func AppendVarOctetString(b, s []byte) []byte {
	return append(AppendLength(b, len(s)), s...)
}

// AppendVarString appends a length-prefixed string.
func AppendVarString(b []byte, s string) []byte {
	return append(AppendLength(b, len(s)), s...)
}

// AppendUint32 appends a fixed 4-byte big-endian integer.
func AppendUint32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }

// AppendUint64 appends a fixed 8-byte big-endian integer.
func AppendUint64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// AppendVarUint appends a length-prefixed minimal big-endian integer. Zero is encoded as 01 00,
// as every implementation in use does.
func AppendVarUint(b []byte, v uint64) []byte {
	size := 1
	for x := v >> 8; x > 0; x >>= 8 {
		size++
	}
	b = append(b, byte(size))
	for i := size - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}
