package middleware

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// TestObserveDuration: each answer lands in the histogram series of its result, with its
// duration; every result's series exists before its first packet.
func TestObserveDuration(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{resultFulfilled, resultRejected, resultFailed} {
		if n, sum := histogram(t, reg, MetricIncomingDuration, r); n != 0 || sum != 0 {
			t.Fatalf("before any packet, %s: count %d sum %v, want an empty series", r, n, sum)
		}
	}
	answers := []struct {
		d      time.Duration
		f      *ilp.Fulfill
		err    error
		result string
	}{
		{2 * time.Millisecond, &ilp.Fulfill{}, nil, resultFulfilled},
		{3 * time.Millisecond, &ilp.Fulfill{}, nil, resultFulfilled},
		{time.Second, nil, ilp.Rejectf(ilp.CodeTransferTimedOut, "test.a", "expired"), resultRejected},
		{4 * time.Millisecond, nil, errors.Join(errors.New("wrapped"), ilp.Rejectf(ilp.CodeUnreachable, "test.a", "no route")), resultRejected},
		{5 * time.Millisecond, nil, errors.New("link failed"), resultFailed},
		{6 * time.Millisecond, nil, nil, resultFailed}, // neither a Fulfill nor an error: not a fulfill
	}
	for _, a := range answers {
		m.ObserveDuration(a.d, a.f, a.err)
	}
	want := map[string]struct {
		n   uint64
		sum float64
	}{resultFulfilled: {2, .005}, resultRejected: {2, 1.004}, resultFailed: {2, .011}}
	for r, w := range want {
		n, sum := histogram(t, reg, MetricIncomingDuration, r)
		if n != w.n || !near(sum, w.sum) {
			t.Errorf("%s: count %d sum %v, want %d and %v", r, n, sum, w.n, w.sum)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// histogram returns the sample count and sum of the series of a histogram with result.
func histogram(t *testing.T, reg *prometheus.Registry, name, result string) (uint64, float64) {
	t.Helper()
	m := findSeries(t, reg, name, map[string]string{"result": result})
	if m == nil {
		t.Fatalf("no series %s{result=%q}", name, result)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestBalancesReadOnScrape: with replicas sharing a store, another process's packets move an
// account's balance; a replica that reads the store at each scrape reports it. The replica that
// does not is the control: it reports the balance of its own packets (none here), which shows
// that the other case's value came from the scrape's read.
func TestBalancesReadOnScrape(t *testing.T) {
	for _, readsStore := range []bool{false, true} {
		shared := store.NewMemory()
		replica := newTestEnv(t)
		replica.Store = shared
		if readsStore {
			replica.Metrics.ReadBalancesOnScrape(shared)
		}
		acct := config.Account{AssetCode: "USD", AssetScale: 2}
		mustBuild(t, replica.Env, "peer", acct, nil)
		// The other replica fulfils packets of peer: 700 in all.
		if _, err := shared.AddWithin(context.Background(), "peer", 700, nil, nil); err != nil {
			t.Fatal(err)
		}
		want := 0.0
		if readsStore {
			want = 700
		}
		got, ok := seriesValue(t, replica.reg, MetricBalance, map[string]string{"account": "peer"})
		if !ok || got != want {
			t.Errorf("reads the store at each scrape: %v: %s{account=peer} = %v (exists: %v), want %v", readsStore, MetricBalance, got, ok, want)
		}
	}
}
