package middleware

import (
	"context"
	"errors"
	"math"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// Store operations named in logs and in the ilp_connector_balance_store_errors metric.
const (
	opRefund  = "refund"
	opCommit  = "commit"
	opRelease = "release"
)

// balanceIn raises the source account's balance by the Prepare's amount before forwarding
// (T04 "exceeded maximum balance." above the maximum, as JS) and refunds it when the packet is
// not fulfilled. Without balance settings the middleware is absent, as in JS.
func (b *builder) balanceIn() func(ilp.Handler) ilp.Handler {
	if b.acct.Balance == nil {
		if b.st.once(&b.st.warnedUnbounded) {
			b.env.Log.Warn("no balance settings: this account's balance is not tracked and it can spend without limit")
		}
		return nil
	}
	if b.acct.Balance.SettleThreshold != nil && b.acct.SettlementEngine == nil && b.st.once(&b.st.warnedThreshold) {
		// The JS connector "settles" through plugins whose sendMoney moves nothing
		// (ilp-plugin-btp, mini-accounts) by resetting the balance as if it had paid; ilpfleet
		// books only what an engine settles, so a JS user switching must hear the reset is gone.
		b.env.Log.Warn("balance.settleThreshold has no effect without settlementEngine: ilpfleet settles only through " +
			"RFC 38 settlement engines (the JS connector resets the balance to settleTo with no money moving when " +
			"its plugin cannot settle); the balance will stop at its minimum")
	}
	maximum := copyLimit(b.acct.Balance.Maximum)
	st, id := b.env.Store, b.id
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			if p.Amount == 0 {
				return next(ctx, p)
			}
			amt, ok := toInt64(p.Amount)
			if !ok {
				return nil, b.reject(ilp.CodeInsufficientLiquidity, msgOverflow)
			}
			nb, err := st.AddWithin(ctx, id, amt, nil, maximum)
			if err != nil {
				return nil, b.balanceReject(err)
			}
			b.balanceChanged(nb)
			return b.forwardRaised(ctx, p, next, amt)
		}
	}
}

// forwardRaised calls next with the source's balance raised by amt and refunds it unless the
// packet is fulfilled, a panic included (the panic goes on after the refund).
func (b *builder) forwardRaised(ctx context.Context, p *ilp.Prepare, next ilp.Handler, amt int64) (f *ilp.Fulfill, err error) {
	fulfilled := false
	defer func() {
		if fulfilled {
			return
		}
		// The source owes us nothing for this packet. Refund without the caller's
		// cancellation, which would otherwise make a persistent store skip the write, and
		// whatever happens to the store: the packet is rejected either way.
		if nb, rerr := b.env.Store.AddWithin(store.MustApply(detach(ctx)), b.id, -amt, nil, nil); rerr != nil {
			b.storeFailed(opRefund, amt, rerr)
		} else {
			b.balanceChanged(nb)
		}
	}()
	f, err = next(ctx, p)
	fulfilled = err == nil && f != nil
	return f, err
}

// balanceOut reserves the amount on the next hop's account before forwarding (T04 if that
// would take it below its minimum), commits the reservation on Fulfill and releases it
// otherwise. A Fulfill is passed upstream whatever the store says: the money left already.
func (b *builder) balanceOut() func(ilp.Handler) ilp.Handler {
	if b.acct.Balance == nil {
		return nil
	}
	minimum := copyLimit(b.acct.Balance.Minimum)
	st, id := b.env.Store, b.id
	dc := &detachCache{}
	return func(next ilp.Handler) ilp.Handler {
		return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			if p.Amount == 0 {
				return next(ctx, p)
			}
			amt, ok := toInt64(p.Amount)
			if !ok {
				return nil, b.reject(ilp.CodeInsufficientLiquidity, msgOverflow)
			}
			if _, err := st.Reserve(ctx, id, amt, minimum); err != nil {
				return nil, b.balanceReject(err)
			}
			return b.forwardReserved(ctx, p, next, amt, dc)
		}
	}
}

// forwardReserved calls next with amt reserved and settles the reservation whatever happens,
// a panic included (the panic goes on after the release). dc detaches ctx for the store.
func (b *builder) forwardReserved(ctx context.Context, p *ilp.Prepare, next ilp.Handler, amt int64, dc *detachCache) (f *ilp.Fulfill, err error) {
	st, id := b.env.Store, b.id
	done := false
	defer func() {
		if !done {
			if rerr := st.Release(dc.detach(ctx), id, amt); rerr != nil {
				b.storeFailed(opRelease, amt, rerr)
			}
		}
	}()
	f, err = next(ctx, p)
	done = true
	dctx := dc.detach(ctx)
	if err == nil && f != nil {
		if nb, cerr := st.Commit(dctx, id, amt); cerr != nil {
			b.storeFailed(opCommit, amt, cerr)
		} else {
			b.balanceChanged(nb)
		}
		return f, nil
	}
	if rerr := st.Release(dctx, id, amt); rerr != nil {
		b.storeFailed(opRelease, amt, rerr)
	}
	return f, err
}

