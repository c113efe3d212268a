package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// accounting is a connector stand-in for credits: it answers each request with the next
// status of its script (the last one repeats) and records what it was sent.
type accounting struct {
	url      string
	mu       sync.Mutex
	statuses []int
	reqs     []creditReq
}

type creditReq struct {
	account, key string
	q            settlement.Quantity
}

func (a *accounting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var q settlement.Quantity
	_ = json.NewDecoder(r.Body).Decode(&q)
	a.mu.Lock()
	a.reqs = append(a.reqs, creditReq{r.PathValue("id"), r.Header.Get("Idempotency-Key"), q})
	status := a.statuses[min(len(a.reqs), len(a.statuses))-1]
	a.mu.Unlock()
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "RECEIVED") // any body is accepted
}

func (a *accounting) requests() []creditReq {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]creditReq(nil), a.reqs...)
}

func newAccounting(t *testing.T, statuses ...int) *accounting {
	a := &accounting{statuses: statuses}
	mux := http.NewServeMux()
	mux.Handle("POST /accounts/{id}/settlements", a)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

// capture is a Connect that hands the test the Services.
func capture(svc *engine.Services) engine.Connect {
	return func(_ context.Context, s engine.Services) (engine.Engine, error) {
		*svc = s
		return &recorder{}, nil
	}
}

func TestCreditRetries(t *testing.T) {
	cases := []struct {
		name     string
		statuses []int
		want     int // requests
		left     int // credits still queued
	}{
		{"500 then 201", []int{500, 201}, 2, 0},
		{"429 408 409 then 200", []int{429, 408, 409, 200}, 4, 0},
		// Never dropped: the money arrived; a connector that refuses it may take it later.
		{"400 is kept and retried", []int{400, 400, 201}, 3, 0},
		{"404 is retried", []int{404, 201}, 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			acc := newAccounting(t, c.statuses...)
			store := engine.NewMemory()
			var svc engine.Services
			s := start(t, capture(&svc), store, acc.url, 2)
			if err := svc.CreditSettlement("alice", dec("1.239"), "s1"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "credit done", func() bool {
				cs, _ := store.Credits(context.Background())
				return len(acc.requests()) >= c.want && len(cs) == c.left
			})
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			reqs := acc.requests()
			if len(reqs) != c.want {
				t.Fatalf("%d requests, want %d", len(reqs), c.want)
			}
			for _, r := range reqs {
				if r.key != reqs[0].key || len(r.key) < 20 || r.account != "alice" || r.q != settlement.NewQuantity(123, 2) {
					t.Fatalf("request %+v, first %+v", r, reqs[0])
				}
			}
		})
	}
}

func TestCreditsResumedAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	down := newAccounting(t, 503)
	store := openRedis(t, srv.URL())
	var svc engine.Services
	s := start(t, capture(&svc), store, down.url, 2)
	if err := svc.CreditSettlement("alice", dec("4.2"), "s1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failed attempt", func() bool { return len(down.requests()) >= 2 })
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	key := down.requests()[0].key
	if err := store.Close(); err != nil { // the process stops: the next may take the prefix
		t.Fatal(err)
	}

	up := newAccounting(t, 201)
	store2 := openRedis(t, srv.URL()) // a new process: only Redis remembers
	start(t, mock.Connect(2), store2, up.url, 2)
	eventually(t, "credit resumed and acknowledged", func() bool {
		cs, _ := store2.Credits(context.Background())
		return len(up.requests()) == 1 && len(cs) == 0
	})
	if r := up.requests()[0]; r.key != key || r.q != settlement.NewQuantity(420, 2) || r.account != "alice" {
		t.Fatalf("resumed %+v, want key %s and 420 at scale 2", r, key)
	}
}

// TestCreditQueuedDuringConnectDeliveredOnce: a credit the engine reports while it connects is
// delivered at once and is still in the store when Start resumes the queued credits; the
// resume must not send it a second time beside the delivery under way (the connector would
// take the repeat as such, but a second sender retrying for ever is one too many). The
// connector holds the first request until Start has returned, so both would overlap.
func TestCreditQueuedDuringConnectDeliveredOnce(t *testing.T) {
	release := make(chan struct{})
	acc := newAccounting(t, 201)
	held := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		acc.ServeHTTP(w, r)
	})
	mux := http.NewServeMux()
	mux.Handle("POST /accounts/{id}/settlements", held)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	store := engine.NewMemory()
	creditWhileConnecting := func(ctx context.Context, s engine.Services) (engine.Engine, error) {
		if err := s.CreditSettlement("alice", dec("1.5"), "s1"); err != nil {
			return nil, err
		}
		return &recorder{}, nil
	}
	s := start(t, creditWhileConnecting, store, srv.URL, 2)
	close(release)
	eventually(t, "credit acknowledged", func() bool {
		cs, _ := store.Credits(context.Background())
		return len(cs) == 0
	})
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reqs := acc.requests(); len(reqs) != 1 {
		t.Fatalf("the connector got %d requests for one credit: %+v", len(reqs), reqs)
	}
}

