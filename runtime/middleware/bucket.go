package middleware

import (
	"math/bits"
	"sync"
	"time"
)

// bucket is a token bucket: it holds at most capacity tokens and gains refill tokens per
// period, continuously. Integer arithmetic only (amounts are money), with 128-bit intermediates
// so that large throughput amounts cannot overflow. A bucket is reconfigured in place when an
// account's settings change, so the tokens it holds survive a pipeline rebuild. A bucket that
// was never configured holds nothing and refills nothing: it refuses every take.
type bucket struct {
	mu       sync.Mutex
	capacity uint64
	refill   uint64
	period   time.Duration
	tokens   uint64
	last     time.Time
}

// newBucket returns a full bucket.
func newBucket(capacity, refill uint64, period time.Duration, now time.Time) *bucket {
	b := &bucket{}
	b.configure(capacity, refill, period, now)
	return b
}

// configure sets the limits. The first configuration fills the bucket; a later one keeps the
// tokens held (clamped to the new capacity).
func (b *bucket) configure(capacity, refill uint64, period time.Duration, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	first := b.period == 0
	if !first {
		b.advance(now) // account for the time under the old rate first
	}
	b.capacity, b.refill, b.period = capacity, refill, max(period, time.Nanosecond)
	if first {
		b.tokens, b.last = capacity, now
		return
	}
	b.tokens = min(b.tokens, capacity)
}

// take removes n tokens if the bucket holds them.
func (b *bucket) take(n uint64, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	if n > b.tokens {
		return false
	}
	b.tokens -= n
	return true
}

// advance adds the tokens earned since last. Only the time that earned whole tokens is
// consumed, so a slow refill rate still refills.
func (b *bucket) advance(now time.Time) {
	elapsed := now.Sub(b.last)
	if elapsed <= 0 || b.refill == 0 {
		if elapsed < 0 {
			b.last = now // clock went back: restart from here
		}
		return
	}
	room := b.capacity - b.tokens
	hi, lo := bits.Mul64(uint64(elapsed), b.refill)
	if hi >= uint64(b.period) { // quotient ≥ 2^64: certainly fills the bucket
		b.tokens, b.last = b.capacity, now
		return
	}
	earned, _ := bits.Div64(hi, lo, uint64(b.period))
	if earned >= room {
		b.tokens, b.last = b.capacity, now
		return
	}
	// Time that produced exactly `earned` tokens: earned·period/refill (< elapsed, fits).
	h2, l2 := bits.Mul64(earned, uint64(b.period))
	used, _ := bits.Div64(h2, l2, b.refill)
	b.tokens += earned
	b.last = b.last.Add(time.Duration(used))
}
