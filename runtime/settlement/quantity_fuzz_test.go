package settlement

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// Engines send Quantities; these targets check that no amount read from one changes on the
// way: the JSON is read exactly as a reader that knows only RFC 38's two keys would read it,
// Units and Standard are the same number written two ways, and ToScale splits an amount into
// units and a leftover that add up to it exactly.

func FuzzQuantityJSON(f *testing.F) {
	for _, q := range []Quantity{NewQuantity(0, 0), NewQuantity(254, 2), NewQuantity(math.MaxUint64, 255),
		{Amount: strings.Repeat("9", 80), Scale: 18}, {Amount: "000100", Scale: 3}} {
		b, _ := json.Marshal(q)
		f.Add(b)
	}
	for _, s := range []string{
		`{"amount":"1e3","scale":2}`, `{"amount":"-1","scale":2}`, `{"amount":"1.5","scale":2}`, `{"amount":100,"scale":2}`,
		`{"amount":"100"}`, `{"scale":2}`, `{"amount":"100","scale":256}`, `{"amount":"100","scale":-1}`,
		`{"amount":"100","scale":2.0}`, `{"amount":"100","scale":null}`, `{"amount":"5","scale":2,"scalf":3}`,
		`null`, `[]`, `{"amount":"\u0031","scale":0}`, `{"amount":"0","scale":"0"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var q Quantity
		err := json.Unmarshal(b, &q)
		ref, refOK := referenceQuantity(b)
		if err != nil {
			if refOK {
				t.Fatalf("refused %s, which reads as %+v", b, ref)
			}
			return
		}
		if !refOK || q != ref {
			t.Fatalf("read %s as %+v; a reader of RFC 38's keys reads %+v (valid: %v)", b, q, ref, refOK)
		}
		checkQuantity(t, q)
		enc, err := json.Marshal(q)
		if err != nil {
			t.Fatal(err)
		}
		var again Quantity
		if err := json.Unmarshal(enc, &again); err != nil || again != q {
			t.Fatalf("round trip of %s: %+v, %v", enc, again, err)
		}
	})
}

// referenceQuantity reads b as RFC 38 defines a Quantity, independently of UnmarshalJSON:
// exactly the keys "amount" (a string of digits) and "scale" (an integer 0–255).
func referenceQuantity(b []byte) (Quantity, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(b, &obj) != nil || obj == nil {
		return Quantity{}, false
	}
	var amount string
	if json.Unmarshal(obj["amount"], &amount) != nil || amount == "" || strings.Trim(amount, "0123456789") != "" {
		return Quantity{}, false
	}
	if bytes.HasPrefix(obj["scale"], []byte(`"`)) { // a string, though its text is a number
		return Quantity{}, false
	}
	d := json.NewDecoder(bytes.NewReader(obj["scale"]))
	d.UseNumber()
	var n json.Number
	if d.Decode(&n) != nil {
		return Quantity{}, false
	}
	scale, err := n.Int64()
	if err != nil || scale < 0 || scale > math.MaxUint8 {
		return Quantity{}, false
	}
	return Quantity{Amount: amount, Scale: uint8(scale)}, true
}

// checkQuantity checks that Units and Standard are the quantity's digits, exactly.
func checkQuantity(t *testing.T, q Quantity) {
	t.Helper()
	u, err := q.Units()
	if err != nil {
		t.Fatalf("Units of %+v: %v", q, err)
	}
	if u.BigInt().Cmp(bigInt(q.Amount)) != 0 || !u.IsInteger() {
		t.Fatalf("Units of %+v = %s", q, u)
	}
	s, err := q.Standard()
	if err != nil {
		t.Fatalf("Standard of %+v: %v", q, err)
	}
	if got, want := s.String(), pointAt(q.Amount, int(q.Scale)); got != want {
		t.Fatalf("Standard of %+v = %s, want %s", q, got, want)
	}
}

func FuzzToScale(f *testing.F) {
	f.Add("254", uint8(2), uint8(0))
	f.Add("254", uint8(2), uint8(9))
	f.Add("1", uint8(255), uint8(255))
	f.Add("9223372036854775807", uint8(0), uint8(0))
	f.Add("9223372036854775808", uint8(0), uint8(0))
	f.Add("92233720368547758079", uint8(1), uint8(0))
	f.Add(strings.Repeat("9", 300), uint8(255), uint8(200))
	f.Add("0", uint8(0), uint8(255))
	f.Fuzz(func(t *testing.T, amount string, from, to uint8) {
		q := Quantity{Amount: amount, Scale: from}
		std, err := q.Standard()
		if err != nil {
			if isDigits(amount) {
				t.Fatalf("Standard refused %+v: %v", q, err)
			}
			return
		}
		units, left, err := ToScale(std, to)
		// The reference, in integers: amount·10^to / 10^from, rounded down, and the remainder.
		num := new(big.Int).Mul(bigInt(amount), pow10(to))
		whole, rest := new(big.Int).QuoRem(num, pow10(from), new(big.Int))
		if !whole.IsInt64() {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("ToScale(%s, %d) = %d, %s, %v; %s does not fit int64", std, to, units, left, err, whole)
			}
			return
		}
		if err != nil || units != whole.Int64() {
			t.Fatalf("ToScale(%s, %d) = %d, %v; want %s", std, to, units, err, whole)
		}
		// leftover = rest / 10^(from+to) standard units, exactly, and less than one unit.
		want := decimal.NewFromBigInt(rest, -int32(from)-int32(to))
		if !left.Equal(want) || left.Sign() < 0 || !left.LessThan(decimal.New(1, -int32(to))) {
			t.Fatalf("ToScale(%s, %d) leftover %s, want %s", std, to, left, want)
		}
		if back := decimal.NewFromInt(units).Shift(-int32(to)).Add(left); !back.Equal(std) {
			t.Fatalf("units %d + leftover %s = %s, not %s", units, left, back, std)
		}
	})
}

func TestToScaleRefusesNegative(t *testing.T) {
	if _, _, err := ToScale(decimal.New(-1, -2), 2); err == nil {
		t.Fatal("a negative amount was accepted")
	}
}

func bigInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic("not an integer: " + s)
	}
	return n
}

func pow10(n uint8) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

// pointAt writes the integer digits as a decimal number with scale digits after the point, in
// the shortest form decimal.String uses: no leading zeros, no trailing fractional zeros.
func pointAt(digits string, scale int) string {
	digits = strings.TrimLeft(digits, "0")
	if len(digits) <= scale {
		digits = strings.Repeat("0", scale-len(digits)+1) + digits
	}
	intPart, frac := digits[:len(digits)-scale], strings.TrimRight(digits[len(digits)-scale:], "0")
	if intPart == "" {
		intPart = "0"
	}
	if frac == "" {
		return intPart
	}
	return intPart + "." + frac
}
