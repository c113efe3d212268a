package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
)

// forwarder stands in for one connector of a pair: it passes its engine's messages to the
// peer's engine (its account "peer"), as the connectors would over peer.settle, and records
// credits through acc.
func forwarder(t *testing.T, acc *accounting, peer *atomic.Pointer[engine.Server]) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("POST /accounts/{id}/settlements", acc)
	mux.HandleFunc("POST /accounts/{id}/messages", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/octet-stream" {
			http.Error(w, "want application/octet-stream", 400)
			return
		}
		body, _ := io.ReadAll(r.Body)
		resp, err := http.Post("http://"+peer.Load().Addr()+"/accounts/peer/messages", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestMockSettlementCreditedOnce(t *testing.T) {
	var pa, pb atomic.Pointer[engine.Server]
	accA, accB := &accounting{statuses: []int{201}}, &accounting{statuses: []int{500, 201}}
	connA, connB := forwarder(t, accA, &pb), forwarder(t, accB, &pa)
	a := start(t, mock.Connect(6), engine.NewMemory(), connA.URL, 9)
	b := start(t, mock.Connect(6), engine.NewMemory(), connB.URL, 4) // B's connector counts in 10^-4
	pa.Store(a)
	pb.Store(b)
	for _, s := range []*engine.Server{a, b} {
		if st, body := do(t, s, "POST", "/accounts", "", `{"id":"peer"}`); st != 201 {
			t.Fatal(st, body)
		}
	}
	// A's connector asks 12.3456789 (scale 9): the mock settles 12.345678 (scale 6); B's
	// connector is credited 123456 at scale 4 and B keeps 0.000078 for its next credit.
	for range 3 { // the connector's retries: one settlement
		if st, body := do(t, a, "POST", "/accounts/peer/settlements", "key-1", `{"amount":"12345678900","scale":9}`); st != 201 {
			t.Fatal(st, body)
		}
	}
	eventually(t, "B credited", func() bool {
		r := accB.requests()
		return len(r) == 2 && r[1].q == settlement.NewQuantity(123456, 4)
	})
	for _, s := range []*engine.Server{a, b} {
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	r := accB.requests()
	if len(r) != 2 || r[0].key != r[1].key || r[0].account != "peer" {
		t.Fatalf("credits to B's connector: %+v; want one credit, retried once with the same key", r)
	}
	if len(accA.requests()) != 0 {
		t.Fatalf("A was credited: %+v", accA.requests())
	}
}

// scripted is a connector stand-in for the mock's messages: it answers the n-th with
// statuses[n] (the last repeats), after delay[n] if any, and records what it was sent.
type scripted struct {
	mu       sync.Mutex
	statuses []int
	delays   []time.Duration
	got      []mock.Message
	answered []int
}

func (c *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m mock.Message
	_ = json.NewDecoder(r.Body).Decode(&m)
	c.mu.Lock()
	n := len(c.got)
	c.got = append(c.got, m)
	status := c.statuses[min(n, len(c.statuses)-1)]
	c.answered = append(c.answered, 0)
	c.mu.Unlock()
	if n < len(c.delays) {
		select {
		case <-time.After(c.delays[n]):
		case <-r.Context().Done():
			return // the mock gave up: no answer
		}
	}
	c.mu.Lock()
	c.answered[n] = status
	c.mu.Unlock()
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"type":"ack"}`))
}

// delivered is what the connector answered 201 to, and all it was sent.
func (c *scripted) delivered() (ok, all []mock.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.got {
		if c.answered[i] == http.StatusCreated {
			ok = append(ok, m)
		}
	}
	return ok, append([]mock.Message(nil), c.got...)
}

// refusingDials fails its first n dials as a connector that is down does (nothing sent).
func refusingDials(n int) *http.Client {
	var dials atomic.Int32
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) <= int32(n) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return d.DialContext(ctx, network, addr)
	}}
	return &http.Client{Transport: tr}
}

// TestMockConnectorFailures: the connector has raised its balance when it asks the mock to
// settle, so the mock must neither drop the amount when its message certainly did not reach
// the peer (tried again), nor send it under a new id when it may have (the peer would credit
// twice): it sends the same message again until its fate is known.
func TestMockConnectorFailures(t *testing.T) {
	cases := []struct {
		name      string
		dialFails int
		statuses  []int
		delays    []time.Duration
		sameID    bool // every message sent is the one settlement, repeated
	}{
		{"connector down (connection refused)", 1, []int{201}, nil, true},
		{"account not there yet (404)", 0, []int{404, 201}, nil, false},
		{"refused by the connector (400)", 0, []int{400, 201}, nil, false},
		{"too large for the connector (413)", 0, []int{413, 201}, nil, false},
		{"refused by the peer (502)", 0, []int{502, 502, 201}, nil, false},
		{"outcome unknown (504)", 0, []int{504, 504, 201}, nil, true},
		{"connector error (500)", 0, []int{500, 201}, nil, true},
		{"no answer in time", 0, []int{201}, []time.Duration{2 * time.Second}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := &scripted{statuses: c.statuses, delays: c.delays}
			srv := httptest.NewServer(conn)
			t.Cleanup(srv.Close)
			st := engine.NewMemory()
			s, err := engine.Start(context.Background(), mock.Connect(2), st, engine.Config{
				ConnectorURL: srv.URL, Addr: "127.0.0.1:0", AssetScale: 2, Backoff: fastBackoff,
				RequestTimeout: 500 * time.Millisecond, HTTPClient: refusingDials(c.dialFails),
				Log: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close(context.Background()) })
			if status, body := do(t, s, "POST", "/accounts", "", `{"id":"bob"}`); status != 201 {
				t.Fatalf("create account: %d %s", status, body)
			}
			if status, body := do(t, s, "POST", "/accounts/bob/settlements", "k1", `{"amount":"500","scale":2}`); status != 201 {
				t.Fatalf("settle: %d %s", status, body)
			}
			eventually(t, "a message delivered", func() bool { ok, _ := conn.delivered(); return len(ok) > 0 })
			if err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			ok, all := conn.delivered()
			if len(ok) != 1 || ok[0].Amount != "5" || !st.Queued("bob").IsZero() {
				t.Fatalf("delivered %+v (of %+v), %s still queued; want 5 delivered once", ok, all, st.Queued("bob"))
			}
			for _, m := range all {
				if c.sameID && m != all[0] {
					t.Fatalf("sent %+v: a message that may have arrived must be sent again as it was", all)
				}
			}
		})
	}
}

// TestMockLostAnswerCreditedOnce: A's message reaches B's engine, but A's connector answers
// 504 (the answer was lost): A sends it again with the same id, and B credits it once.
func TestMockLostAnswerCreditedOnce(t *testing.T) {
	var pa, pb atomic.Pointer[engine.Server]
	accA, accB := &accounting{statuses: []int{201}}, &accounting{statuses: []int{201}}
	var forwarded atomic.Int32
	lossy := forwarder(t, accA, &pb)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts/{id}/messages", func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		lossy.Config.Handler.ServeHTTP(rec, r)
		if forwarded.Add(1) == 1 && rec.Code == http.StatusCreated {
			http.Error(w, "no answer from the peer", http.StatusGatewayTimeout)
			return
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
	connA := httptest.NewServer(mux)
	t.Cleanup(connA.Close)
	connB := forwarder(t, accB, &pa)
	a := start(t, mock.Connect(6), engine.NewMemory(), connA.URL, 6)
	b := start(t, mock.Connect(6), engine.NewMemory(), connB.URL, 6)
	pa.Store(a)
	pb.Store(b)
	for _, s := range []*engine.Server{a, b} {
		if st, body := do(t, s, "POST", "/accounts", "", `{"id":"peer"}`); st != 201 {
			t.Fatal(st, body)
		}
	}
	if st, body := do(t, a, "POST", "/accounts/peer/settlements", "key-1", `{"amount":"2500000","scale":6}`); st != 201 {
		t.Fatal(st, body)
	}
	eventually(t, "A's message sent again", func() bool { return forwarded.Load() >= 2 })
	eventually(t, "B credited", func() bool { return len(accB.requests()) >= 1 })
	for _, s := range []*engine.Server{a, b} {
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if r := accB.requests(); len(r) != 1 || r[0].q != settlement.NewQuantity(2500000, 6) {
		t.Fatalf("credits to B's connector: %+v; want one of 2.5", r)
	}
}
