package engine_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/shopspring/decimal"
)

// flakyEnd is a Memory store whose EndAttempt fails n times (a Redis blip).
type flakyEnd struct {
	*engine.Memory
	fails atomic.Int32
}

func (f *flakyEnd) EndAttempt(ctx context.Context, id, aid string, requeue decimal.Decimal) error {
	if f.fails.Add(-1) >= 0 {
		return errors.New("store unavailable for a moment")
	}
	return f.Memory.EndAttempt(ctx, id, aid, requeue)
}

// paysSecondTime pays nothing on its first Settle (ErrNotSettled: it knows), then pays everything.
type paysSecondTime struct {
	mu    sync.Mutex
	calls int
	paid  decimal.Decimal
}

func (n *paysSecondTime) Settle(_ context.Context, _ string, amount decimal.Decimal) (decimal.Decimal, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	if n.calls == 1 {
		return decimal.Zero, fmt.Errorf("peer not ready: %w", engine.ErrNotSettled)
	}
	n.paid = n.paid.Add(amount)
	return amount, nil
}

func (n *paysSecondTime) state() (int, decimal.Decimal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls, n.paid
}

// TestNotSettledSurvivesAStoreBlip: Settle says it paid nothing (ErrNotSettled) and the store
// write of that outcome fails once: the amount, certainly unpaid, is paid later — not taken
// for an attempt a stopped process left in progress, and written off.
func TestNotSettledSurvivesAStoreBlip(t *testing.T) {
	store := &flakyEnd{Memory: engine.NewMemory()}
	store.fails.Store(1)
	eng := &paysSecondTime{}
	log := &logBuffer{}
	s := startLogged(t, eng, store, log)
	do(t, s, "POST", "/accounts", "", `{"id":"peer"}`)
	if st, body := do(t, s, "POST", "/accounts/peer/settlements", "k1", `{"amount":"500","scale":2}`); st != 201 {
		t.Fatalf("settle: %d %s", st, body)
	}
	// Settled, or gone from the store with nothing paid: either way nothing more will happen.
	eventually(t, "the 5 paid or dropped", func() bool {
		_, paid := eng.state()
		at, _ := store.Attempt(context.Background(), "peer")
		return paid.Equal(dec("5")) || at == nil && store.Queued("peer").IsZero()
	})
	if calls, paid := eng.state(); !paid.Equal(dec("5")) {
		t.Fatalf("Settle said it paid nothing, one EndAttempt failed, and the 5 is gone: paid %s after %d call(s)\nlog:\n%s", paid, calls, log)
	}
}

// TestDeletedAccountsAttemptNotKeptAgain: an account deleted while its Settle runs (which
// then answers ErrOutcomeUnknown) has no attempt kept again for it once that Settle ends.
func TestDeletedAccountsAttemptNotKeptAgain(t *testing.T) {
	store := engine.NewMemory()
	eng := newBlocking()
	eng.answer = fmt.Errorf("ledger timeout: %w", engine.ErrOutcomeUnknown)
	s := startLogged(t, eng, store, &logBuffer{})
	do(t, s, "POST", "/accounts", "", `{"id":"peer"}`)
	do(t, s, "POST", "/accounts/peer/settlements", "k1", `{"amount":"500","scale":2}`)
	<-eng.entered
	if st, b := do(t, s, "DELETE", "/accounts/peer", "", ""); st != 204 {
		t.Fatal(st, b)
	}
	close(eng.release)
	if err := s.Close(context.Background()); err != nil { // waits for the Settle's outcome to be recorded
		t.Fatal(err)
	}
	if at := must[*engine.Attempt](t)(store.Attempt(context.Background(), "peer")); at != nil {
		t.Fatalf("account deleted during Settle: attempt %+v written back for it (retried for a deleted account, and replayed if the id is created again)", at)
	}
}

// leaseGone is a Memory store that has lost its Redis lease, as far as the server can tell.
type leaseGone struct{ *engine.Memory }

func (leaseGone) HasAccount(context.Context, string) (bool, error) { return false, engine.ErrLeaseLost }
func (leaseGone) QueueSettlement(context.Context, string, decimal.Decimal, *engine.Record) (*engine.Record, error) {
	return nil, engine.ErrLeaseLost
}

// TestStoppingEngineAnswers503: a request that meets a store whose lease is lost (the process
// stopping, its successor waiting) is answered 503, for the connector to retry, not 500 with
// an ERROR per request.
func TestStoppingEngineAnswers503(t *testing.T) {
	log := &logBuffer{}
	s := startLogged(t, &paysSecondTime{}, leaseGone{engine.NewMemory()}, log)
	if st, body := do(t, s, "POST", "/accounts/peer/settlements", "k1", `{"amount":"500","scale":2}`); st != http.StatusServiceUnavailable {
		t.Errorf("answer %d %s; want 503", st, body)
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("log:\n%s\nwant no ERROR per request", log)
	}
}
