package churn

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
)

// Slack of the comparison with the baseline. A phase repeats its lifecycle at least
// minIterations times, so a leak of one goroutine or descriptor per iteration is far above
// these; they absorb what is legitimately transient (a kept-alive connection of the test's own
// HTTP clients, a timer goroutine of the runtime).
const (
	minIterations  = 200
	goroutineSlack = 20
	fdSlack        = 16
	heapSlack      = 24 << 20 // bytes: generous, the race detector's shadow memory is not counted but its allocations are
	settleTries    = 600      // testwait.Interval apart, plus a Gather each: 3-6 s at most
)

// snapshot is what the process and the connector hold at one moment.
type snapshot struct {
	goroutines int
	fds        int
	heap       uint64 // live heap after a GC
	series     int    // Prometheus series of the connector's registry, by metric and account (seriesCount)
	accounts   int
	routes     int
	ccpPeers   int
	storeKeys  int
}

func (s snapshot) String() string {
	heap := "not measured"
	if s.heap > 0 {
		heap = fmt.Sprintf("%.1f MiB", float64(s.heap)/(1<<20))
	}
	return fmt.Sprintf("goroutines %d, fds %d, heap %s, series %d, accounts %d, routes %d, CCP peers %d, store keys %d",
		s.goroutines, s.fds, heap, s.series, s.accounts, s.routes, s.ccpPeers, s.storeKeys)
}

// rig is one connector under churn and what the test measures it by.
type rig struct {
	t    *testing.T
	c    *connector.Connector
	keys func() int // store keys, or nil
	base snapshot
	// quiesce, when set, runs before every look at the runtime: it drops what is legitimately
	// kept between phases (idle kept-alive connections of the test's HTTP peers).
	quiesce func()
}

// take measures everything but the heap, which heap measures: a GC under -race is slow, and
// check polls.
func take(t *testing.T, c *connector.Connector, keys func() int) snapshot {
	t.Helper()
	s := snapshot{goroutines: runtime.NumGoroutine(), fds: openFDs(t), series: seriesCount(t, c),
		accounts: len(c.Accounts()), routes: len(c.Routes()), ccpPeers: len(c.Routing().Peers)}
	if keys != nil {
		s.storeKeys = keys()
	}
	return s
}

// heap is the live heap after a GC.
func heap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open fds: %v", err)
	}
	return len(ents)
}

// seriesCount is the number of distinct (metric, account) pairs among the series of the
// connector's registry (a series without an account label counts once per metric). Series
// that differ only in another label — the reject code of the packet counters, made lazily
// when a code first occurs, from a fixed table (middleware directionStats) — are bounded by
// design and would make the count depend on which codes the warm-up happened to produce.
func seriesCount(t *testing.T, c *connector.Connector) int {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "account" {
					key += "|" + l.GetValue()
				}
			}
			seen[key] = true
		}
	}
	return len(seen)
}

