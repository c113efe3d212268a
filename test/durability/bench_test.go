package durability

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/loadgen"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// TestStoreThroughput measures packets/s and p99 of the real `ilpfleet connector` on the
// memory, embedded file and Redis stores with the project's load generator (internal/loadgen),
// in one run, the stores interleaved round by round so that they share the machine's
// conditions. It prints a Markdown table for docs/benchmarks.md and asserts nothing about
// speed. The connector's CPU time per packet (user + system, start-up and warm-up included)
// shows what a store costs where the machine is the limit. Opt in: ILPFLEET_STORE_BENCH=1
// (knobs: ..._N, ..._ROUNDS, ..._CONCURRENCY, ..._STORES: a subset of "memory file redis").
func TestStoreThroughput(t *testing.T) {
	if os.Getenv("ILPFLEET_STORE_BENCH") == "" {
		t.Skip("a benchmark: set ILPFLEET_STORE_BENCH=1 to run it")
	}
	n := envInt("ILPFLEET_STORE_BENCH_N", 20000)
	rounds := envInt("ILPFLEET_STORE_BENCH_ROUNDS", 2)
	concs := strings.Fields(envStr("ILPFLEET_STORE_BENCH_CONCURRENCY", "10 100 1000"))
	srv := redistest.Start(t)
	type store struct {
		name string
		env  func(round int) map[string]string
	}
	stores := []store{
		{"memory", func(int) map[string]string { return map[string]string{"CONNECTOR_STORE": "memory"} }},
		{"file", func(int) map[string]string {
			return map[string]string{"CONNECTOR_STORE": "file", "CONNECTOR_STORE_PATH": t.TempDir()}
		}},
		{"redis", func(round int) map[string]string {
			return map[string]string{"CONNECTOR_STORE": "redis", "CONNECTOR_STORE_CONFIG": fmt.Sprintf(
				`{"url":%q,"instance":"bench","prefix":"bench%d:","poolSize":128}`, srv.URL(), round)}
		}},
	}
	only := strings.Fields(envStr("ILPFLEET_STORE_BENCH_STORES", "memory file redis"))
	stores = slices.DeleteFunc(stores, func(s store) bool { return !slices.Contains(only, s.name) })
	type cell struct{ pps, p99, cpu []float64 }
	results := map[string]*cell{}
	for round := range rounds {
		for _, c := range concs {
			conc, _ := strconv.Atoi(c)
			for _, s := range stores {
				rt := newRuntime(t, s.env(round))
				rt.start(t)
				res := runLoad(t, rt, n, conc)
				rt.stop(t)
				key := s.name + "|" + c
				if results[key] == nil {
					results[key] = &cell{}
				}
				results[key].pps = append(results[key].pps, res.PacketsPerSecond())
				results[key].p99 = append(results[key].p99, float64(res.Latency.P99.Microseconds())/1000)
				cpu := float64(rt.cpu.Nanoseconds()) / 1000 / float64(n+warmup(n))
				results[key].cpu = append(results[key].cpu, cpu)
				t.Logf("round %d c=%d %-12s %8.0f packets/s p99 %v, connector CPU %.1f us/packet, fulfilled %d/%d",
					round, conc, s.name, res.PacketsPerSecond(), res.Latency.P99, cpu, res.Fulfilled, n)
				if !res.AllFulfilled() {
					t.Errorf("%s c=%d: not every packet was fulfilled: %+v %+v", s.name, conc, res.Rejected, res.Errors)
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| concurrency | store | packets/s (each round) | p99 ms (each round) | connector CPU µs/packet | vs memory |\n|---:|---|---:|---:|---:|---:|\n")
	for _, c := range concs {
		vs := func(float64) string { return "" }
		if m := results["memory|"+c]; m != nil {
			vs = func(pps float64) string { return fmt.Sprintf("%.0f%%", 100*pps/mean(m.pps)) }
		}
		for _, s := range stores {
			r := results[s.name+"|"+c]
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %.1f | %s |\n", c, s.name, join(r.pps, "%.0f"), join(r.p99, "%.1f"), mean(r.cpu), vs(mean(r.pps)))
		}
	}
	t.Logf("\n%s", b.String())
}

func runLoad(t *testing.T, rt *runtime, n, conc int) *loadgen.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := loadgen.Run(ctx, loadgen.Config{
		Sender:      fmt.Sprintf("btp+ws://lg:alice-secret@127.0.0.1:%d", rt.alicePort),
		Receiver:    fmt.Sprintf("btp+ws://lg:bob-secret@127.0.0.1:%d", rt.bobPort),
		Destination: address + ".bob",
		Packets:     n, Concurrency: conc, Amount: 1, Warmup: warmup(n),
		Timeout: 4 * time.Minute, Expiry: 30 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// warmup is how many packets runLoad sends before it measures n.
func warmup(n int) int { return n / 10 }

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func envStr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func join(xs []float64, f string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(f, x)
	}
	return strings.Join(parts, " / ")
}
