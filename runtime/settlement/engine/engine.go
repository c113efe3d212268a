// Package engine is a framework for writing RFC 38 settlement engines in Go, after the JS
// ilp-settlement-core: the author writes the part that talks to a ledger (Engine), and the
// framework speaks RFC 38 to the connector — the engine-side HTTP API, idempotency keys,
// leftovers below the ledger's precision, and incoming credits retried until the connector
// acknowledges them.
//
// Amounts given to and taken from an Engine are in standard units of the asset (e.g. 2.54
// USD), as arbitrary-precision decimals: never floats.
//
// Settlement-core's rules are kept: one Settle at a time per account; what Settle did not
// settle stays queued and is retried on TrySettlement or when more is queued; a Settle that
// fails is taken as having settled everything, because retrying a payment that might have
// been made could pay twice, while a failure that paid nothing only leaves the peer owed —
// which the peer's connector sees and can settle again. An engine that knows it paid nothing
// (the peer was not ready) says so with ErrNotSettled: the amount stays queued and is tried
// again after a backoff. An engine that cannot tell whether it paid (a timeout) says so with
// ErrOutcomeUnknown: the framework calls Settle again with the same amount and SettlementID
// until the engine can tell; the engine makes a repeated SettlementID pay at most once (its
// ledger's idempotency key, or the peer's deduplication: Services.CreditSettlement credits a
// settlement id once).
//
// Every attempt — the amount taken from the queue and its SettlementID — is kept in the
// Store from before Settle is called until its outcome is known, so that no stop of the
// process loses it silently. An attempt found in the store at start was in progress when
// the engine stopped (a crash, a kill, a Close that cancelled it): an engine that declares
// IdempotentSettler gets it again, with the same id and amount; otherwise it is taken as
// settled (it may have been paid) and logged as an ERROR naming the account, amount and id,
// to check on the ledger by hand.
package engine

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/shopspring/decimal"
)

// ErrNotSettled is what Settle returns when it settled nothing and knows it, e.g. the peer's
// engine could not take the settlement yet: the framework keeps the whole amount queued and
// tries again after the backoff of Config (Backoff, or RetryBase and RetryMax).
var ErrNotSettled = errors.New("settlement engine: nothing settled; trying again later")

// ErrOutcomeUnknown is what Settle returns (wrapped or not) when it cannot tell whether it
// paid, e.g. its request timed out: the framework keeps the attempt (durably, in the Store)
// and, after the backoff, calls Settle again with the same amount and the same
// SettlementID(ctx), until Settle returns anything else — after a restart too. Amounts
// queued meanwhile wait. An engine that returns it pays an id once, so it should also
// implement IdempotentSettler.
var ErrOutcomeUnknown = errors.New("settlement engine: outcome of the settlement unknown; trying again with the same settlement id")

// ErrRefused is what HandleMessage returns (wrapped) for a message it certainly did not
// take — malformed, of an unknown type, for an account it does not settle — and that the
// peer's engine may therefore count as not delivered. It is answered with 400, which the
// connectors carry back to the peer's engine as a refusal (HTTP 502 from its connector).
// Any other error is answered with 500: the peer's engine cannot tell whether the message
// was taken, and must not count it as refused.
var ErrRefused = errors.New("settlement engine: message refused")

// settlementIDKey is the context key of SettlementID.
type settlementIDKey struct{}

// SettlementID is the id of the settlement Settle is asked for (ctx is Settle's): random, and
// the same on every call that tries the same attempt again (after ErrOutcomeUnknown, or at
// start for an attempt left in progress, see IdempotentSettler). An
// engine uses it as its ledger's idempotency key, or sends it to the peer to deduplicate. ""
// outside Settle.
func SettlementID(ctx context.Context) string {
	id, _ := ctx.Value(settlementIDKey{}).(string)
	return id
}

func withSettlementID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, settlementIDKey{}, id)
}

