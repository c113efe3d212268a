package engine_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/shopspring/decimal"
)

// blocking is an engine whose Settle is on its ledger until released (then it pays, or
// answers answer if set) or until its ctx ends; it records whether its Close came while a
// Settle was running.
type blocking struct {
	entered        chan string // the settlement id of each Settle
	release        chan struct{}
	answer         error
	inSettle       atomic.Bool
	closedInSettle atomic.Bool
}

func newBlocking() *blocking {
	return &blocking{entered: make(chan string, 1), release: make(chan struct{})}
}

func (b *blocking) Settle(ctx context.Context, _ string, amount decimal.Decimal) (decimal.Decimal, error) {
	b.inSettle.Store(true)
	defer b.inSettle.Store(false)
	b.entered <- engine.SettlementID(ctx)
	select {
	case <-b.release:
		if b.answer != nil {
			return decimal.Zero, b.answer
		}
		return amount, nil
	case <-ctx.Done():
		return decimal.Zero, ctx.Err()
	}
}

func (b *blocking) Close(context.Context) error {
	b.closedInSettle.Store(b.inSettle.Load())
	return nil
}

// idempotent is unsure declaring that a settlement id pays once.
type idempotent struct{ *unsure }

func (idempotent) SettlesOncePerID() bool { return true }

// logBuffer collects a server's log.
type logBuffer = testlog.Buffer

// bothStores opens a memory store and a Redis one.
func bothStores(t *testing.T) map[string]func(t *testing.T) engine.Store {
	srv := redistest.Start(t)
	return map[string]func(t *testing.T) engine.Store{
		"memory": func(*testing.T) engine.Store { return engine.NewMemory() },
		"redis":  func(t *testing.T) engine.Store { return openRedis(t, srv.URL()) },
	}
}

func startLogged(t *testing.T, e engine.Engine, store engine.Store, log *logBuffer) *engine.Server {
	t.Helper()
	return startWith(t, connectTo(e), store, engine.Config{ConnectorURL: "http://127.0.0.1:1", AssetScale: 2,
		Log: slog.New(slog.NewTextHandler(log, nil))})
}

// TestSettlementInFlightIsDurable: while Settle runs, the store holds its amount and id, so
// that a kill -9 then loses nothing silently (it used to hold neither: the queue was taken,
// and the attempt stored only after an ErrOutcomeUnknown).
func TestSettlementInFlightIsDurable(t *testing.T) {
	for name, open := range bothStores(t) {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			eng := newBlocking()
			s := startLogged(t, eng, store, &logBuffer{})
			t.Cleanup(func() { close(eng.release) }) // before Close, which waits for Settle
			do(t, s, "POST", "/accounts", "", `{"id":"peer"}`)
			if st, body := do(t, s, "POST", "/accounts/peer/settlements", "k1", `{"amount":"500","scale":2}`); st != 201 {
				t.Fatalf("settle: %d %s", st, body)
			}
			id := <-eng.entered // Settle is calling the ledger: the process dies here
			at, err := store.Attempt(context.Background(), "peer")
			if err != nil {
				t.Fatal(err)
			}
			if at == nil || at.ID != id || !at.Amount.Equal(dec("5")) || !at.InProgress {
				t.Fatalf("while Settle(5, id %s) runs the store keeps %+v: a crash now would lose the 5", id, at)
			}
		})
	}
}

