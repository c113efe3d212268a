package middleware

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// The memory bound JS lacks: beyond dedupeMaxEntries a new packet is still forwarded, only not
// remembered. Cleanup interval and lifetime default to config.DefaultDeduplicate (JS: 30 s each).
const (
	dedupeShards      = 32
	dedupeMaxEntries  = 1 << 18
	dedupeMaxPerShard = dedupeMaxEntries / dedupeShards
)

// dedupeKey is the first 16 bytes of sha256(condition ‖ destination ‖ 0 ‖ data): the parts
// of a Prepare that do not change from hop to hop (amount and expiry do).
type dedupeKey [16]byte

// dedupeEntry is one remembered outgoing Prepare and, once known, its outcome. The result
// fields are written once, before wait is closed, and read only after finished is seen (under
// the shard lock) or wait is closed.
type dedupeEntry struct {
	amount    uint64
	expiresAt time.Time
	keepUntil time.Time
	finished  bool
	wait      chan struct{} // made by the first duplicate that has to wait
	f         *ilp.Fulfill
	err       error
}

type dedupeShard struct {
	mu        sync.Mutex
	m         map[dedupeKey]*dedupeEntry
	lastSweep time.Time
}

// dedupeCache is shared by every account, like the JS middleware's single cache, so that a
// loop through different next hops is caught too. It is sharded to keep accounts from
// contending on one lock; cleanup is done lazily by the packets themselves, so there is no
// timer goroutine to stop and the work per sweep is bounded by the shard size.
type dedupeCache struct {
	shards [dedupeShards]dedupeShard
	bufs   sync.Pool // *[]byte scratch for the key hash
}

func newDedupeCache() *dedupeCache {
	c := &dedupeCache{bufs: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
	for i := range c.shards {
		c.shards[i].m = make(map[dedupeKey]*dedupeEntry)
	}
	return c
}

func (c *dedupeCache) key(p *ilp.Prepare) dedupeKey {
	bp := c.bufs.Get().(*[]byte)
	buf := append((*bp)[:0], p.ExecutionCondition[:]...)
	buf = append(buf, p.Destination...)
	buf = append(buf, 0)
	buf = append(buf, p.Data...)
	sum := sha256.Sum256(buf)
	*bp = buf
	c.bufs.Put(bp)
	return dedupeKey(sum[:16])
}

// sweep drops entries past their lifetime if the interval has passed since the last sweep.
func (s *dedupeShard) sweep(now time.Time, interval time.Duration, force bool) {
	if !force && now.Sub(s.lastSweep) < interval {
		return
	}
	s.lastSweep = now
	for k, e := range s.m {
		if e.keepUntil.Before(now) {
			delete(s.m, k)
		}
	}
}

func (e *dedupeEntry) covers(p *ilp.Prepare) bool {
	return e.amount >= p.Amount && !e.expiresAt.Before(p.ExpiresAt)
}

// deduplicate links a Prepare to an earlier one with the same condition, destination and data
// and an amount and expiry at least as large: it gets the earlier packet's outcome instead of
// a second send. A looping packet therefore waits for itself and ends at its expiry.
func (b *builder) deduplicate() func(ilp.Handler) ilp.Handler {
	def := config.DefaultDeduplicate()
	interval, lifetime := def.CleanupInterval, def.PacketLifetime
	if d := b.acct.Deduplicate; d != nil {
		if d.CleanupInterval > 0 {
			interval = d.CleanupInterval
		}
		if d.PacketLifetime > 0 {
			lifetime = d.PacketLifetime
		}
	}
	cache, clock := b.env.State.dedupe, b.env.Clock
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			key := cache.key(p)
			sh := &cache.shards[key[0]%dedupeShards]
			now := clock.Now()
			sh.mu.Lock()
			sh.sweep(now, interval, false)
			if e, ok := sh.m[key]; ok && e.covers(p) {
				return b.awaitDuplicate(ctx, sh, e, p.ExpiresAt.Sub(now))
			}
			e := &dedupeEntry{amount: p.Amount, expiresAt: p.ExpiresAt, keepUntil: p.ExpiresAt.Add(lifetime)}
			if len(sh.m) >= dedupeMaxPerShard && now.Sub(sh.lastSweep) >= time.Second {
				// Full: sweep early, but at most once a second, so that a full shard of live
				// entries does not cost a scan per packet.
				sh.sweep(now, interval, true)
			}
			if len(sh.m) < dedupeMaxPerShard {
				sh.m[key] = e
			}
			sh.mu.Unlock()
			return forwardFirst(ctx, p, next, sh, key, e)
		}
	}
}

// forwardFirst sends the first copy of a packet and publishes its outcome to duplicates, even
// if next panics (they get T00 and the panic goes on). Only a Fulfill is kept for later copies:
// a Reject — often ours, before the packet was sent (a balance or throughput limit), or a
// temporary one — must not answer an identical packet sent again after the cause is gone.
// Copies already waiting get it all the same.
func forwardFirst(ctx context.Context, p *ilp.Prepare, next ilp.Handler, sh *dedupeShard, key dedupeKey, e *dedupeEntry) (f *ilp.Fulfill, err error) {
	defer func() {
		rf, rerr := f, err
		if v := recover(); v != nil {
			rf, rerr = nil, errors.New("dedupe: the first copy of this packet panicked")
			defer panic(v)
		}
		sh.mu.Lock()
		e.f, e.err, e.finished = rf, rerr, true
		if e.wait != nil {
			close(e.wait)
		}
		if rerr != nil && sh.m[key] == e {
			delete(sh.m, key)
		}
		sh.mu.Unlock()
	}()
	return next(ctx, p)
}

// awaitDuplicate is entered with sh locked and returns the outcome of e, or R00 once the copy's
// own expiry (left from now) has passed: a Fulfill that comes after it would be kept by this
// connector while the sender has given the packet up.
func (b *builder) awaitDuplicate(ctx context.Context, sh *dedupeShard, e *dedupeEntry, left time.Duration) (*ilp.Fulfill, error) {
	if e.finished {
		f, err := e.f, e.err
		sh.mu.Unlock()
		return f, err
	}
	if e.wait == nil {
		e.wait = make(chan struct{})
	}
	w := e.wait
	sh.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	select {
	case <-w:
		return e.f, e.err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, b.reject(ilp.CodeTransferTimedOut, msgExpired)
		}
		return nil, ctx.Err()
	}
}
