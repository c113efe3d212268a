package rates

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/shopspring/decimal"
)

const maxU64 = uint64(math.MaxUint64)

var (
	zero      = decimal.RequireFromString("0")
	jsSpread  = decimal.RequireFromString("0.002")
	staticCfg = json.RawMessage(`{"base":"EUR","rates":{"USD":"1.08","JPY":162.5,"XAU":3,"HALF":"0.5"}}`)
)

func mustStatic(t testing.TB) *Static {
	t.Helper()
	s, err := NewStatic(staticCfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The expected amounts were computed with bignumber.js 7 using the JS backends' formulas
// (one-to-one.ts, ecb.ts) and the route builder's floor(amount × rate).
func TestConvertMatchesJS(t *testing.T) {
	static := mustStatic(t)
	a := func(code string, scale uint8) Asset { return Asset{code, scale} }
	tests := []struct {
		name     string
		backend  Backend
		amount   uint64
		src, dst Asset
		spread   decimal.Decimal
		want     uint64
	}{
		{"1:1 same scale", OneToOne{}, 100, a("USD", 2), a("USD", 2), zero, 100},
		{"1:1 spread", OneToOne{}, 1000, a("USD", 2), a("EUR", 2), jsSpread, 998},
		{"1:1 spread floors", OneToOne{}, 999, a("USD", 2), a("USD", 2), jsSpread, 997},
		{"1:1 spread floors to zero", OneToOne{}, 1, a("USD", 2), a("USD", 2), jsSpread, 0},
		{"1:1 max amount no spread", OneToOne{}, maxU64, a("XRP", 9), a("XRP", 9), zero, maxU64},
		{"1:1 max amount spread", OneToOne{}, maxU64, a("XRP", 9), a("XRP", 9), jsSpread, 18409850585562132511},
		{"1:1 scale up", OneToOne{}, 100, a("USD", 2), a("USD", 9), zero, 1000000000},
		{"1:1 scale up spread", OneToOne{}, 100, a("USD", 2), a("USD", 9), jsSpread, 998000000},
		{"1:1 scale down", OneToOne{}, 123456789, a("XRP", 9), a("XRP", 2), zero, 12},
		{"1:1 scale down spread", OneToOne{}, 123456789, a("XRP", 9), a("XRP", 2), jsSpread, 12},
		{"1:1 scale down to zero", OneToOne{}, 9999999, a("XRP", 9), a("XRP", 2), zero, 0},
		{"1:1 zero amount", OneToOne{}, 0, a("A", 0), a("B", 6), jsSpread, 0},
		{"static EUR→USD", static, 100, a("EUR", 2), a("USD", 2), zero, 108},
		{"static USD→EUR", static, 100, a("USD", 2), a("EUR", 2), zero, 92},
		{"static EUR→USD spread", static, 100, a("EUR", 2), a("USD", 2), jsSpread, 107},
		{"static scale up", static, 1000, a("USD", 2), a("EUR", 9), jsSpread, 9240740740},
		{"static 15-digit rate precision", static, 1000000000000, a("USD", 2), a("EUR", 9), jsSpread, 9240740740740740000},
		{"static cross", static, 123456789012345, a("JPY", 0), a("USD", 2), jsSpread, 81887178750194},
		{"static 20-place division", static, maxU64, a("USD", 9), a("EUR", 2), jsSpread, 1704615794959},
		{"static 20-place division small", static, 999999999999, a("USD", 9), a("EUR", 2), jsSpread, 92407},
		{"static third max", static, maxU64, a("XAU", 6), a("EUR", 6), zero, 6148914691236511056},
		{"static third floors", static, 7, a("XAU", 0), a("EUR", 0), zero, 2},
		{"static half", static, 5000000000, a("HALF", 9), a("EUR", 2), zero, 1000},
		{"static same asset", static, 12345, a("USD", 2), a("USD", 2), zero, 12345},
		{"static zero amount", static, 0, a("USD", 2), a("EUR", 9), jsSpread, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConverter(tc.backend)
			for range 2 { // the second round is served from the cache
				got, err := c.Convert(tc.amount, tc.src, tc.dst, tc.spread)
				if err != nil || got != tc.want {
					t.Fatalf("Convert(%d) = %d, %v; want %d", tc.amount, got, err, tc.want)
				}
			}
			if got, err := Convert(tc.backend, tc.amount, tc.src, tc.dst, tc.spread); err != nil || got != tc.want {
				t.Fatalf("package Convert(%d) = %d, %v; want %d", tc.amount, got, err, tc.want)
			}
		})
	}
}

func TestScaledRateMatchesJS(t *testing.T) {
	static := mustStatic(t)
	tests := []struct {
		b        Backend
		src, dst Asset
		spread   decimal.Decimal
		want     string
	}{
		{OneToOne{}, Asset{"X", 9}, Asset{"X", 2}, jsSpread, "0.0000000998"},
		{static, Asset{"USD", 2}, Asset{"EUR", 2}, zero, "0.925925925925926"},
		{static, Asset{"EUR", 2}, Asset{"USD", 2}, jsSpread, "1.07784"},
		{static, Asset{"USD", 2}, Asset{"EUR", 9}, jsSpread, "9240740.74074074"},
		{static, Asset{"USD", 9}, Asset{"EUR", 2}, jsSpread, "0.0000000924074074074048"},
		{static, Asset{"JPY", 0}, Asset{"USD", 2}, jsSpread, "0.663286153846154"},
	}
	for _, tc := range tests {
		got, err := tc.b.ScaledRate(tc.src, tc.dst, tc.spread)
		if err != nil || !got.Equal(decimal.RequireFromString(tc.want)) {
			t.Errorf("%s %v→%v: ScaledRate = %s, %v; want %s", tc.b.Name(), tc.src, tc.dst, got, err, tc.want)
		}
	}
}

// checkMax verifies MaxAmount independently: the maximum converts within a uint64, one more
// does not.
func checkMax(t *testing.T, rate decimal.Decimal, max uint64) {
	t.Helper()
	limit := new(big.Int).SetUint64(maxU64)
	conv := func(a *big.Int) *big.Int { return decimal.NewFromBigInt(a, 0).Mul(rate).Floor().BigInt() }
	m := new(big.Int).SetUint64(max)
	if conv(m).Cmp(limit) > 0 {
		t.Errorf("MaxAmount %d converts to %s, above MaxUint64", max, conv(m))
	}
	if conv(m.Add(m, big.NewInt(1))).Cmp(limit) <= 0 {
		t.Errorf("MaxAmount %d is not the largest: %s still fits", max, m)
	}
}

func TestConvertOverflow(t *testing.T) {
	static := mustStatic(t)
	tests := []struct {
		name     string
		b        Backend
		amount   uint64
		src, dst Asset
		wantMax  uint64
	}{
		{"scale up", OneToOne{}, maxU64, Asset{"USD", 2}, Asset{"USD", 9}, 1844674407370},
		{"rate above 1", static, maxU64, Asset{"EUR", 2}, Asset{"USD", 2}, 0},
		{"just above", static, 17080318586768103349, Asset{"EUR", 2}, Asset{"USD", 2}, 17080318586768103348},
		{"huge scale gap", OneToOne{}, 1, Asset{"A", 0}, Asset{"B", 255}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewConverter(tc.b).Convert(tc.amount, tc.src, tc.dst, zero)
			var oe *OverflowError
			if !errors.As(err, &oe) || !errors.Is(err, ErrOverflow) || Code(err) != ilp.CodeAmountTooLarge {
				t.Fatalf("err = %v, want an overflow (F08)", err)
			}
			if oe.Amount != tc.amount || oe.Source != tc.src || oe.Dest != tc.dst {
				t.Errorf("error fields = %+v", oe)
			}
			if tc.wantMax != 0 && oe.MaxAmount != tc.wantMax {
				t.Errorf("MaxAmount = %d, want %d", oe.MaxAmount, tc.wantMax)
			}
			checkMax(t, oe.Rate, oe.MaxAmount)
			if !strings.Contains(err.Error(), "send at most") {
				t.Errorf("message %q does not tell the sender what to do", err)
			}
		})
	}
}

