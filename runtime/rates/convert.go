package rates

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/shopspring/decimal"
)

// Rate is a scaled rate in a form that converts amounts exactly without allocating:
// coef·10^exp, with coef < 2^64. Rates from ScaledRate have at most 15 significant digits, so
// they always fit; others fall back to decimal arithmetic.
type Rate struct {
	dec     decimal.Decimal
	coef    uint64
	exp     int32
	compact bool
}

// NewRate wraps a scaled rate (destination base units per source base unit). A negative rate
// is an error: it would make a negative amount.
func NewRate(d decimal.Decimal) (Rate, error) {
	if d.Sign() < 0 {
		return Rate{}, fmt.Errorf("%w: %s (is the spread above 1?)", ErrInvalidRate, d)
	}
	r := Rate{dec: d}
	if c := d.Coefficient(); c.IsUint64() {
		r.coef, r.exp, r.compact = c.Uint64(), d.Exponent(), true
	}
	return r, nil
}

// Decimal is the rate as a decimal.
func (r Rate) Decimal() decimal.Decimal { return r.dec }

// String is the rate in decimal notation.
func (r Rate) String() string { return r.dec.String() }

// pow10 holds 10^0 … 10^19, every power of ten that fits in a uint64.
var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// Apply returns floor(amount × r), or 0 and false if that does not fit in a uint64.
func (r Rate) Apply(amount uint64) (uint64, bool) {
	if !r.compact {
		return r.applyDecimal(amount)
	}
	hi, lo := bits.Mul64(amount, r.coef)
	if r.exp >= 0 {
		if hi != 0 {
			return 0, false
		}
		if lo == 0 {
			return 0, true
		}
		if int(r.exp) >= len(pow10) {
			return 0, false
		}
		h, l := bits.Mul64(lo, pow10[r.exp])
		if h != 0 {
			return 0, false
		}
		return l, true
	}
	// Divide the 128-bit product by 10^-exp, at most 10^19 at a time: floor(floor(x/a)/b) is
	// floor(x/(a·b)) for positive integers. The loop ends when the divisor is used up or the
	// quotient is zero, so it runs at most (-exp)/19 + 1 times.
	for k := -int64(r.exp); k > 0 && (hi|lo) != 0; {
		step := min(k, int64(len(pow10)-1))
		d := pow10[step]
		qhi := hi / d
		qlo, _ := bits.Div64(hi%d, lo, d)
		hi, lo = qhi, qlo
		k -= step
	}
	if hi != 0 {
		return 0, false
	}
	return lo, true
}

func (r Rate) applyDecimal(amount uint64) (uint64, bool) {
	v := decimal.NewFromBigInt(new(big.Int).SetUint64(amount), 0).Mul(r.dec).Floor().BigInt()
	if !v.IsUint64() {
		return 0, false
	}
	return v.Uint64(), true
}

// MaxAmount is the largest source amount a with floor(a × r) ≤ MaxUint64: ceil(2^64/r) − 1,
// computed exactly. It is what an F08 reject should carry as maximumAmount.
func (r Rate) MaxAmount() uint64 {
	if r.dec.Sign() <= 0 {
		return math.MaxUint64
	}
	num := new(big.Int).Lsh(big.NewInt(1), 64)
	den := new(big.Int).Set(r.dec.Coefficient())
	if e := r.dec.Exponent(); e >= 0 {
		den.Mul(den, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(e)), nil))
	} else {
		num.Mul(num, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-e)), nil))
	}
	num.Sub(num, big.NewInt(1)) // ceil(n/d) − 1 = floor((n−1)/d)
	q := num.Quo(num, den)
	if !q.IsUint64() {
		return math.MaxUint64
	}
	return q.Uint64()
}

// maxCacheEntries bounds the Converter's cache: there are as many pairs as pairs of accounts'
// assets, which is small; a runaway caller cannot make it grow without bound.
const maxCacheEntries = 4096

type pairKey struct{ src, dst Asset }

type cached struct {
	spread decimal.Decimal
	rate   Rate
}

// Converter converts amounts with a Backend. It is safe for concurrent use. For backends that
// are Immutable it caches the scaled rate of each asset pair, so the packet path computes it
// once; for the one-to-one backend between assets of the same scale with no spread it returns
// the amount as is. A new backend (config reload) needs a new Converter, swapped atomically
// with the rest of the config.
type Converter struct {
	backend  Backend
	waiter   ContextBackend // backend, when its ScaledRate may wait; nil otherwise
	oneToOne bool
	cache    bool
	mu       sync.Mutex // serializes cache writers
	entries  atomic.Pointer[map[pairKey]cached]
}