// seriesOf lists "metric{labels}" of every series whose account label is one of ids.
func seriesOf(t *testing.T, c *connector.Connector, ids func(string) bool) []string {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "account" && ids(l.GetValue()) {
					out = append(out, mf.GetName()+"{account="+l.GetValue()+"}")
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// baseline records the state after warm-up, once the runtime is quiet.
func (r *rig) baseline() {
	r.t.Helper()
	// Quiet: two snapshots in a row agree on goroutines and fds.
	r.settle()
	prev := take(r.t, r.c, r.keys)
	testwait.Eventually(r.t, "runtime quiet before the baseline", settleTries, func() bool {
		r.settle()
		cur := take(r.t, r.c, r.keys)
		same := cur.goroutines == prev.goroutines && cur.fds == prev.fds
		prev = cur
		return same
	})
	r.base = prev
	r.base.heap = heap()
	if os.Getenv("CHURN_PROFILE") != "" {
		logGoroutines(r.t)
	}
	r.t.Logf("baseline: %v", r.base)
}

func (r *rig) settle() {
	if r.quiesce != nil {
		r.quiesce()
	}
}

// check waits (bounded) until the runtime is back within the slack of the baseline, and fails
// the test with every difference if it never is. wantSeries, wantKeys, etc. are exact
// expectations on the connector's own sizes (-1: the baseline's).
func (r *rig) check(phase string, want snapshot) {
	r.t.Helper()
	if want.accounts < 0 {
		want.accounts = r.base.accounts
	}
	if want.routes < 0 {
		want.routes = r.base.routes
	}
	if want.ccpPeers < 0 {
		want.ccpPeers = r.base.ccpPeers
	}
	if want.series < 0 {
		want.series = r.base.series
	}
	if want.storeKeys < 0 {
		want.storeKeys = r.base.storeKeys
	}
	var cur snapshot
	var problems []string
	ok := func() bool {
		r.settle()
		cur = take(r.t, r.c, r.keys)
		problems = problems[:0]
		if cur.goroutines > r.base.goroutines+goroutineSlack {
			problems = append(problems, fmt.Sprintf("goroutines %d, baseline %d (+%d allowed)", cur.goroutines, r.base.goroutines, goroutineSlack))
		}
		if cur.fds > r.base.fds+fdSlack {
			problems = append(problems, fmt.Sprintf("open fds %d, baseline %d (+%d allowed)", cur.fds, r.base.fds, fdSlack))
		}
		for _, c := range []struct {
			what      string
			got, want int
		}{{"Prometheus series", cur.series, want.series}, {"accounts", cur.accounts, want.accounts},
			{"routes", cur.routes, want.routes}, {"CCP peers", cur.ccpPeers, want.ccpPeers}, {"store keys", cur.storeKeys, want.storeKeys}} {
			if c.got != c.want {
				problems = append(problems, fmt.Sprintf("%s %d, want %d", c.what, c.got, c.want))
			}
		}
		if len(problems) > 0 {
			return false // the heap only once the rest is back: a GC per poll is slow under -race
		}
		if cur.heap = heap(); cur.heap > r.base.heap+heapSlack {
			problems = append(problems, fmt.Sprintf("heap %.1f MiB, baseline %.1f MiB (+%d MiB allowed)",
				float64(cur.heap)/(1<<20), float64(r.base.heap)/(1<<20), heapSlack>>20))
		}
		return len(problems) == 0
	}
	for range settleTries {
		if ok() {
			r.t.Logf("%s: settled: %v", phase, cur)
			if os.Getenv("CHURN_PROFILE") != "" {
				logGoroutines(r.t)
			}
			return
		}
		time.Sleep(testwait.Interval)
	}
	r.t.Errorf("%s: not back to the baseline after %d tries %v apart:\n  %s\n  now:      %v\n  baseline: %v",
		phase, settleTries, testwait.Interval, strings.Join(problems, "\n  "), cur, r.base)
	if cur.goroutines > r.base.goroutines+goroutineSlack {
		logGoroutines(r.t)
	}
}

// logGoroutines logs the goroutine profile (debug=1), largest stacks first.
func logGoroutines(t *testing.T) {
	t.Helper()
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	t.Logf("goroutine profile (debug=1):\n%s", topGoroutines(b.String(), 40))
}

// same returns a want that expects the baseline's sizes.
func same() snapshot {
	return snapshot{series: -1, accounts: -1, routes: -1, ccpPeers: -1, storeKeys: -1}
}

// topGoroutines keeps the n largest stacks of a debug=1 goroutine profile, largest first, so
// that the leaking one is at the top of the log.
func topGoroutines(profile string, n int) string {
	header, body, _ := strings.Cut(profile, "\n") // "goroutine profile: total N"
	blocks := strings.Split(body, "\n\n")
	count := func(b string) int {
		var k int
		_, _ = fmt.Sscanf(b, "%d @", &k)
		return k
	}
	slices.SortStableFunc(blocks, func(a, b string) int { return count(b) - count(a) })
	if len(blocks) > n {
		blocks = blocks[:n]
	}
	return header + "\n" + strings.Join(blocks, "\n\n")
}
