// Package mock is a stand-in settlement engine for tests and the demo. NO MONEY MOVES: it
// stands in for a real ledger, which cannot run here. To "settle", it sends the peer's engine
// the message {"type":"settlement","id":...,"amount":"<standard units>"} through the
// connectors, and the peer's mock credits that amount to its connector as if it had arrived
// on a ledger, once per id (a message whose fate the sender cannot tell is sent again with
// its id). Both sides must run this mock.
//
// Scale caps the precision it "settles" (rounded down), like a ledger's smallest unit, so
// that the framework's leftovers are exercised.
package mock

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/shopspring/decimal"
)

// MessageType is the type of the mock's settlement message.
const MessageType = "settlement"

// Message is what one mock sends the other for a settlement.
type Message struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Amount string `json:"amount"` // standard units
}

// Engine is the mock engine.
type Engine struct {
	svc   engine.Services
	scale int32
}

// Connect returns the engine's Connect; scale is the number of decimal places it settles.
func Connect(scale uint8) engine.Connect {
	return func(_ context.Context, s engine.Services) (engine.Engine, error) {
		return &Engine{svc: s, scale: int32(scale)}, nil
	}
}

// Settle rounds amount down to the scale and sends it to the peer's mock. The message is the
// mock's whole "payment", and its id is the framework's SettlementID: the peer's mock credits
// an id once. When the message certainly did not reach the peer — the connector could not be
// reached, or answered 400, 404, 413 (it did not send it) or 502 (the peer's engine did not
// take it) — nothing was paid: engine.ErrNotSettled, tried again later. Any other failure may
// have paid: engine.ErrOutcomeUnknown, and the framework sends the same message again.
func (e *Engine) Settle(ctx context.Context, account string, amount decimal.Decimal) (decimal.Decimal, error) {
	s := amount.RoundDown(e.scale)
	if s.Sign() <= 0 {
		return decimal.Zero, nil
	}
	id := engine.SettlementID(ctx)
	if id == "" { // called outside the framework
		id = rand.Text()
	}
	m := Message{Type: MessageType, ID: id, Amount: s.String()}
	_, err := e.svc.SendMessage(ctx, account, m)
	switch {
	case err == nil:
		return s, nil
	case notSent(err):
		return decimal.Zero, fmt.Errorf("%w: %w", engine.ErrNotSettled, err)
	}
	return decimal.Zero, fmt.Errorf("%w: %w", engine.ErrOutcomeUnknown, err)
}

// notSent reports whether a failed message certainly did not reach the peer's engine.
func notSent(err error) bool {
	var se *engine.StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusBadGateway:
			return true
		}
		return false
	}
	// No connection to the connector: nothing was sent. (A connection lost later may have
	// carried the message.)
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// SettlesOncePerID declares (engine.IdempotentSettler) that a settlement id pays once: the
// peer's mock credits an id once. A settlement in progress when the engine stopped is sent
// again with its id at the next start.
func (e *Engine) SettlesOncePerID() bool { return true }

// HandleMessage credits a settlement message of the peer's mock. A message it cannot read is
// refused (engine.ErrRefused: the peer's mock learns that it was not taken), and so is one the
// connector can never credit (too large); a credit that cannot be queued now is an error of
// unknown outcome.
func (e *Engine) HandleMessage(_ context.Context, account string, raw json.RawMessage) (any, error) {
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("mock: message: %w: %w", engine.ErrRefused, err)
	}
	if m.Type != MessageType || m.ID == "" {
		return nil, fmt.Errorf("mock: unknown message type %q (or no id): %w", m.Type, engine.ErrRefused)
	}
	amount, err := decimal.NewFromString(m.Amount)
	if err != nil || amount.Sign() < 0 {
		return nil, fmt.Errorf("mock: settlement amount must be a non-negative decimal: %w", engine.ErrRefused)
	}
	if err := e.svc.CreditSettlement(account, amount, m.ID); errors.Is(err, settlement.ErrTooLarge) {
		// Never creditable, and certainly not taken: refused, so that the peer's mock keeps
		// the amount queued (not settled) rather than as a payment of unknown outcome, which
		// would hold back every later settlement of the account.
		return nil, fmt.Errorf("mock: %w: %w", engine.ErrRefused, err)
	} else if err != nil {
		return nil, err
	}
	return map[string]string{"type": "ack", "id": m.ID}, nil
}
