package connector

import (
	"context"
	"maps"
	"testing"
)

// TestAccountConnectedMetric: each account in force has a series, 1 while its link is up and
// 0 once it is down (its peer gone).
func TestAccountConnectedMetric(t *testing.T) {
	p := startPair(t)
	if got, want := connectedSeries(t, p.a), map[string]float64{"b": 1, "kids": 1}; !maps.Equal(got, want) {
		t.Fatalf("%s of A = %v; want %v", MetricAccountConnected, got, want)
	}
	_ = p.alice.Close()
	if err := p.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return maps.Equal(connectedSeries(t, p.a), map[string]float64{"b": 0, "kids": 0}) })
}

// connectedSeries are the values of MetricAccountConnected the connector exports now, by account.
func connectedSeries(t *testing.T, c *Connector) map[string]float64 {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != MetricAccountConnected {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	return out
}