// ackedFirst is a store whose Credits, while a credit is queued, answers only once a credit
// was acknowledged: as a slow read (a Redis round trip) during which the delivery of a credit
// reported during Connect ends. Its list is then stale: the credit is in it, and acknowledged.
type ackedFirst struct {
	*engine.Memory
	once  sync.Once
	acked chan struct{} // closed at the first AckCredit
}

func (s *ackedFirst) AckCredit(ctx context.Context, key string) error {
	err := s.Memory.AckCredit(ctx, key)
	s.once.Do(func() { close(s.acked) })
	return err
}

func (s *ackedFirst) Credits(ctx context.Context) ([]engine.Credit, error) {
	cs, err := s.Memory.Credits(ctx)
	if len(cs) > 0 {
		select { // bounded; either way the verdict is the requests counted
		case <-s.acked:
			for range 100 { // and the delivery's goroutine lets go of the credit
				runtime.Gosched()
			}
		case <-time.After(30 * time.Second):
		}
	}
	return cs, err
}

// roundTrips is a connector stand-in that acknowledges every credit and records each request
// as it is sent, before its ctx is looked at: a delivery started is counted even when Close
// cancels it at once.
type roundTrips struct {
	mu   sync.Mutex
	keys []string
}

func (rt *roundTrips) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.keys = append(rt.keys, r.Header.Get("Idempotency-Key"))
	rt.mu.Unlock()
	return &http.Response{StatusCode: http.StatusCreated, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// TestCreditAckedBeforeResumeDeliveredOnce: a credit reported during Connect, delivered and
// acknowledged while Start reads the stored credits, is not sent again from that read: the
// credits to resume are read before Connect, so that each credit has one sender.
func TestCreditAckedBeforeResumeDeliveredOnce(t *testing.T) {
	store := &ackedFirst{Memory: engine.NewMemory(), acked: make(chan struct{})}
	rt := &roundTrips{}
	connect := func(ctx context.Context, s engine.Services) (engine.Engine, error) {
		if err := s.CreditSettlement("alice", dec("1.5"), "s1"); err != nil {
			return nil, err
		}
		return &recorder{}, nil
	}
	s := startWith(t, connect, store, engine.Config{ConnectorURL: "http://127.0.0.1:1", AssetScale: 2,
		HTTPClient: &http.Client{Transport: rt}, Log: slog.New(slog.DiscardHandler)})
	select {
	case <-store.acked:
	case <-time.After(30 * time.Second):
		t.Fatal("the credit was not acknowledged")
	}
	// Close waits for every delivery started, and each sent its request first.
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.keys) != 1 {
		t.Fatalf("the connector got %d requests for one credit: %v", len(rt.keys), rt.keys)
	}
}

// failingCredits is a store whose Credits fails.
type failingCredits struct{ *engine.Memory }

func (failingCredits) Credits(context.Context) ([]engine.Credit, error) {
	return nil, errors.New("store down")
}

// TestStartFailsWhenCreditsUnreadable: Start fails when it cannot read the credits to resume,
// before it connects the engine, and leaves nothing registered or listening.
func TestStartFailsWhenCreditsUnreadable(t *testing.T) {
	connected := false
	connect := func(context.Context, engine.Services) (engine.Engine, error) {
		connected = true
		return &recorder{}, nil
	}
	reg := prometheus.NewRegistry()
	s, err := engine.Start(context.Background(), connect, failingCredits{engine.NewMemory()},
		engine.Config{Addr: "127.0.0.1:0", AssetScale: 2, Registerer: reg, Log: slog.New(slog.DiscardHandler)})
	if err == nil {
		_ = s.Close(context.Background())
		t.Fatal("Start succeeded with the credits unreadable")
	}
	if !strings.Contains(err.Error(), "queued credits: store down") || connected {
		t.Fatalf("err %v, connected %v", err, connected)
	}
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Fatalf("metrics left registered: %d families", len(mfs))
	}
}
