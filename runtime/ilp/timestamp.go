package ilp

import (
	"errors"
	"fmt"
	"time"
)

// ILP timestamps (RFC 27 expiresAt, RFC 30 §Fixed-length Timestamps) are 17 ASCII digits,
// YYYYMMDDHHmmSSfff, in UTC with millisecond precision. They are not GeneralizedTime: no ".",
// no "Z", no length prefix.

// ErrInvalidTimestamp wraps every error of ParseTimestamp.
var ErrInvalidTimestamp = errors.New("ilp: invalid timestamp")

// ErrTimestampRange is returned when a time cannot be written with a four-digit year.
var ErrTimestampRange = errors.New("ilp: time is outside the years 0000-9999 that an ILP timestamp can hold")

var (
	minTimestamp = time.Date(0, time.January, 1, 0, 0, 0, 0, time.UTC)
	maxTimestamp = time.Date(9999, time.December, 31, 23, 59, 59, 999_000_000, time.UTC)
)

// timestampInRange reports whether t can be written without clamping.
func timestampInRange(t time.Time) bool {
	return !t.Before(minTimestamp) && !t.After(maxTimestamp)
}

// FormatTimestamp writes t as an ILP timestamp. See AppendTimestamp.
func FormatTimestamp(t time.Time) string {
	var b [TimestampSize]byte
	putTimestamp(b[:], t)
	return string(b[:])
}

// AppendTimestamp appends the 17-byte ILP timestamp of t. The time is converted to UTC and
// truncated (not rounded) to the millisecond, so that a connector never lengthens an expiry.
// Times outside the years 0000-9999 are clamped; the packet encoders refuse them instead.
func AppendTimestamp(b []byte, t time.Time) []byte {
	var ts [TimestampSize]byte
	putTimestamp(ts[:], t)
	return append(b, ts[:]...)
}

// putTimestamp writes the timestamp of t into dst[:17].
func putTimestamp(dst []byte, t time.Time) {
	switch {
	case t.Before(minTimestamp):
		t = minTimestamp
	case t.After(maxTimestamp):
		t = maxTimestamp
	}
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	putDigits(dst[0:4], year)
	putDigits(dst[4:6], int(month))
	putDigits(dst[6:8], day)
	putDigits(dst[8:10], hour)
	putDigits(dst[10:12], minute)
	putDigits(dst[12:14], sec)
	putDigits(dst[14:17], t.Nanosecond()/int(time.Millisecond))
}

// putDigits writes v as len(dst) zero-padded decimal digits.
func putDigits(dst []byte, v int) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
}

// ParseTimestamp reads a 17-digit ILP timestamp strictly: exactly 17 ASCII digits and real
// calendar fields (month 01-12, a day that exists in that month, hour 00-23, minute 00-59,
// second 00-59: RFC 30 requires leap seconds to be smeared, so second 60 is refused, and
// midnight is 000000000 of the next day, so hour 24 is refused). The result is in UTC.
func ParseTimestamp(b []byte) (time.Time, error) {
	if len(b) != TimestampSize {
		return time.Time{}, fmt.Errorf("%w %q: want %d digits YYYYMMDDHHmmSSfff, got %d bytes", ErrInvalidTimestamp, b, TimestampSize, len(b))
	}
	for i, c := range b {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%w %q: byte %d is not a digit", ErrInvalidTimestamp, b, i)
		}
	}
	year, month, day := digits(b[0:4]), digits(b[4:6]), digits(b[6:8])
	hour, minute, sec, ms := digits(b[8:10]), digits(b[10:12]), digits(b[12:14]), digits(b[14:17])
	if err := checkFields(year, month, day, hour, minute, sec); err != "" {
		return time.Time{}, fmt.Errorf("%w %q: %s", ErrInvalidTimestamp, b, err)
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, ms*int(time.Millisecond), time.UTC), nil
}

// digits reads ASCII digits already known to be 0-9.
func digits(b []byte) int {
	v := 0
	for _, c := range b {
		v = v*10 + int(c-'0')
	}
	return v
}

// checkFields returns what is wrong with the calendar fields, or "".
func checkFields(year, month, day, hour, minute, sec int) string {
	switch {
	case month < 1 || month > 12:
		return fmt.Sprintf("month %02d is out of range", month)
	case day < 1 || day > daysIn(year, month):
		return fmt.Sprintf("day %02d does not exist in %04d-%02d", day, year, month)
	case hour > 23:
		return fmt.Sprintf("hour %02d is out of range (midnight is 00 of the next day)", hour)
	case minute > 59:
		return fmt.Sprintf("minute %02d is out of range", minute)
	case sec > 59:
		return fmt.Sprintf("second %02d is out of range (leap seconds must be smeared)", sec)
	}
	return ""
}

// daysIn is the number of days of a month in the proleptic Gregorian calendar.
func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
