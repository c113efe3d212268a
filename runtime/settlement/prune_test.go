package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/settlement/settlementtest"
	"github.com/ilpfleet/ilpfleet/runtime/store"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// TestPruneSparesACreditKeyRefreshedByAReplica: replicas sharing a store each prune and each
// take credits, with no lock in common. One's prune reads an old credit record; the engine
// repeats the key through the other, which refreshes the record; then the prune deletes. The
// refreshed record must survive, so that a later repeat, well within the retention of the last
// request, is answered as the first and not credited again.
func TestPruneSparesACreditKeyRefreshedByAReplica(t *testing.T) {
	for _, tt := range []struct {
		name string
		open func(t *testing.T) (pruner, crediter store.Store)
	}{
		{"memory", func(*testing.T) (store.Store, store.Store) {
			m := store.NewMemory()
			return m, m
		}},
		{"file", func(t *testing.T) (store.Store, store.Store) {
			f, err := store.OpenFile(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Close() })
			return f, f
		}},
		{"redis", func(t *testing.T) (store.Store, store.Store) {
			srv := redistest.Start(t)
			return openReplica(t, srv, "a"), openReplica(t, srv, "b")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pruner, crediter := tt.open(t)
			testPruneRace(t, pruner, crediter)
		})
	}
}

func openReplica(t *testing.T, srv *redistest.Server, instance string) store.Store {
	t.Helper()
	r, err := store.OpenRedis(context.Background(), store.RedisOptions{URL: srv.URL(), Instance: instance, Prefix: "t:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// testPruneRace runs the interleaving: replica a prunes through pruner, replica b takes the
// engine's credits through crediter; both stores reach the same state.
func testPruneRace(t *testing.T, pruner, crediter store.Store) {
	h := &afterGetKey{Store: pruner}
	a, nowA := fakeClockSettler(t, h)
	b, nowB := fakeClockSettler(t, crediter)
	if err := b.Update([]Account{{ID: "bob", EngineURL: "http://127.0.0.1:1", AssetScale: 2}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)
	credit := func() {
		if status, body := settlementtest.Do(t, http.MethodPost, srv.URL+"/accounts/bob/settlements", "k1", `{"amount":"250","scale":2}`); status != http.StatusCreated {
			t.Errorf("credit: %d %s", status, body)
		}
	}
	elapse := func(d time.Duration) {
		for _, now := range []*atomic.Int64{nowA, nowB} {
			now.Add(int64(d))
		}
	}
	credit()
	elapse(creditRetention + time.Minute)
	h.once = credit // b refreshes the record just after a's prune read it as old
	a.prune()
	if h.once != nil {
		t.Fatal("the prune did not read the credit record")
	}
	if _, err := crediter.GetKey(context.Background(), inPrefix+"k1"); err != nil {
		t.Errorf("the record refreshed by the repeat: %v; want it kept", err)
	}
	elapse(time.Hour) // far within the retention of the repeat
	credit()
	if got := balance(t, crediter, "bob"); got != -250 {
		t.Errorf("balance %d after a repeat an hour after the last request, want -250: credited again", got)
	}
}

// TestPruneStopsAtAFailingStore: a prune stops at the first record it cannot delete, rather
// than sending one failing write per old record to a store that is down.
func TestPruneStopsAtAFailingStore(t *testing.T) {
	mem := store.NewMemory()
	old, _ := json.Marshal(creditRecord{Request: "r", At: 1, Reply: Quantity{Amount: "1", Scale: 2}})
	for _, k := range []string{"k1", "k2", "k3"} {
		if err := mem.PutKey(context.Background(), inPrefix+k, old); err != nil {
			t.Fatal(err)
		}
	}
	f := &failingDelete{Store: mem}
	s, _ := fakeClockSettler(t, f)
	s.prune()
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d deletes tried, want 1", n)
	}
	if keys, _ := mem.Keys(context.Background(), inPrefix); len(keys) != 3 {
		t.Fatalf("keys %q, want all three kept", keys)
	}
}

// failingDelete is a store whose DeleteKeyIf fails, as Redis's does while unreachable.
type failingDelete struct {
	store.Store
	calls atomic.Int64
}

func (f *failingDelete) DeleteKeyIf(context.Context, string, []byte) (bool, error) {
	f.calls.Add(1)
	return false, errors.New("store down")
}
