package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
)

// TestStatsShape checks GET /stats byte for byte against prom-client's getMetricsAsJSON().
func TestStatsShape(t *testing.T) {
	reg := prometheus.NewRegistry()
	packets := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ilp_connector_incoming_ilp_packets", Help: "Total number of incoming ILP packets"},
		[]string{"result", "code", "account", "asset", "scale"})
	balance := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ilp_connector_balance", Help: "Balances on peer account"},
		[]string{"account", "asset", "scale"})
	big := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ilp_connector_big", Help: `big <"&>`})
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ilp_connector_test_seconds", Help: "test", Buckets: []float64{0.5, 1}})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "other_total", Help: "not an ILP metric"})
	reg.MustRegister(packets, balance, big, hist, other)
	packets.WithLabelValues("fulfilled", "", "alice", "USD", "9").Add(3)
	balance.WithLabelValues("alice", "USD", "9").Set(-7)
	big.Set(1e21)
	hist.Observe(0.25)
	hist.Observe(2)
	other.Inc()

	rec := do(t, NewHandler(&fakeBackend{}, reg, Options{}), http.MethodGet, "/stats", "")
	want := `[` +
		`{"help":"Balances on peer account","name":"ilp_connector_balance","type":"gauge",` +
		`"values":[{"value":-7,"labels":{"account":"alice","asset":"USD","scale":9}}],"aggregator":"sum"},` +
		`{"help":"big <\"&>","name":"ilp_connector_big","type":"gauge","values":[{"value":1e+21,"labels":{}}],"aggregator":"sum"},` +
		`{"help":"Total number of incoming ILP packets","name":"ilp_connector_incoming_ilp_packets","type":"counter",` +
		`"values":[{"value":3,"labels":{"result":"fulfilled","code":"","account":"alice","asset":"USD","scale":9}}],"aggregator":"sum"},` +
		`{"help":"test","name":"ilp_connector_test_seconds","type":"histogram","values":[` +
		`{"labels":{"le":0.5},"value":1,"metricName":"ilp_connector_test_seconds_bucket"},` +
		`{"labels":{"le":1},"value":1,"metricName":"ilp_connector_test_seconds_bucket"},` +
		`{"labels":{"le":"+Inf"},"value":2,"metricName":"ilp_connector_test_seconds_bucket"},` +
		`{"labels":{},"value":2.25,"metricName":"ilp_connector_test_seconds_sum"},` +
		`{"labels":{},"value":2,"metricName":"ilp_connector_test_seconds_count"}],"aggregator":"sum"}` +
		`]`
	if rec.Code != http.StatusOK || rec.Body.String() != want {
		t.Fatalf("status %d body\n got %s\nwant %s", rec.Code, rec.Body, want)
	}
}

// buildAccount builds a pipeline so that the connector's metrics have series for it.
func buildAccount(t *testing.T, m *middleware.Metrics) {
	t.Helper()
	env := middleware.Env{
		Address: func() ilp.Address { return "test.conn" },
		State:   middleware.NewState(),
		Metrics: m,
	}
	acct := config.Account{Relation: config.RelationChild, Plugin: "ilp-plugin-btp", AssetCode: "USD", AssetScale: 9}
	if _, err := middleware.BuildPipelines(env, "alice", acct, nil); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	tests := []struct {
		name           string
		collectDefault bool
	}{
		{"ILP metrics only", false},
		{"with default collectors", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := NewRegistry(tt.collectDefault)
			m, err := middleware.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			buildAccount(t, m)
			m.ObserveBalance("alice", 1234)

			h := NewHandler(&fakeBackend{}, reg, Options{})
			rec := do(t, h, http.MethodGet, "/metrics", "")
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want the Prometheus text format", ct)
			}
			body := rec.Body.String()
			for _, s := range []string{
				"# TYPE ilp_connector_balance gauge",
				`ilp_connector_balance{account="alice",asset="USD",scale="9"} 1234`,
				"# TYPE ilp_connector_rate_limited_ilp_packets counter",
			} {
				if !strings.Contains(body, s) {
					t.Errorf("/metrics lacks %q:\n%s", s, body)
				}
			}
			for _, def := range []string{"go_goroutines", "process_"} {
				if got := strings.Contains(body, def); got != tt.collectDefault {
					t.Errorf("%s present = %v, want %v", def, got, tt.collectDefault)
				}
			}

			// /stats shows the ILP families only, whatever the registry also holds.
			stats := do(t, h, http.MethodGet, "/stats", "").Body.String()
			if !strings.Contains(stats, `"name":"ilp_connector_balance"`) || strings.Contains(stats, "go_") {
				t.Errorf("/stats: %s", stats)
			}
		})
	}
}
