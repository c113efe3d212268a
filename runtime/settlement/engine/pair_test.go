package engine_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

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
			http.Error(w, err.Error(), 502)
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
