package connector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/runtime/rates"
)

// MetricRatesAge is how long ago a fetching backend (ecb) last fetched its rates.
const MetricRatesAge = "ilp_connector_exchange_rates_age_seconds"

// ratesAge collects MetricRatesAge from the backend in force at each scrape (a reload may
// change it): nothing for a backend that does not fetch, or before its first good fetch.
type ratesAge struct {
	c    *Connector
	desc *prometheus.Desc
}

func newRatesAge(c *Connector) ratesAge {
	return ratesAge{c: c, desc: prometheus.NewDesc(MetricRatesAge,
		"Seconds since the exchange-rate backend last fetched its rates (alert well before its maxAge)", []string{"backend"}, nil)}
}

func (r ratesAge) Describe(ch chan<- *prometheus.Desc) { ch <- r.desc }

func (r ratesAge) Collect(ch chan<- prometheus.Metric) {
	s := r.c.settings.Load()
	if s == nil {
		return
	}
	f, ok := s.conv.Backend().(rates.Fetcher)
	if !ok {
		return
	}
	if at := f.Status().FetchedAt; !at.IsZero() {
		ch <- prometheus.MustNewConstMetric(r.desc, prometheus.GaugeValue, time.Since(at).Seconds(), f.Name())
	}
}
