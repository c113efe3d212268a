package settlement

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// TestRemovedAccountSeriesForgotten: the series of an account removed by a reload go (once its
// worker ended) — a connector whose accounts come and go kept one set for every account it ever
// had — while a kept account keeps its own.
func TestRemovedAccountSeriesForgotten(t *testing.T) {
	for _, started := range []bool{false, true} {
		t.Run(map[bool]string{false: "before Start", true: "after Start"}[started], func(t *testing.T) {
			eng := newTestEngine(t, nil)
			bob := Account{ID: "bob", EngineURL: eng.URL, AssetScale: 2, Threshold: ptr[int64](-100)}
			carol := Account{ID: "carol", EngineURL: eng.URL, AssetScale: 2, Threshold: ptr[int64](-100)}
			s := newTestSettler(t, store.NewMemory(), nil, bob, carol)
			if started {
				s.Start(context.Background())
			}
			m := s.o.Metrics
			for _, id := range []string{"bob", "carol"} {
				m.settled("outgoing", id, 1)
				m.failed(opSettle, id)
				m.addPending(id, 0)
			}
			if err := s.Update([]Account{carol}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "bob's series deleted, carol's kept", func() bool {
				return series(m.done) == 1 && series(m.value) == 1 &&
					series(m.failures) == 1 && series(m.pending) == 1
			})
			if v := metricValue(t, m.done.WithLabelValues("outgoing", "carol")); v != 1 {
				t.Errorf("carol's settlements %v, want 1", v)
			}
		})
	}
}

// series counts the series a collector has.
func series(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}