// TestAttemptLeftInProgressAtStart: an attempt left in progress by a stopped process is
// settled again with its id by an engine that pays an id once; any other engine does not
// get it (it may have paid), and an ERROR names its account, amount and id. What was queued
// meanwhile is settled afterwards under an id of its own.
func TestAttemptLeftInProgressAtStart(t *testing.T) {
	stores := bothStores(t)
	for _, tc := range []struct {
		name      string
		engine    func(*unsure) engine.Engine
		wantCalls []string // "" stands for a new id
		wantError bool
	}{
		{"pays an id once: resumed", func(u *unsure) engine.Engine { return idempotent{u} }, []string{"left-id 5", " 2"}, false},
		{"may pay twice: taken as settled, loudly", func(u *unsure) engine.Engine { return u }, []string{" 2"}, true},
	} {
		for name, open := range stores {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				ctx := context.Background()
				store := open(t)
				must[bool](t)(store.CreateAccount(ctx, "peer"))
				must[*engine.Record](t)(store.QueueSettlement(ctx, "peer", dec("5"), nil))
				must[*engine.Attempt](t)(store.StartAttempt(ctx, "peer", "left-id")) // then the process died
				must[*engine.Record](t)(store.QueueSettlement(ctx, "peer", dec("2"), nil))

				u := &unsure{}
				log := &logBuffer{}
				s := startLogged(t, tc.engine(u), store, log)
				eventually(t, "the queued 2 settled", func() bool {
					calls := u.got()
					return len(calls) > 0 && strings.HasSuffix(calls[len(calls)-1], " 2")
				})
				if err := s.Close(ctx); err != nil {
					t.Fatal(err)
				}
				calls := u.got()
				if len(calls) != len(tc.wantCalls) {
					t.Fatalf("Settle calls %q, want %q", calls, tc.wantCalls)
				}
				for i, want := range tc.wantCalls {
					if strings.HasPrefix(want, " ") && (strings.HasPrefix(calls[i], "left-id") || !strings.HasSuffix(calls[i], want)) ||
						!strings.HasPrefix(want, " ") && calls[i] != want {
						t.Fatalf("Settle calls %q, want %q", calls, tc.wantCalls)
					}
				}
				logged := strings.Contains(log.String(), "level=ERROR msg=\"SETTLEMENT INTERRUPTED") &&
					strings.Contains(log.String(), "account=peer amount=5 id=left-id")
				if logged != tc.wantError {
					t.Fatalf("ERROR naming account, amount and id logged: %v, want %v; log:\n%s", logged, tc.wantError, log)
				}
				if at := must[*engine.Attempt](t)(store.Attempt(ctx, "peer")); at != nil {
					t.Fatalf("attempt %+v still kept", at)
				}
			})
		}
	}
}

// TestCloseWaitsForSettle: a Close whose ctx ends while Settle runs cancels Settle's ctx and
// waits for it to return; it neither disconnects the engine under it nor returns before it
// (the caller closes the store next). The attempt stays kept, and the next start settles it
// with its id.
func TestCloseWaitsForSettle(t *testing.T) {
	store := engine.NewMemory()
	eng := newBlocking()
	defer close(eng.release)
	s := startLogged(t, eng, store, &logBuffer{})
	do(t, s, "POST", "/accounts", "", `{"id":"peer"}`)
	if st, body := do(t, s, "POST", "/accounts/peer/settlements", "k1", `{"amount":"500","scale":2}`); st != 201 {
		t.Fatalf("settle: %d %s", st, body)
	}
	id := <-eng.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the shutdown's grace period is over
	err := s.Close(ctx)
	if eng.closedInSettle.Load() {
		t.Errorf("Close (%v) disconnected the engine while its Settle was running", err)
	}
	if eng.inSettle.Load() {
		t.Fatalf("Close returned (%v) with Settle running: it would write to a closed store", err)
	}
	if at := must[*engine.Attempt](t)(store.Attempt(context.Background(), "peer")); at == nil || at.ID != id || !at.Amount.Equal(dec("5")) {
		t.Fatalf("attempt kept after a cancelled Settle: %+v, want %s 5", at, id)
	}

	next := &unsure{}
	startLogged(t, idempotent{next}, store, &logBuffer{})
	eventually(t, "the cancelled settlement resumed", func() bool { return len(next.got()) == 1 })
	if got := next.got(); got[0] != id+" 5" {
		t.Fatalf("after the restart Settle got %q, want %q", got, id+" 5")
	}
}
