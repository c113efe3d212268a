package middleware

import (
	"context"
	"errors"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// expire bounds the wait for the next hop by the Prepare's expiry: the link gets a context
// with that deadline (so it stops waiting and frees its request), and the packet is rejected
// with R00. The deadline is the expiry rounded up to the next deadlineSlot (1 ms), shared by
// the packets of that slot (deadline.go). A Prepare already expired is not sent at all. A
// Fulfill that arrives is passed on even if late: the next hop considers it paid.
func (b *builder) expire() func(ilp.Handler) ilp.Handler {
	clock := b.env.Clock
	_, system := clock.(RealClock)
	shared := newDeadlines()
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			now := clock.Now()
			left := p.ExpiresAt.Sub(now)
			if left <= 0 {
				return nil, b.reject(ilp.CodeTransferTimedOut, msgExpired)
			}
			if !system {
				now = time.Now() // the deadline runs on the system clock: left from its now
			}
			l := shared.acquireAt(ctx, now.Add(left))
			defer shared.release(l) // deferred: a panicking link must not keep the slot's timer
			f, err := next(l.ctx, p)
			expired := errors.Is(l.ctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
			if err != nil && expired {
				b.env.Log.Debug("packet expired", "destination", p.Destination, "expiresAt", p.ExpiresAt)
				return nil, b.reject(ilp.CodeTransferTimedOut, msgExpired)
			}
			return f, err
		}
	}
}

// validateFulfillment turns a Fulfill whose fulfillment does not hash to the condition into
// F05, so that a bad fulfillment is never passed upstream (and the outgoing balance, outside
// this stage, releases instead of committing).
func (b *builder) validateFulfillment() func(ilp.Handler) ilp.Handler {
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			f, err := next(ctx, p)
			if err != nil || f == nil {
				return f, err
			}
			if !f.Matches(p.ExecutionCondition) {
				b.env.Log.Error("next hop sent a fulfillment that does not match the condition",
					"destination", p.Destination)
				return nil, b.reject(ilp.CodeWrongCondition, msgWrongFulfillment)
			}
			return f, nil
		}
	}
}

// alert records the next hop's T04 "exceeded maximum balance." rejects: the peer thinks we owe
// it more than its limit while our balance said the packet was fine, so the two balances are
// out of sync (typically after a restart of one side). Operators see them in the admin API.
func (b *builder) alert() func(ilp.Handler) ilp.Handler {
	alerts := b.env.Alerts
	if alerts == nil {
		return nil
	}
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			f, err := next(ctx, p)
			if err == nil {
				return f, err
			}
			var r *ilp.Reject
			if errors.As(err, &r) && r.Code == ilp.CodeInsufficientLiquidity && r.Message == msgMaxBalance {
				b.env.Log.Warn("peer says its balance limit is exceeded; balances may be out of sync",
					"triggeredBy", r.TriggeredBy)
				alerts.add(b.id, string(r.TriggeredBy), r.Message)
			}
			return f, err
		}
	}
}
