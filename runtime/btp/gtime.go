package btp

import (
	"errors"
	"fmt"
	"time"
)

// GeneralizedTime (RFC 30 §Variable-length Timestamps) is the format of an Error's triggeredAt:
// YYYYMMDDHHmmss[.f{1,3}]Z. RFC 30 wants trailing zero digits left out, but btp-packet (JS) can
// only read exactly three digits ("…00.000Z") and both JS and Rust write three, so this package
// writes three as well and reads every variant.
const generalizedTimeSize = len("20060102150405.000Z")

// appendGeneralizedTime appends t (UTC, millisecond precision) as a var-string. A zero t is
// written as the current time, because every Error must say when it happened.
func appendGeneralizedTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		t = time.Now()
	}
	b = append(b, byte(generalizedTimeSize))
	return t.UTC().AppendFormat(b, "20060102150405.000Z")
}

// ParseGeneralizedTime reads YYYYMMDDHHmmss, an optional fraction of one to three digits, and Z.
func ParseGeneralizedTime(b []byte) (time.Time, error) {
	const base = len("20060102150405")
	if len(b) < base+1 || b[len(b)-1] != 'Z' {
		return time.Time{}, fmt.Errorf("btp: generalized time %q must be YYYYMMDDHHmmss[.fff]Z", b)
	}
	frac := b[base : len(b)-1]
	if len(frac) > 0 && (frac[0] != '.' || len(frac) < 2 || len(frac) > 4) {
		return time.Time{}, fmt.Errorf("btp: generalized time %q has a bad fraction", b)
	}
	var n [7]int
	widths := [7]int{4, 2, 2, 2, 2, 2, 0}
	pos := 0
	for i, w := range widths[:6] {
		v, ok := atoi(b[pos : pos+w])
		if !ok {
			return time.Time{}, fmt.Errorf("btp: generalized time %q has a non-digit", b)
		}
		n[i], pos = v, pos+w
	}
	if len(frac) > 0 {
		v, ok := atoi(frac[1:])
		if !ok {
			return time.Time{}, fmt.Errorf("btp: generalized time %q has a non-digit", b)
		}
		for i := len(frac) - 1; i < 3; i++ {
			v *= 10
		}
		n[6] = v
	}
	if n[1] < 1 || n[1] > 12 || n[2] < 1 || n[2] > 31 || n[3] > 23 || n[4] > 59 || n[5] > 60 {
		return time.Time{}, errors.New("btp: generalized time out of range: " + string(b))
	}
	// Second 60 (a leap second) is allowed by RFC 30; time.Date normalises it to the next minute.
	return time.Date(n[0], time.Month(n[1]), n[2], n[3], n[4], n[5], n[6]*int(time.Millisecond), time.UTC), nil
}

func atoi(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}