// balanceReject maps a refused balance operation to what the peer sees.
func (b *builder) balanceReject(err error) *ilp.Reject {
	switch {
	case errors.Is(err, store.ErrAboveMaximum):
		b.env.Log.Info("rejected balance update", "err", err)
		return b.reject(ilp.CodeInsufficientLiquidity, msgMaxBalance)
	case errors.Is(err, store.ErrBelowMinimum):
		b.env.Log.Info("rejected balance update", "err", err)
		return b.reject(ilp.CodeInsufficientLiquidity, msgOutgoingLiquidity)
	case errors.Is(err, store.ErrOverflow):
		b.env.Log.Warn("rejected balance update", "err", err)
		return b.reject(ilp.CodeInsufficientLiquidity, msgOverflow)
	default:
		b.logStoreFailure(err)
		return b.reject(ilp.CodeInternalError, msgBalanceStore)
	}
}

// logStoreFailure logs a packet refused because the balance store failed: at ERROR once per
// storeLogEvery with the count held back (while the store is away, every packet fails so: a
// line per packet grew with the traffic), at DEBUG otherwise.
func (b *builder) logStoreFailure(err error) {
	if ok, n := b.env.State.storeLog.Allow("refused", b.env.Clock.Now()); ok {
		b.env.Log.Error("balance store failed; packets refused (T00) while it fails, logged at most every "+storeLogEvery.String(), "err", err, "suppressed", n)
		return
	}
	b.env.Log.Debug("balance store failed", "err", err)
}

// storeFailed records a store failure after the outcome of a packet was decided. Unless the
// store will still apply the write, the balance is now wrong by amt: say so loudly so that
// someone reconciles it.
func (b *builder) storeFailed(op string, amt int64, err error) {
	if store.AppliedLater(err) {
		b.env.Log.Warn("balance store could not confirm a write after the packet was settled; it applies it once it can",
			"operation", op, "amount", amt, "err", err)
		return // nothing to reconcile: not a store error of the metric
	}
	b.env.Log.Error("balance store failed after the packet was settled; RECONCILIATION REQUIRED",
		"operation", op, "amount", amt, "err", err)
	if s := b.metrics(); s != nil {
		s.storeError(op)
	}
}

func (b *builder) balanceChanged(nb int64) {
	if s := b.metrics(); s != nil {
		s.balance.Set(float64(nb))
	}
	if b.env.OnBalance != nil {
		b.env.OnBalance(b.id, nb)
	}
}

func toInt64(v uint64) (int64, bool) {
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// copyLimit detaches a limit from the config struct it came from.
func copyLimit(v *int64) *int64 {
	if v == nil {
		return nil
	}
	c := *v
	return &c
}

// detach is context.WithoutCancel for the store calls that must finish whatever happened to
// the packet's context. The standard library's is a struct, boxed anew by every Value lookup
// through it: a persistent store looks its packet scope up that way on every packet.
func detach(ctx context.Context) context.Context { return &detached{ctx} }

type detached struct{ parent context.Context }

func (*detached) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*detached) Done() <-chan struct{}       { return nil }
func (*detached) Err() error                  { return nil }
func (d *detached) Value(key any) any         { return d.parent.Value(key) }

// detachCache keeps the last detached context made, for the next packet that comes with the
// same context: the connector hands the packets of one link connection the same context (its
// account's packetContext), so most packets need no wrapper of their own. A detached context
// holds no state, so packets may share one. Only a Comparable parent is kept, so that comparing
// it with the next packet's context cannot panic.
type detachCache struct{ last atomic.Pointer[detached] }

func (c *detachCache) detach(ctx context.Context) context.Context {
	if d := c.last.Load(); d != nil && d.parent == ctx {
		return d
	}
	d := &detached{ctx}
	if Comparable(ctx) {
		c.last.Store(d)
	}
	return d
}

// Comparable reports whether ctx == other can never panic, whatever other is: ctx's type has
// no interface inside it (an interface holding an incomparable value panics), nor slices, maps
// or funcs; another type compares unequal without a panic. Caches keyed by a context (the
// detached contexts here, the connector's packet contexts) keep only such a key. Most contexts
// are pointers; context.Background is an empty struct.
func Comparable(ctx context.Context) bool { return strictlyComparable(reflect.TypeOf(ctx)) }

func strictlyComparable(t reflect.Type) bool {
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Chan, reflect.UnsafePointer, reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return strictlyComparable(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !strictlyComparable(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false // interfaces, slices, maps, funcs
}
