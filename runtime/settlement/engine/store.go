package engine

import (
	"context"
	"errors"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/shopspring/decimal"
)

// IdempotencyTTL is how long a settlement request's key and answer are kept: RFC 38 asks
// for at least 24 hours.
const IdempotencyTTL = 24 * time.Hour

// ErrNoAccount is returned for an account the store does not know.
var ErrNoAccount = errors.New("settlement engine: no such account")

// ErrCreditedBefore is QueueCredit's answer to a settlement id it has queued for the account.
var ErrCreditedBefore = errors.New("settlement engine: this settlement id was credited before")

// ErrAttemptKept is StartAttempt's answer when the account has an attempt already: one
// attempt at a time, so that an amount is never under two ids.
var ErrAttemptKept = errors.New("settlement engine: the account has a settlement attempt already")

// Attempt is a settlement taken from the queue and given to Settle, kept in the store from
// before Settle is called until its outcome is known, so that no stop of the process loses
// it. InProgress: Settle was called and has not answered (or its answer could not be
// recorded); otherwise Settle answered ErrOutcomeUnknown, and the attempt is tried again with
// the same ID and amount.
type Attempt struct {
	ID     string          `json:"id"`
	Amount decimal.Decimal `json:"amount"` // standard units
	// InProgress is absent from attempts stored by earlier versions, which kept only
	// attempts of unknown outcome: they read as such.
	InProgress bool `json:"inProgress,omitempty"`
}

// Record is the answer given to a settlement request, kept under its Idempotency-Key so that
// a retry gets the same answer, and a reuse of the key for another request a 409.
type Record struct {
	Key    string `json:"key"`
	Hash   string `json:"hash"` // of the request, see requestHash
	Status int    `json:"status"`
	Body   []byte `json:"body"`
}

// Credit is an incoming settlement to report to the connector, kept until it acknowledges.
type Credit struct {
	Key          string              `json:"key"` // the Idempotency-Key, the same on every attempt
	Account      string              `json:"account"`
	Quantity     settlement.Quantity `json:"quantity"`
	SettlementID string              `json:"settlementId,omitempty"`
}

// Store keeps the framework's state. Every method is atomic; with a persistent store the
// change is durable when it returns.
type Store interface {
	// CreateAccount records id and reports whether it is new.
	CreateAccount(ctx context.Context, id string) (bool, error)
	// DeleteAccount forgets id, what is queued for it and its attempt (queued credits and
	// the incoming amount below one unit stay: that money was received).
	DeleteAccount(ctx context.Context, id string) error
	// HasAccount reports whether id is recorded.
	HasAccount(ctx context.Context, id string) (bool, error)
	// Accounts lists the recorded accounts.
	Accounts(ctx context.Context) ([]string, error)
	// QueueSettlement adds amount (≥ 0, standard units) to what is queued to settle for id.
	// With rec, it does so only if rec.Key was not recorded, and records rec with it; if it
	// was, it changes nothing and returns the record kept, whatever the account, and keeps it
	// IdempotencyTTL from now (RFC 38 counts from the last request). ErrNoAccount when id is
	// not recorded.
	QueueSettlement(ctx context.Context, id string, amount decimal.Decimal, rec *Record) (*Record, error)
	// StartAttempt takes what is queued to settle for id and, in the same atomic step, keeps
	// it as id's attempt, in progress, under attemptID; nil (nothing changed) when nothing is
	// queued. ErrAttemptKept when id has an attempt.
	StartAttempt(ctx context.Context, id, attemptID string) (*Attempt, error)
	// EndAttempt forgets id's attempt attemptID (its outcome is known) and, in the same
	// atomic step, queues requeue (≥ 0: what it did not pay) again, unless id is no longer
	// recorded. It changes nothing when id's attempt is not attemptID (ended already).
	EndAttempt(ctx context.Context, id, attemptID string, requeue decimal.Decimal) error
	// QueueCredit adds amount to the incoming amount of account not yet credited, takes from
	// it the whole units of scale and, unless there are none, records them as the credit
	// key; it returns the credit and whether one was recorded. settlement.ErrTooLarge when
	// the units do not fit an int64. A settlementID other than "" is recorded for account
	// for IdempotencyTTL: if it was already, QueueCredit changes nothing but its expiry and
	// returns ErrCreditedBefore.
	QueueCredit(ctx context.Context, account string, amount decimal.Decimal, scale uint8, key, settlementID string) (Credit, bool, error)
	// Credits returns the recorded credits, in no particular order.
	Credits(ctx context.Context) ([]Credit, error)
	// AckCredit forgets the credit key (acknowledged, or refused for good).
	AckCredit(ctx context.Context, key string) error
	// UpdateAttempt replaces id's attempt a.ID by a (its outcome now unknown, say). It
	// changes nothing when id's attempt is not a.ID: ended already, or gone with the account.
	UpdateAttempt(ctx context.Context, id string, a Attempt) error
	// Attempt returns id's attempt; nil when there is none.
	Attempt(ctx context.Context, id string) (*Attempt, error)
}

// splitCredit is the conversion QueueCredit does: total (standard units) into a credit of
// whole units of scale and the rest.
func splitCredit(total decimal.Decimal, scale uint8, key, account, settlementID string) (Credit, decimal.Decimal, error) {
	units, rest, err := settlement.ToScale(total, scale)
	if err != nil {
		return Credit{}, decimal.Decimal{}, err
	}
	c := Credit{Key: key, Account: account, SettlementID: settlementID,
		Quantity: settlement.NewQuantity(uint64(units), scale)}
	return c, rest, nil
}