func TestConvertErrors(t *testing.T) {
	static := mustStatic(t)
	_, err := NewConverter(static).Convert(1, Asset{"USD", 2}, Asset{"GBP", 2}, zero)
	if !errors.Is(err, ErrUnknownAsset) || Code(err) != ilp.CodeInternalError {
		t.Fatalf("err = %v, want unknown asset (T00)", err)
	}
	if want := `no exchange rate for asset "GBP" in the static backend (it has rates for: EUR, HALF, JPY, USD, XAU)`; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q\nwant      %q", err, want)
	}
	if _, err := static.Rate("GBP", "USD"); !errors.Is(err, ErrUnknownAsset) {
		t.Errorf("Rate(GBP) err = %v", err)
	}
	// Even a zero amount needs a rate, as in JS (getRate runs before the multiplication).
	if _, err := NewConverter(static).Convert(0, Asset{"GBP", 2}, Asset{"USD", 2}, zero); !errors.Is(err, ErrUnknownAsset) {
		t.Errorf("zero amount: err = %v", err)
	}
	_, err = NewConverter(OneToOne{}).Convert(10, Asset{"A", 2}, Asset{"A", 2}, decimal.RequireFromString("1.5"))
	if !errors.Is(err, ErrInvalidRate) || Code(err) != ilp.CodeInternalError {
		t.Errorf("spread 1.5: err = %v, want ErrInvalidRate", err)
	}
	if got, err := NewConverter(OneToOne{}).Convert(10, Asset{"A", 2}, Asset{"A", 2}, one); err != nil || got != 0 {
		t.Errorf("spread 1: %d, %v; want 0", got, err)
	}
}

