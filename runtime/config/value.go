package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// The JS config surface carries values in three shapes: JSON numbers (assetScale, periods),
// integer strings (amounts, balance bounds) and, in the environment, plain strings converted
// by the JS loader. These helpers read each shape exactly, without float64, and return a
// problem text (what is expected) instead of an error so callers can name the field.

// decimalRe is the decimal literal grammar of JavaScript's Number(): optional sign, digits
// with an optional fraction (or a bare fraction) and an optional exponent. The exponent is
// capped at three digits so that no input can make the decimal library build a huge number.
var decimalRe = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$`)

var (
	maxInt64  = decimal.NewFromInt(math.MaxInt64)
	minInt64  = decimal.NewFromInt(math.MinInt64)
	maxUint64 = decimal.NewFromUint64(math.MaxUint64)
)

// parseJSNumber reads s as JavaScript's Number(s) does, which is how the JS connector reads
// integer and number environment variables: surrounding whitespace is ignored, "" is 0, and
// 0x/0o/0b literals are accepted. NaN and ±Infinity are reported as not a number.
func parseJSNumber(s string) (decimal.Decimal, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return decimal.Zero, true
	}
	if len(s) > 2 && s[0] == '0' {
		base := map[byte]int{'x': 16, 'X': 16, 'o': 8, 'O': 8, 'b': 2, 'B': 2}[s[1]]
		if base != 0 {
			v, err := strconv.ParseUint(s[2:], base, 64)
			if err != nil {
				return decimal.Zero, false
			}
			return decimal.NewFromUint64(v), true
		}
	}
	if !decimalRe.MatchString(s) {
		return decimal.Zero, false
	}
	d, err := decimal.NewFromString(strings.TrimPrefix(s, "+"))
	return d, err == nil
}

// rawDecimal reads a JSON number, or a string holding one (YAML users quote numbers).
func rawDecimal(raw json.RawMessage) (decimal.Decimal, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return decimal.Zero, false
		}
		raw = []byte(strings.TrimSpace(s))
	}
	if len(raw) == 0 || !decimalRe.Match(raw) || raw[0] == '+' {
		return decimal.Zero, false
	}
	d, err := decimal.NewFromString(string(raw))
	return d, err == nil
}

// rawInt reads an integer within [lo, hi] given as a JSON number or numeric string.
func rawInt(raw json.RawMessage, lo, hi int64) (int64, string) {
	want := fmt.Sprintf("expected an integer from %d to %d", lo, hi)
	d, ok := rawDecimal(raw)
	if !ok || !d.IsInteger() {
		return 0, want
	}
	if d.LessThan(decimal.NewFromInt(lo)) || d.GreaterThan(decimal.NewFromInt(hi)) {
		return 0, want
	}
	return d.IntPart(), ""
}

// rawMillis reads a duration in integer milliseconds, at least minMS.
func rawMillis(raw json.RawMessage, minMS int64) (time.Duration, string) {
	ms, problem := rawInt(raw, minMS, math.MaxInt64/int64(time.Millisecond))
	if problem != "" {
		return 0, millisWant(minMS)
	}
	return time.Duration(ms) * time.Millisecond, ""
}

// millisWant is the one wording of a duration's range, used by the sources and Validate alike.
func millisWant(minMS int64) string {
	return fmt.Sprintf("expected a whole number of milliseconds, at least %d", minMS)
}

// rawString reads a JSON string.
func rawString(raw json.RawMessage) (string, bool) {
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

// rawBool reads a JSON boolean.
func rawBool(raw json.RawMessage) (bool, bool) {
	switch string(bytes.TrimSpace(raw)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// amountRe is the JS schema's pattern for positive amounts (maxPacketAmount, throughput).
var amountRe = regexp.MustCompile(`^[1-9][0-9]*$`)

// rawAmount reads a positive amount given as an integer string (the JS shape) or a JSON
// integer. Amounts above the largest ILP amount (uint64) are clamped to it: no packet can
// carry more, so the limit means the same thing.
func rawAmount(raw json.RawMessage) (uint64, string) {
	const want = `expected a positive integer string such as "1000000"`
	s, ok := rawString(raw)
	if !ok {
		s = string(bytes.TrimSpace(raw))
	}
	if !amountRe.MatchString(s) {
		return 0, want
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return 0, want
	}
	if d.GreaterThan(maxUint64) {
		return math.MaxUint64, ""
	}
	v, _ := strconv.ParseUint(s, 10, 64)
	return v, ""
}

// boundRe is the JS schema's pattern for balance bounds and settleTo/settleThreshold.
var boundRe = regexp.MustCompile(`^(0|-?([1-9][0-9]*|Infinity))$`)

// bound is a parsed balance setting: an integer, or ±Infinity (inf = -1 or +1).
type bound struct {
	v   decimal.Decimal
	inf int
}

// rawBound reads a balance setting given as an integer string, "-Infinity" or "Infinity"
// (or a JSON integer).
func rawBound(raw json.RawMessage) (bound, bool) {
	s, ok := rawString(raw)
	if !ok {
		s = string(bytes.TrimSpace(raw))
	}
	if !boundRe.MatchString(s) {
		return bound{}, false
	}
	switch s {
	case "Infinity":
		return bound{inf: 1}, true
	case "-Infinity":
		return bound{inf: -1}, true
	}
	d, err := decimal.NewFromString(s)
	return bound{v: d}, err == nil
}

// clamp converts b to int64, saturating at the int64 range (±Infinity included).
func (b bound) clamp() int64 {
	switch {
	case b.inf > 0 || b.v.GreaterThan(maxInt64):
		return math.MaxInt64
	case b.inf < 0 || b.v.LessThan(minInt64):
		return math.MinInt64
	}
	return b.v.IntPart()
}

// exact converts b to int64 when it is a finite integer in range.
func (b bound) exact() (int64, bool) {
	if b.inf != 0 || b.v.GreaterThan(maxInt64) || b.v.LessThan(minInt64) {
		return 0, false
	}
	return b.v.IntPart(), true
}

// canonicalJSON re-encodes a JSON value with sorted object keys and no insignificant space,
// so that two spellings of the same plugin options compare equal. Invalid JSON is returned
// as is (it then compares by bytes).
func canonicalJSON(raw json.RawMessage) []byte {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers exactly as written
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw
	}
	out, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return out
}

// isJSONObject reports whether raw is a JSON object. JSON text must be UTF-8 (RFC 8259), and
// encoding/json would replace invalid bytes in its strings with U+FFFD, silently changing an
// account id or a plugin's secret: such text is not an object here.
func isJSONObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{' && utf8.Valid(raw) && json.Valid(raw)
}
