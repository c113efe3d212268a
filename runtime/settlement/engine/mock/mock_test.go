package mock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
)

// services answers SendMessage with err, CreditSettlement with creditErr, and records the
// credits.
type services struct {
	err, creditErr error
	credits        []string
}

func (s *services) SendMessage(context.Context, string, any) (json.RawMessage, error) {
	return json.RawMessage(`{}`), s.err
}
func (s *services) CreditSettlement(account string, amount decimal.Decimal, id string) error {
	if s.creditErr != nil {
		return s.creditErr
	}
	s.credits = append(s.credits, account+" "+amount.String())
	return nil
}
func (s *services) TrySettlement(string) {}

func TestSettle(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		settled    string
		wantErr    bool
		notSettled bool // the error is engine.ErrNotSettled: kept queued and tried again
	}{
		{"delivered: rounded down to the scale", nil, "1.23", false, false},
		{"refused by the peer (502): nothing paid, tried again", &engine.StatusError{Status: 502}, "0", true, true},
		{"account not on the connector yet (404)", &engine.StatusError{Status: 404}, "0", true, true},
		{"refused by the connector (400)", &engine.StatusError{Status: 400}, "0", true, true},
		{"too large for the connector (413)", &engine.StatusError{Status: 413}, "0", true, true},
		{"connector down", fmt.Errorf("post: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), "0", true, true},
		{"no answer (504): may have been paid", &engine.StatusError{Status: 504}, "0", true, false},
		{"connection lost after sending", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, "0", true, false},
		{"timeout", context.DeadlineExceeded, "0", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng, _ := Connect(2)(context.Background(), &services{err: tt.err})
			got, err := eng.Settle(context.Background(), "bob", decimal.RequireFromString("1.239"))
			unknown := tt.wantErr && !tt.notSettled // tried again with the same id
			if (err != nil) != tt.wantErr || errors.Is(err, engine.ErrNotSettled) != tt.notSettled ||
				errors.Is(err, engine.ErrOutcomeUnknown) != unknown || got.String() != tt.settled {
				t.Fatalf("Settle = %s, %v; want %s (error %v, not settled %v)", got, err, tt.settled, tt.wantErr, tt.notSettled)
			}
		})
	}
}

func TestHandleMessage(t *testing.T) {
	svc := &services{}
	eng, _ := Connect(2)(context.Background(), svc)
	h := eng.(engine.MessageHandler)
	if _, err := h.HandleMessage(context.Background(), "alice", json.RawMessage(`{"type":"settlement","id":"x","amount":"1.5"}`)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"type":"other","id":"x","amount":"1"}`, `{"type":"settlement","amount":"1"}`, `{"type":"settlement","id":"x","amount":"-1"}`, `nope`} {
		if _, err := h.HandleMessage(context.Background(), "alice", json.RawMessage(bad)); !errors.Is(err, engine.ErrRefused) {
			t.Errorf("%s: %v, want it refused (engine.ErrRefused: the peer learns it was not taken)", bad, err)
		}
	}
	if len(svc.credits) != 1 || svc.credits[0] != "alice 1.5" {
		t.Fatalf("credits %v, want alice 1.5 once", svc.credits)
	}
}

// TestCreditRefusedForGood: a credit the connector can never take (too large for its
// balances) refuses the message, so the peer's mock stops sending it; a credit that could not
// be queued now (the store away) answers 500, for the peer to try again.
func TestCreditRefusedForGood(t *testing.T) {
	for _, tc := range []struct {
		err     error
		refused bool
	}{
		{fmt.Errorf("settlement engine: queue credit: %w", settlement.ErrTooLarge), true},
		{errors.New("settlement engine: queue credit: redis: connection refused"), false},
	} {
		eng, _ := Connect(2)(context.Background(), &services{creditErr: tc.err})
		_, err := eng.(engine.MessageHandler).HandleMessage(context.Background(), "alice", json.RawMessage(`{"type":"settlement","id":"x","amount":"1"}`))
		if err == nil || errors.Is(err, engine.ErrRefused) != tc.refused {
			t.Errorf("credit failing with %v: %v; want refused %t", tc.err, err, tc.refused)
		}
	}
}

// TestSettlesOncePerID: the peer's mock credits an id once, so the mock declares it and a
// settlement in progress when it stopped is sent again with its id.
func TestSettlesOncePerID(t *testing.T) {
	eng, _ := Connect(2)(context.Background(), &services{})
	if is, ok := eng.(engine.IdempotentSettler); !ok || !is.SettlesOncePerID() {
		t.Fatal("the mock does not declare that a settlement id pays once")
	}
}
