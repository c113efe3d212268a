package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns the registry the connector's metrics go on. With collectDefault
// (CONNECTOR_COLLECT_DEFAULT_METRICS, false by default as in JS) it also carries the Go
// runtime and process collectors, the counterparts of prom-client's default metrics;
// without it GET /metrics shows only what the connector registers.
func NewRegistry(collectDefault bool) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	if collectDefault {
		reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		)
	}
	return reg
}
