package store

import (
	"bytes"
	"context"
	"errors"
	"strconv"
)

// Settlements are the two balance changes of RFC 38 settlement, each recorded in the KV space
// together with the change, so that neither a crash nor a retry can count a settlement twice
// or lose it:
//
//   - an outgoing settlement that is due raises the balance to settleTo and records its
//     idempotency key, before the engine is asked (RFC 38: "debit the accounts payable, and
//     then send a request"); after a crash the recorded key is found and the request resent
//     with it, and the balance is not raised again;
//   - an incoming settlement lowers the balance once per idempotency key, however often the
//     engine repeats its request.
//
// "Together" means atomically and, for the persistent stores, durably as one write: the File
// store puts both in one log record, Redis runs one script. Neither operation takes part in
// a packet scope: each is durable when it returns.
type Settlements interface {
	// SettleDue raises the committed balance of account to settleTo if it is below threshold,
	// and writes key = the amount raised (a decimal string) in the same atomic write. It returns
	// the amount, or 0 with nothing written when the balance is not below threshold. Pending is
	// untouched. threshold > settleTo is refused with ErrInvalidAmount (it would lower the
	// balance); settleTo − balance not fitting in an int64 with ErrOverflow. Either way nothing
	// changes.
	SettleDue(ctx context.Context, account string, threshold, settleTo int64, key string) (int64, error)
	// CreditOnce adds delta (either sign; no limit is checked, like a refund) to the committed
	// balance of account and writes key = value and then every entry (a later one wins), in one
	// atomic write, unless key already exists: then it changes nothing and reports false.
	// ErrOverflow, with nothing changed, when the new balance (or it − Pending) does not fit in
	// an int64, as AddWithin; ErrConflict, with nothing changed, when a guarded entry's key no
	// longer holds the value it was computed from.
	CreditOnce(ctx context.Context, account string, delta int64, key string, value []byte, entries ...Entry) (bool, error)
	// Keys returns the keys of the KV space that start with prefix, sorted: how the settler
	// finds the settlements it recorded before a restart.
	Keys(ctx context.Context, prefix string) ([]string, error)
}

// Entry is one key of the KV space and its new value; a nil Value deletes the key.
//
// A Guard entry makes the whole write conditional on the key still holding Was (nil: absent):
// a value read, changed and written back with it cannot overwrite a change another replica
// sharing the store made meanwhile (the caller reads again and retries on ErrConflict).
type Entry struct {
	Key   string
	Value []byte
	Guard bool
	Was   []byte
}

// ErrConflict refuses a write whose guarded entry's key changed since it was read.
var ErrConflict = errors.New("store: a guarded key changed since it was read")

// guardHolds reports whether the key's current value (present or not) is what e was computed
// from.
func (e Entry) guardHolds(cur []byte, present bool) bool {
	if !e.Guard {
		return true
	}
	if e.Was == nil {
		return !present
	}
	return present && bytes.Equal(cur, e.Was)
}

// deleteGuard is the guard of DeleteKeyIf: the key present and holding was. A nil was is
// the empty value, not "absent" as in Entry: an empty value may come back from GetKey as nil
// or empty, and both match; and there is nothing to delete from an absent key.
func deleteGuard(key string, was []byte) Entry {
	if was == nil {
		was = []byte{}
	}
	return Entry{Key: key, Guard: true, Was: was}
}

// settleAmount is the decision of SettleDue on a committed balance, shared by the stores (the
// Redis script mirrors it): whether the settlement is due and its amount.
func settleAmount(balance, threshold, settleTo int64) (amount int64, due bool, err error) {
	if threshold > settleTo {
		return 0, false, ErrInvalidAmount
	}
	if balance >= threshold {
		return 0, false, nil
	}
	amount, ok := Sub(settleTo, balance)
	if !ok {
		return 0, false, ErrOverflow
	}
	return amount, true, nil
}

// settleValue is the KV value SettleDue records: the amount as a decimal string.
func settleValue(amount int64) []byte { return strconv.AppendInt(nil, amount, 10) }
