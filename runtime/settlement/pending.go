package settlement

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Pending is an outgoing settlement recorded but not yet accepted by an engine.
type Pending struct {
	Account string
	Key     string // the idempotency key
	Engine  string // the engine it is sent to
	Amount  int64  // in the account's units; -1 when the record cannot be read
}

// Pending lists the settlements recorded and not yet accepted by an engine, by account and
// key: what ilp_connector_settlements_pending counts, for an operator to look at.
func (s *Settler) Pending(ctx context.Context) ([]Pending, error) {
	recs, err := s.records(ctx)
	if err != nil {
		return nil, err
	}
	var out []Pending
	for _, rs := range recs {
		for _, r := range rs {
			v, err := s.o.Store.GetKey(ctx, r.storeKey)
			if err != nil {
				continue // sent and forgotten meanwhile
			}
			amount, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				amount = -1 // unreadable: shown, for an operator to look at
			}
			out = append(out, Pending{Account: r.account, Key: r.key, Engine: r.engine, Amount: amount})
		}
	}
	slices.SortFunc(out, func(a, b Pending) int {
		return strings.Compare(a.Account+"\x00"+a.Key, b.Account+"\x00"+b.Key)
	})
	return out, nil
}

// errGone stops the retries of a settlement whose record is gone: forgotten by an operator, or
// sent by another replica sharing the store.
var errGone = errors.New("settlement: the record is gone")

// Forget drops a recorded settlement that an operator has settled by other means (its engine
// is gone, say): it is not sent again. The balance stays as it is — it was raised when the
// settlement was recorded, as if the engine had paid. It reports whether the key was pending.
func (s *Settler) Forget(ctx context.Context, key string) (bool, error) {
	recs, err := s.records(ctx)
	if err != nil {
		return false, err
	}
	for _, rs := range recs {
		for _, r := range rs {
			if r.key != key {
				continue
			}
			// The retries in progress, on this replica or another, see it gone and stop.
			if err := s.o.Store.DeleteKey(ctx, r.storeKey); err != nil {
				return false, err
			}
			s.log.Warn("a recorded settlement was forgotten by an operator: it is not sent again", "account", r.account, "idempotencyKey", key, "engine", RedactURL(r.engine))
			return true, nil
		}
	}
	return false, nil
}