// NewConverter returns a Converter over b.
func NewConverter(b Backend) *Converter {
	c := &Converter{backend: b}
	_, c.oneToOne = b.(OneToOne)
	c.waiter, _ = b.(ContextBackend)
	if im, ok := b.(Immutable); ok && im.Immutable() {
		c.cache = true
	}
	m := make(map[pairKey]cached)
	c.entries.Store(&m)
	return c
}

// Backend is the backend c converts with.
func (c *Converter) Backend() Backend { return c.backend }

// Waits reports whether a conversion may wait for the backend's rates (a ContextBackend), so
// that callers bound it with ConvertContext.
func (c *Converter) Waits() bool { return c.waiter != nil }

// Rate is the scaled rate from src to dst with spread, from the cache when possible. A backend
// that must wait for its rates waits as long as it takes (the ecb backend: up to its HTTP
// timeout); packets use RateContext.
func (c *Converter) Rate(src, dst Asset, spread decimal.Decimal) (Rate, error) {
	return c.RateContext(context.Background(), src, dst, spread)
}

// RateContext is Rate for a packet: a backend that must wait for its rates (ContextBackend)
// waits no longer than ctx, which should carry the packet's expiry as its deadline.
func (c *Converter) RateContext(ctx context.Context, src, dst Asset, spread decimal.Decimal) (Rate, error) {
	key := pairKey{src, dst}
	if c.cache {
		if e, ok := (*c.entries.Load())[key]; ok && e.spread.Equal(spread) {
			return e.rate, nil
		}
	}
	d, err := c.scaledRate(ctx, src, dst, spread)
	if err != nil {
		return Rate{}, err
	}
	r, err := NewRate(d)
	if err != nil {
		return Rate{}, err
	}
	if c.cache {
		c.store(key, cached{spread: spread, rate: r})
	}
	return r, nil
}

func (c *Converter) scaledRate(ctx context.Context, src, dst Asset, spread decimal.Decimal) (decimal.Decimal, error) {
	if c.waiter != nil {
		return c.waiter.ScaledRateContext(ctx, src, dst, spread)
	}
	return c.backend.ScaledRate(src, dst, spread)
}

// store adds an entry copy-on-write, so readers never lock.
func (c *Converter) store(key pairKey, e cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.entries.Load()
	if _, ok := old[key]; !ok && len(old) >= maxCacheEntries {
		return
	}
	m := make(map[pairKey]cached, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[key] = e
	c.entries.Store(&m)
}

// Convert returns floor(amount × rate) for a packet from an account in src to one in dst, with
// spread (CONNECTOR_SPREAD) applied, exactly as the JS route builder. Errors: an
// *UnknownAssetError from the backend, ErrInvalidRate for a spread above 1, an *OverflowError
// when the result exceeds a uint64. Code maps them to ILP codes. A backend that must wait for
// its rates waits as long as it takes; the packet path uses ConvertContext.
func (c *Converter) Convert(amount uint64, src, dst Asset, spread decimal.Decimal) (uint64, error) {
	return c.ConvertContext(context.Background(), amount, src, dst, spread)
}

// ConvertContext is Convert for a packet: ctx, which should carry the packet's expiry as its
// deadline, bounds the wait of a backend that has no usable rates yet (the ecb backend before
// its first fetch ends), which then answers its *NoRatesError while its fetch goes on.
func (c *Converter) ConvertContext(ctx context.Context, amount uint64, src, dst Asset, spread decimal.Decimal) (uint64, error) {
	if c.oneToOne && src.Scale == dst.Scale && spread.IsZero() {
		return amount, nil // the rate is exactly 1
	}
	r, err := c.RateContext(ctx, src, dst, spread)
	if err != nil {
		return 0, err
	}
	out, ok := r.Apply(amount)
	if !ok {
		return 0, &OverflowError{Amount: amount, Source: src, Dest: dst, Rate: r.dec, MaxAmount: r.MaxAmount()}
	}
	return out, nil
}

// Convert converts with a one-off Converter over b; see Converter.Convert. Use a Converter on
// the packet path.
func Convert(b Backend, amount uint64, src, dst Asset, spread decimal.Decimal) (uint64, error) {
	return NewConverter(b).Convert(amount, src, dst, spread)
}