// TestSpreadNeverIncreases checks on random inputs that a positive spread never yields more
// than no spread, and that Rate.Apply agrees with plain decimal arithmetic.
func TestSpreadNeverIncreases(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	static := mustStatic(t)
	codes := []string{"EUR", "USD", "JPY", "XAU", "HALF"}
	for i := 0; i < 3000; i++ {
		src := Asset{codes[rng.IntN(len(codes))], uint8(rng.IntN(19))}
		dst := Asset{codes[rng.IntN(len(codes))], uint8(rng.IntN(19))}
		amount := rng.Uint64() >> rng.IntN(64)
		var b Backend = static
		if i%2 == 0 {
			b = OneToOne{}
		}
		c := NewConverter(b)
		plain, errPlain := c.Convert(amount, src, dst, zero)
		spread, errSpread := c.Convert(amount, src, dst, jsSpread)
		if errPlain == nil && errSpread == nil && spread > plain {
			t.Fatalf("%s %d %v→%v: with spread %d > without %d", b.Name(), amount, src, dst, spread, plain)
		}
		if errPlain == nil && errSpread != nil {
			t.Fatalf("%s %d %v→%v: spread fails (%v) where no spread converts", b.Name(), amount, src, dst, errSpread)
		}
		r, err := c.Rate(src, dst, jsSpread)
		if err != nil {
			t.Fatal(err)
		}
		want, wantOK := r.applyDecimal(amount)
		if got, ok := r.Apply(amount); got != want || ok != wantOK {
			t.Fatalf("Apply(%d) at %s = %d, %v; decimal says %d, %v", amount, r, got, ok, want, wantOK)
		}
	}
}

func TestConverterCacheSeesSpreadChange(t *testing.T) {
	c := NewConverter(mustStatic(t))
	src, dst := Asset{"EUR", 2}, Asset{"USD", 2}
	if got, _ := c.Convert(100, src, dst, zero); got != 108 {
		t.Fatalf("no spread: %d", got)
	}
	if got, _ := c.Convert(100, src, dst, jsSpread); got != 107 {
		t.Fatalf("after spread change: %d, want 107", got)
	}
}

func TestConvertAllocations(t *testing.T) {
	tests := []struct {
		name     string
		b        Backend
		src, dst Asset
		spread   decimal.Decimal
	}{
		{"one-to-one same scale", OneToOne{}, Asset{"USD", 2}, Asset{"USD", 2}, zero},
		{"one-to-one spread", OneToOne{}, Asset{"USD", 2}, Asset{"USD", 9}, jsSpread},
		{"static cached", mustStatic(t), Asset{"EUR", 2}, Asset{"USD", 9}, jsSpread},
	}
	for _, tc := range tests {
		c := NewConverter(tc.b)
		if _, err := c.Convert(1, tc.src, tc.dst, tc.spread); err != nil { // warm the cache
			t.Fatal(err)
		}
		n := testing.AllocsPerRun(100, func() { _, _ = c.Convert(123456, tc.src, tc.dst, tc.spread) })
		if n != 0 {
			t.Errorf("%s: %.1f allocations per Convert, want 0", tc.name, n)
		}
	}
}
