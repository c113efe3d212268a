package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// DefaultThroughputPeriod is the throughput refillPeriod when none is set (JS: 1 s). Rate-limit
// defaults are config.DefaultRateLimit's (JS code: 10000 per 60 s, capacity = refillCount).
const DefaultThroughputPeriod = time.Second

// Reject messages peers see; JS wording where JS has one, so that tools matching on it work.
const (
	msgInternal          = "internal error."
	msgRateLimited       = "too many requests, throttling."
	msgThroughput        = "exceeded money bandwidth, throttling."
	msgMaxBalance        = "exceeded maximum balance."
	msgOverflow          = "balance would leave the int64 range; settle the account before sending more."
	msgOutgoingLiquidity = "insufficient liquidity: the next hop's balance would fall below its minimum; retry after it settles."
	msgBalanceStore      = "internal error: could not update the balance."
	msgExpired           = "packet expired."
	msgWrongFulfillment  = "fulfillment did not match expected value."
)

// errorHandler is the outermost incoming stage: whatever the rest of the pipeline returns or
// panics with, the source gets a Fulfill or a well-formed Reject with triggeredBy set.
func (b *builder) errorHandler() func(ilp.Handler) ilp.Handler {
	addr, log := b.env.Address, b.env.Log
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (f *ilp.Fulfill, err error) {
			defer func() {
				if v := recover(); v != nil {
					log.Error("panic in packet handler", "panic", v, "destination", p.Destination)
					f, err = nil, &ilp.Reject{Code: ilp.CodeInternalError, TriggeredBy: addr(), Message: msgInternal}
				}
			}()
			f, err = next(ctx, p)
			if err == nil && f != nil {
				return f, nil
			}
			if err == nil {
				err = errors.New("handler returned neither a fulfill nor an error")
			}
			return nil, toReject(err, addr, log)
		}
	}
}

// toReject turns err into a Reject: a Reject (possibly wrapped) keeps its code and gets our
// address when it has none; anything else is T00 with a message that leaks nothing internal.
// A Reject may be shared (dedupe hands one result to several callers), so it is copied before
// it is changed.
func toReject(err error, addr func() ilp.Address, log *slog.Logger) *ilp.Reject {
	var r *ilp.Reject
	if errors.As(err, &r) {
		if r.TriggeredBy != "" {
			return r
		}
		c := *r
		c.TriggeredBy = addr()
		return &c
	}
	log.Warn("internal error while handling a packet", "err", err)
	return &ilp.Reject{Code: ilp.CodeInternalError, TriggeredBy: addr(), Message: msgInternal}
}

// rateLimit rejects with T05 when the account's packet token bucket is empty. Absent
// settings (or zero fields) mean the JS defaults, 10000 packets per minute.
func (b *builder) rateLimit() func(ilp.Handler) ilp.Handler {
	rl := config.DefaultRateLimit()
	if set := b.acct.RateLimit; set != nil {
		rl.Capacity = set.Capacity
		if set.RefillCount > 0 {
			rl.RefillCount = set.RefillCount
		}
		if set.RefillPeriod > 0 {
			rl.RefillPeriod = set.RefillPeriod
		}
	}
	if rl.Capacity == 0 {
		rl.Capacity = rl.RefillCount
	}
	clock := b.env.Clock
	bk := b.configuredOnActivate(&b.st.rateLimit, rl.Capacity, rl.RefillCount, rl.RefillPeriod)
	stats := b.metrics()
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			if !bk.take(1, clock.Now()) {
				if stats != nil {
					stats.rateLimited.Inc()
				}
				return nil, b.reject(ilp.CodeRateLimited, msgRateLimited)
			}
			return next(ctx, p)
		}
	}
}

// maxPacketAmount rejects incoming Prepares above the account's maxPacketAmount with F08 and
// the RFC 27 data (received amount, maximum amount) so that the sender can split.
func (b *builder) maxPacketAmount() func(ilp.Handler) ilp.Handler {
	if b.acct.MaxPacketAmount == nil {
		return nil
	}
	maxAmount := *b.acct.MaxPacketAmount
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			if p.Amount > maxAmount {
				r := b.reject(ilp.CodeAmountTooLarge,
					fmt.Sprintf("packet size too large. maxAmount=%d actualAmount=%d", maxAmount, p.Amount))
				r.Data = ilp.AmountTooLargeData(p.Amount, maxAmount)
				return nil, r
			}
			return next(ctx, p)
		}
	}
}

// throughputIn and throughputOut limit the amount per refill period in each direction (T04).
func (b *builder) throughputIn() func(ilp.Handler) ilp.Handler {
	t := b.acct.Throughput
	if t == nil || t.IncomingAmount == nil {
		return nil
	}
	return b.throughput(&b.st.throughputIn, *t.IncomingAmount, t.RefillPeriod)
}

func (b *builder) throughputOut() func(ilp.Handler) ilp.Handler {
	t := b.acct.Throughput
	if t == nil || t.OutgoingAmount == nil {
		return nil
	}
	return b.throughput(&b.st.throughputOut, *t.OutgoingAmount, t.RefillPeriod)
}

func (b *builder) throughput(slot **bucket, amount uint64, period time.Duration) func(ilp.Handler) ilp.Handler {
	if period <= 0 {
		period = DefaultThroughputPeriod
	}
	clock := b.env.Clock
	bk := b.configuredOnActivate(slot, amount, amount, period)
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			if !bk.take(p.Amount, clock.Now()) {
				return nil, b.reject(ilp.CodeInsufficientLiquidity, msgThroughput)
			}
			return next(ctx, p)
		}
	}
}

// configuredOnActivate returns the account's bucket in slot, to be given these limits when the
// pipeline goes into service: until then, a running pipeline sharing the bucket keeps its own.
func (b *builder) configuredOnActivate(slot **bucket, capacity, refill uint64, period time.Duration) *bucket {
	bk := b.st.bucket(slot)
	b.onActivate = append(b.onActivate, func(now time.Time) { bk.configure(capacity, refill, period, now) })
	return bk
}
