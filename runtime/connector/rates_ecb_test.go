package connector

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	dto "github.com/prometheus/client_model/go"
)

// ecbFile is an ECB rates file (the shape of eurofxref-daily.xml) with one USD rate.
func ecbFile(usd string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
	<Cube><Cube time='2026-12-04'><Cube currency='USD' rate='` + usd + `'/></Cube></Cube>
</gesmes:Envelope>`
}

// ecbMirror serves an ECB rates file on 127.0.0.1 and counts the requests.
func ecbMirror(t *testing.T, usd string) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		fmt.Fprint(w, ecbFile(usd))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// ecbConfig is coreConfig on the ecb backend, reading the rates from url.
func ecbConfig(url string) string {
	return strings.Replace(coreConfig, `backend: static
backendConfig: {base: EUR, rates: {USD: "1.25", EUR: "1"}}`, `backend: ecb
backendConfig: {url: "`+url+`"}`, 1)
}

// TestECBBackend: the rates are fetched when the connector starts, before any packet, and
// packets convert at them; a reload that keeps the backend keeps its rates without fetching
// again; a reload to another mirror fetches from it at once and converts at its rates.
func TestECBBackend(t *testing.T) {
	first, firstN := ecbMirror(t, "1.25")
	second, secondN := ecbMirror(t, "2.5")
	c, ml := startMem(t, ecbConfig(first.URL), nil)
	bob := &fulfiller{}
	ml.get("bob").setRemote(bob.handle)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send := func(want uint64) {
		t.Helper()
		if _, err := ml.get("alice").inject(ctx, prepare("test.bob.x", 7, time.Now(), 10*time.Second)); err != nil {
			t.Fatalf("payment: %v", err)
		}
		if got := bob.lastPrepare().Amount; got != want {
			t.Fatalf("bob got %d, want %d", got, want)
		}
	}
	waitFor(t, func() bool { return firstN.Load() == 1 })
	// 7 cents at 1 EUR = 1.25 USD, scale 2 → 4, spread 1 %: floor(7 × 79.2) = 554, as static.
	send(554)
	if src := c.Rates().Source; src == nil || src.URL != first.URL || src.Date != "2026-12-04" || !src.Fresh || src.FetchedAt.IsZero() {
		t.Errorf("GET /rates/backend source = %+v", src)
	}
	if got := ratesAgeSeries(t, c); len(got) != 1 || got[0].GetLabel()[0].GetValue() != "ecb" || got[0].GetGauge().GetValue() < 0 {
		t.Errorf("%s = %v, want one series for ecb", MetricRatesAge, got)
	}

	if err := c.Apply(ctx, mustConfig(t, strings.Replace(ecbConfig(first.URL), "spread: 0.01", "spread: 0.02", 1))); err != nil {
		t.Fatal(err)
	}
	// floor(7 × 78.4) = 548, with the rates already fetched.
	send(548)
	if firstN.Load() != 1 {
		t.Errorf("%d fetches after a reload that kept the backend, want 1", firstN.Load())
	}

	if err := c.Apply(ctx, mustConfig(t, ecbConfig(second.URL))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return secondN.Load() == 1 })
	// 7 cents at 1 EUR = 2.5 USD → 280 at scale 4, spread 1 %: floor(277.2) = 277.
	send(277)
	if secondN.Load() != 1 || firstN.Load() != 1 {
		t.Errorf("fetches: first mirror %d, second %d; want 1 each", firstN.Load(), secondN.Load())
	}
}

// ratesAgeSeries are the series of MetricRatesAge the connector exports now.
func ratesAgeSeries(t *testing.T, c *Connector) []*dto.Metric {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == MetricRatesAge {
			return mf.GetMetric()
		}
	}
	return nil
}

// TestECBPacketWaitsNoLongerThanItsExpiry: before the first fetch ends there are no rates; a
// packet then waits for the fetch only until it expires, and is rejected T00 while the fetch
// goes on; once the fetch ends, packets convert.
func TestECBPacketWaitsNoLongerThanItsExpiry(t *testing.T) {
	release := make(chan struct{})
	var started, holding atomic.Int64 // fetches started, and held now
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		holding.Add(1)
		defer holding.Add(-1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, ecbFile("1.25"))
	}))
	t.Cleanup(mirror.Close)
	t.Cleanup(func() { closeOnce(release) })
	// The fetch's HTTP timeout far beyond the failure bound below: a packet that waited for the
	// fetch instead of its own expiry would still be waiting there.
	cfg := strings.Replace(ecbConfig(mirror.URL), `{url: "`+mirror.URL+`"}`, `{url: "`+mirror.URL+`", timeout: 600000}`, 1)
	c, ml := startMem(t, cfg, nil)
	bob := &fulfiller{}
	ml.get("bob").setRemote(bob.handle)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	answered := make(chan error, 1)
	go func() { // with a context longer than the failure bound: only the packet's expiry ends the wait
		long, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := ml.get("alice").inject(long, prepare("test.bob.x", 7, time.Now(), 200*time.Millisecond))
		answered <- err
	}()
	var err error
	select {
	case err = <-answered:
	case <-time.After(20 * time.Second): // failure bound only
		t.Fatal("the packet still waits for the first fetch 20 s after its 200 ms expiry")
	}
	if r := rejectOf(t, err); r.Code != ilp.CodeInternalError {
		t.Fatalf("reject %s %q, want T00 (no rates yet)", r.Code, r.Message)
	}
	if started.Load() != 1 || holding.Load() != 1 {
		t.Fatalf("%d fetches started, %d held when the packet was answered; want the first one still held", started.Load(), holding.Load())
	}
	closeOnce(release)
	waitFor(t, func() bool { src := c.Rates().Source; return src != nil && src.Fresh })
	if _, err := ml.get("alice").inject(ctx, prepare("test.bob.x", 7, time.Now(), 10*time.Second)); err != nil {
		t.Fatalf("payment after the fetch: %v", err)
	}
	if got := bob.lastPrepare().Amount; got != 554 {
		t.Fatalf("bob got %d, want 554", got)
	}
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}
