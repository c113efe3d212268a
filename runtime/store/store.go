// Package store is the connector's durable state: account balances with their limits, and a
// small key/value space for other runtime state (settlement intents, routing epochs, …).
//
// Balances follow RFC 32 and the JS connector: a positive balance means the peer owes us. Each
// account has a committed Balance and a Pending amount: the sum of outgoing Prepares that were
// reserved but are not yet fulfilled or rejected. The packet path uses four operations:
//
//   - AddWithin: incoming Prepare (+amount, checked against the maximum), its refund on a
//     Reject (−amount, unchecked), admin adjustments and incoming settlements;
//   - Reserve: outgoing Prepare, checked against the minimum (Balance − Pending − amount);
//   - Commit: outgoing Fulfill, moves the amount from Pending to Balance, never refused for a
//     limit (the money already left);
//   - Release: outgoing Reject or error, drops the reservation.
//
// Every operation is a single atomic read-check-write on one account, so a Redis store runs
// each as one Lua script over a hash {balance, pending}, and an embedded store can group the
// writes of many accounts into one durable batch before it acknowledges them. Limits travel with
// each call rather than living in the store: changing an account's limits never touches its
// balance.
//
// Three implementations: Memory (lost on restart, as the JS connector's memdown), File (the
// embedded persistent store: a group-committed write-ahead log, checkpointed into bbolt) and Redis
// (shared by replicas, one Lua script per operation). The persistent ones implement PacketScoper,
// whose doc (scope.go) is the durability and recovery contract: a packet's balance changes become
// durable together before the packet is answered; after a crash, packets in flight count nowhere
// and reservations start at zero (Redis: this instance's), since no packet reserved by the dead
// process can still be fulfilled through it.
//
// Balances are int64. Arithmetic is checked: an operation whose result (or Balance − Pending)
// would leave the int64 range is refused with ErrOverflow and changes nothing. The middleware
// reports that as T04 Insufficient Liquidity, since the int64 range acts as the outermost
// balance limit and settling brings the account back into range.
package store

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Limit failures are returned as *LimitError, which matches ErrAboveMaximum or
// ErrBelowMinimum with errors.Is.
var (
	ErrAboveMaximum  = errors.New("store: balance would exceed its maximum")
	ErrBelowMinimum  = errors.New("store: balance would fall below its minimum")
	ErrOverflow      = errors.New("store: balance arithmetic would overflow int64")
	ErrInvalidAmount = errors.New("store: amount must be positive")
	ErrNotFound      = errors.New("store: key not found")
	ErrClosed        = errors.New("store: closed")
)

// AccountBalance is one account's balance state.
type AccountBalance struct {
	Balance int64 // committed; positive: the peer owes us
	Pending int64 // reserved by outgoing Prepares in flight (≥ 0)
}

// Available is Balance − Pending, the amount the minimum check of Reserve is applied to. ok is
// false when it does not fit in an int64.
func (b AccountBalance) Available() (v int64, ok bool) { return Sub(b.Balance, b.Pending) }

// LimitError says that an operation was refused because of a balance limit. It carries enough
// for a log line; the middleware decides how much of it a peer may see.
type LimitError struct {
	Account  string
	Balance  int64 // current committed balance
	Pending  int64
	Proposed int64 // the value that was compared with Limit
	Limit    int64
	Err      error // ErrAboveMaximum or ErrBelowMinimum
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: account=%s balance=%d pending=%d proposed=%d limit=%d",
		e.Err, e.Account, e.Balance, e.Pending, e.Proposed, e.Limit)
}

// Unwrap lets errors.Is match the sentinel.
func (e *LimitError) Unwrap() error { return e.Err }

// Balances is the balance half of a Store. Unknown accounts have a zero balance; they are
// created by their first write. Every method is safe for concurrent use.
type Balances interface {
	// AddWithin adds delta (either sign) to the committed balance if the result stays within the
	// bounds given: result ≤ *max, and result − Pending ≥ *min. A nil bound is not checked.
	AddWithin(ctx context.Context, account string, delta int64, min, max *int64) (int64, error)
	// Reserve adds amount (> 0) to Pending if Balance − (Pending + amount) ≥ *min (nil: no
	// minimum). It returns the resulting available balance.
	Reserve(ctx context.Context, account string, amount int64, min *int64) (int64, error)
	// Commit subtracts amount (> 0) from both Balance and Pending. It is never refused for a
	// limit; it returns the new committed balance.
	Commit(ctx context.Context, account string, amount int64) (int64, error)
	// Release subtracts amount (> 0) from Pending.
	Release(ctx context.Context, account string, amount int64) error
	// Get returns the account's balance state.
	Get(ctx context.Context, account string) (AccountBalance, error)
	// Set overwrites the committed balance (admin API); Pending is kept.
	Set(ctx context.Context, account string, balance int64) error
}

// KV is a small key/value space for runtime state other than balances. Values are copied in
// and out; callers may reuse their slices.
type KV interface {
	GetKey(ctx context.Context, key string) ([]byte, error) // ErrNotFound when absent
	PutKey(ctx context.Context, key string, value []byte) error
	DeleteKey(ctx context.Context, key string) error // deleting an absent key is not an error
	// CreateKey writes the key only if it is absent, and reports whether it did: of calls
	// racing with one key, on one store or on replicas sharing it, exactly one creates it. The
	// value is durable when CreateKey returns.
	CreateKey(ctx context.Context, key string, value []byte) (bool, error)
	// DeleteKeyIf deletes the key only if it still holds was, the value read from it (as
	// GetKey returned it: an empty value may come back as nil or empty; both match), and
	// reports whether it did. What is read, found stale and then deleted can so never take
	// with it a newer value written in between, by this runtime or by a replica sharing the
	// store: the comparison and the deletion are one atomic step on the store. An absent key
	// is not an error (false). The deletion is durable when DeleteKeyIf returns.
	DeleteKeyIf(ctx context.Context, key string, was []byte) (bool, error)
}

// Store is what the connector runtime needs from a state backend (memory, embedded file,
// Redis).
type Store interface {
	Balances
	KV
	Settlements
	Close() error
}

// MustApply marks ctx for a write its caller cannot take back if it fails: a refund, whose
// packet is answered whatever the store says. A store that cannot tell at once whether a
// failed write was applied (Redis) then applies it later, once. Without the mark, a failed
// AddWithin is undone or voided later, so that it counts nowhere, as its caller (which
// rejected the packet, or answered an error) assumes.
func MustApply(ctx context.Context) context.Context {
	return context.WithValue(ctx, mustApplyKey{}, true)
}

type mustApplyKey struct{}

func mustApplyFrom(ctx context.Context) bool { return ctx.Value(mustApplyKey{}) != nil }

// Failer is implemented by the stores that can fail for good while running (Redis, when
// another runtime took its instance over). Failed is closed then and Err says why: every write
// is refused from then on, and the runtime must stop, to be restarted.
type Failer interface {
	Failed() <-chan struct{}
	Err() error
}

// Add returns a+b and whether it fits in an int64.
func Add(a, b int64) (int64, bool) {
	s := a + b
	// Overflow iff both operands have the same sign and the sum's sign differs.
	if (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0) {
		return 0, false
	}
	return s, true
}

// Sub returns a−b and whether it fits in an int64.
func Sub(a, b int64) (int64, bool) {
	d := a - b
	if (a >= 0) != (b >= 0) && (d >= 0) != (a >= 0) {
		return 0, false
	}
	return d, true
}
