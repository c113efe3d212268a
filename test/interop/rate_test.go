package interop

import (
	"fmt"
	"math/big"
	"testing"
)

// jsScaledRate is the rate the JS ilp-connector forwards with, computed here independently of
// runtime/rates so that the tests check that package rather than repeat it. The JS ecb backend
// (and ilpfleet's ecb and static backends, which mirror it) computes, with bignumber.js defaults
// (20 decimal places for a division, rounding half-up):
//
//	toPrecision(15)( dstPrice·10^dstScale / (srcPrice·10^srcScale) × (1 − spread) )
//
// and the one-to-one backend the same with both prices 1. The route builder then forwards
// floor(amount × rate) (see forward).
func jsScaledRate(srcPrice, dstPrice string, srcScale, dstScale int, spread string) (*big.Rat, error) {
	sp, ok1 := new(big.Rat).SetString(srcPrice)
	dp, ok2 := new(big.Rat).SetString(dstPrice)
	sd, ok3 := new(big.Rat).SetString(spread)
	if !ok1 || !ok2 || !ok3 || sp.Sign() <= 0 || dp.Sign() <= 0 {
		return nil, fmt.Errorf("bad rate inputs %q %q %q", srcPrice, dstPrice, spread)
	}
	num := new(big.Rat).Mul(dp, pow10(dstScale))
	den := new(big.Rat).Mul(sp, pow10(srcScale))
	q := roundHalfUp(new(big.Rat).Quo(num, den), 20)
	r := q.Mul(q, new(big.Rat).Sub(big.NewRat(1, 1), sd))
	if r.Sign() <= 0 {
		return nil, fmt.Errorf("rate %s is not positive", r.FloatString(20))
	}
	return roundSignificant(r, 15), nil
}

// forward is what a connector forwards for amount at rate: floor(amount × rate).
func forward(amount uint64, rate *big.Rat) uint64 {
	p := new(big.Rat).Mul(new(big.Rat).SetInt(new(big.Int).SetUint64(amount)), rate)
	q := new(big.Int).Quo(p.Num(), p.Denom()) // both positive: truncation is floor
	return q.Uint64()
}

// pow10 is 10^n as a rational, for any integer n.
func pow10(n int) *big.Rat {
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(n))), nil)
	if n < 0 {
		return new(big.Rat).SetFrac(big.NewInt(1), p)
	}
	return new(big.Rat).SetInt(p)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// roundHalfUp rounds a positive x to places decimal places (places may be negative), half-up.
func roundHalfUp(x *big.Rat, places int) *big.Rat {
	scaled := new(big.Rat).Mul(x, pow10(places))
	scaled.Add(scaled, big.NewRat(1, 2))
	n := new(big.Int).Quo(scaled.Num(), scaled.Denom())
	return new(big.Rat).Mul(new(big.Rat).SetInt(n), pow10(-places))
}

// roundSignificant rounds a positive x to digits significant digits, half-up
// (BigNumber.toPrecision).
func roundSignificant(x *big.Rat, digits int) *big.Rat {
	// e such that 10^e ≤ x < 10^(e+1); the loops are bounded by the size of x's exponent.
	e := 0
	for x.Cmp(pow10(e+1)) >= 0 {
		e++
	}
	for x.Cmp(pow10(e)) < 0 {
		e--
	}
	r := roundHalfUp(x, digits-1-e)
	return r
}

func TestJSScaledRate(t *testing.T) {
	tests := []struct {
		name               string
		srcPrice, dstPrice string
		srcScale, dstScale int
		spread             string
		want               string // exact decimal
	}{
		{"one-to-one upscale with spread", "1", "1", 6, 9, "0.01", "990"},
		{"one-to-one same scale with spread", "1", "1", 9, 9, "0.01", "0.99"},
		{"one-to-one downscale no spread", "1", "1", 9, 6, "0", "0.001"},
		// 1e9/1.08e6 = 925.925925…; to 20 places …92593; × 0.99 = 916.666666666666666666…;
		// to 15 digits 916.666666666667.
		{"static USD(6) to EUR(9)", "1.08", "1", 6, 9, "0.01", "916.666666666667"},
		{"static EUR(9) to USD(6)", "1", "1.08", 9, 6, "0.002", "0.00107784"},
		{"thirds to 15 digits", "3", "1", 0, 0, "0", "0.333333333333333"},
		{"two thirds round up", "3", "2", 0, 0, "0", "0.666666666666667"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := jsScaledRate(tc.srcPrice, tc.dstPrice, tc.srcScale, tc.dstScale, tc.spread)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := new(big.Rat).SetString(tc.want)
			if got.Cmp(want) != 0 {
				t.Errorf("rate = %s, want %s", got.FloatString(20), tc.want)
			}
		})
	}
}

func TestForward(t *testing.T) {
	r, _ := new(big.Rat).SetString("916.666666666667")
	tests := []struct {
		amount, want uint64
	}{
		{0, 0},
		{1, 916},
		{3, 2750},           // 2750.000000000001
		{300000, 275000000}, // 275000000.0000001
		{100000, 91666666},  // 91666666.6666667
	}
	for _, tc := range tests {
		if got := forward(tc.amount, r); got != tc.want {
			t.Errorf("forward(%d) = %d, want %d", tc.amount, got, tc.want)
		}
	}
}
