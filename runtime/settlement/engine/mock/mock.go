// Package mock is a stand-in settlement engine for tests and the demo. NO MONEY MOVES: it
// stands in for a real ledger, which cannot run here. To "settle", it sends the peer's engine
// the message {"type":"settlement","id":...,"amount":"<standard units>"} through the
// connectors, and the peer's mock credits that amount to its connector as if it had arrived
// on a ledger. Both sides must run this mock.
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
	"net/http"

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
// mock's whole "payment": when the peer's connector refused it (502: its engine did not take
// it), nothing was paid: Settle says so (engine.ErrNotSettled), and the framework keeps the
// amount queued and tries again later. Any other failure may have paid, and is an error
// (counted as settled).
func (e *Engine) Settle(ctx context.Context, account string, amount decimal.Decimal) (decimal.Decimal, error) {
	s := amount.RoundDown(e.scale)
	if s.Sign() <= 0 {
		return decimal.Zero, nil
	}
	m := Message{Type: MessageType, ID: rand.Text(), Amount: s.String()}
	_, err := e.svc.SendMessage(ctx, account, m)
	var se *engine.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusBadGateway:
		return decimal.Zero, engine.ErrNotSettled // the peer did not take it: nothing was paid
	case err != nil:
		return decimal.Zero, err
	}
	return s, nil
}

// HandleMessage credits a settlement message of the peer's mock.
func (e *Engine) HandleMessage(_ context.Context, account string, raw json.RawMessage) (any, error) {
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("mock: message: %w", err)
	}
	if m.Type != MessageType || m.ID == "" {
		return nil, fmt.Errorf("mock: unknown message type %q (or no id)", m.Type)
	}
	amount, err := decimal.NewFromString(m.Amount)
	if err != nil || amount.Sign() < 0 {
		return nil, errors.New("mock: settlement amount must be a non-negative decimal")
	}
	if err := e.svc.CreditSettlement(account, amount, m.ID); err != nil {
		return nil, err
	}
	return map[string]string{"type": "ack", "id": m.ID}, nil
}