// Engine settles with peers on a ledger. Its other abilities are the optional interfaces
// IdempotentSettler, AccountSetter, MessageHandler, AccountCloser and Closer.
type Engine interface {
	// Settle sends the peer of accountID a settlement of at most amount (standard units,
	// arbitrary precision; the engine rounds down to what its ledger can carry) and returns
	// what it settled. The rest stays queued. On error the whole amount counts as settled,
	// unless the error is ErrNotSettled (nothing paid) or ErrOutcomeUnknown (tried again with
	// the same SettlementID(ctx) and amount).
	//
	// ctx carries SettlementID and ends after Config.RequestTimeout, or when the ctx given to
	// Server.Close ends first. Settle must return soon once ctx is done: Close waits for it
	// (and closes no Closer before). What it returns then is taken as usual, but for an error
	// other than ErrNotSettled and ErrOutcomeUnknown after Close cancelled it: the attempt is
	// left in the store, as if the process had stopped there (see IdempotentSettler). A Settle
	// whose ledger call may have gone through when ctx ended should return ErrOutcomeUnknown.
	Settle(ctx context.Context, accountID string, amount decimal.Decimal) (decimal.Decimal, error)
}

// IdempotentSettler is an Engine that declares that Settle pays a SettlementID at most once,
// however often it is called with it (the id is its ledger's idempotency key, or the peer's
// engine deduplicates it). Then an attempt left in progress when the engine stopped — a
// crash, a kill -9, a Close that cancelled Settle — is settled again at start with the same
// id and amount. Without it (or when it reports false) such an attempt is taken as settled,
// as settlement-core does, since paying it again could pay twice, and an ERROR is logged at
// start naming the account, amount and id, so that a person can check the ledger.
type IdempotentSettler interface {
	SettlesOncePerID() bool
}

// AccountSetter prepares an account before it can settle (e.g. exchanging ledger addresses
// with the peer). It is called on every POST /accounts for the id, so it must be idempotent.
// The connector sends that when it starts, often before its link to the peer is up: a
// message to the peer may fail then. Either set up lazily (return nil, and finish the setup
// in Settle — returning ErrNotSettled until it is done — or in HandleMessage), or return an
// error: it is answered with 500, and the connector retries POST /accounts until accepted.
type AccountSetter interface {
	SetupAccount(ctx context.Context, accountID string) error
}

// MessageHandler answers a message of the peer's engine (raw JSON); the answer is sent back
// as JSON. An error that wraps ErrRefused answers 400 (the message was not taken); any other
// error 500 (it may have been).
type MessageHandler interface {
	HandleMessage(ctx context.Context, accountID string, msg json.RawMessage) (any, error)
}

// AccountCloser cleans up an account the connector deleted.
type AccountCloser interface {
	CloseAccount(ctx context.Context, accountID string) error
}

// Closer disconnects the engine from its ledger when the server closes (settlement-core's
// disconnect): after every Settle has returned.
type Closer interface {
	Close(ctx context.Context) error
}

// Services are what the framework offers an engine.
type Services interface {
	// SendMessage sends msg (marshalled to JSON) to the peer's engine of accountID through
	// the connector and returns the peer's JSON answer. A non-2xx answer of the connector is
	// a *StatusError.
	SendMessage(ctx context.Context, accountID string, msg any) (json.RawMessage, error)
	// CreditSettlement tells the connector that amount (standard units) was received from
	// the peer of accountID. The credit is queued durably (in the Store) before it returns,
	// at the engine's asset scale, rounded down — the part below one unit waits for the next
	// credit of the account — and is retried with the same idempotency key until the
	// connector acknowledges it. A settlementID other than "" is credited once per account
	// (within IdempotencyTTL of its last use): a repeat changes nothing and returns nil. An
	// error means nothing was queued.
	CreditSettlement(accountID string, amount decimal.Decimal, settlementID string) error
	// TrySettlement settles now what is queued for accountID (leftovers, failed attempts).
	TrySettlement(accountID string)
}

// Connect builds an engine once the framework is ready; s may be used at once, including
// before Connect returns.
type Connect func(ctx context.Context, s Services) (Engine, error)
