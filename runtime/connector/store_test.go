package connector

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ilpfleet/ilpfleet/internal/testclock"
	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
	"github.com/ilpfleet/ilpfleet/runtime/store"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// storeConfig is benchConfig's accounts with a store section put in front.
func storeConfig(store string) string { return store + "\n" + benchConfig }

func TestStoreSelectionErrors(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	_ = os.WriteFile(plain, []byte("x"), 0o600)
	corrupt := filepath.Join(dir, "corrupt")
	_ = os.MkdirAll(corrupt, 0o700)
	_ = os.WriteFile(filepath.Join(corrupt, "ilpfleet.db"), []byte(strings.Repeat("junk", 4096)), 0o600)
	tests := []struct {
		name, store, message string
	}{
		{"path is a file", "store: file\nstorePath: " + plain, "is not a directory"},
		{"corrupted file", "store: file\nstorePath: " + corrupt, "corrupted"},
		{"unreachable redis", `store: redis
storeConfig: {url: "redis://127.0.0.1:1/0"}`, "cannot reach Redis at 127.0.0.1:1"},
		{"redis without url", "store: redis", "needs a URL"},
		{"redis bad config", `store: redis
storeConfig: {url: "redis://127.0.0.1:1/0", tls: true}`, `unknown field "tls"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ml := &memLinks{}
			c, err := New(mustConfig(t, storeConfig(tt.store)), Options{newLink: ml.factory})
			if err == nil {
				_ = c.Close(context.Background())
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error %q does not say %q", err, tt.message)
			}
		})
	}
}

// TestDurableStoresKeepBalances forwards packets through a connector on each persistent store,
// closes it, starts a new one on the same store and finds the balances of the fulfilled packets
// only.
func TestDurableStoresKeepBalances(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct{ name, store string }{
		{"file", "store: file\nstorePath: " + t.TempDir()},
		{"redis", `store: redis
storeConfig: {url: "` + srv.URL() + `", instance: test-1, prefix: "keep:"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := storeConfig(tt.store)
			c, ml := startMem(t, doc, nil)
			ml.setRemote("bob", bobRemote(&fulfiller{}))
			alice := ml.get("alice")
			ctx := context.Background()
			for _, dest := range []string{"test.bob.x", "test.bob.x", "test.bob.reject"} {
				_, _ = alice.inject(ctx, prepare(dest, 100, time.Now(), time.Minute))
			}
			wantAlice, _ := c.Balance(ctx, "alice")
			wantBob, _ := c.Balance(ctx, "bob")
			if wantAlice != 200 || wantBob >= 0 {
				t.Fatalf("before restart: alice %d bob %d", wantAlice, wantBob)
			}
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
			c2, _ := startMem(t, doc, nil)
			if got, _ := c2.Balance(ctx, "alice"); got != wantAlice {
				t.Fatalf("alice after restart: %d, want %d", got, wantAlice)
			}
			if got, _ := c2.Balance(ctx, "bob"); got != wantBob {
				t.Fatalf("bob after restart: %d, want %d", got, wantBob)
			}
		})
	}
}

// TestPacketScopeWraps checks that the connector brackets packets with the store's scope:
// with a packet held at the next hop, nothing of it is durable yet.
func TestPacketScopeWraps(t *testing.T) {
	dir := t.TempDir()
	doc := storeConfig("store: file\nstorePath: " + dir)
	c, ml := startMem(t, doc, nil)
	hold := make(chan struct{})
	arrived := make(chan struct{})
	ml.setRemote("bob", func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if !strings.HasPrefix(string(p.Destination), "test.bob.") { // peer.route.* and the like
			return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.bob", "not here")
		}
		close(arrived)
		<-hold
		return &ilp.Fulfill{Fulfillment: preimage}, nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := ml.get("alice").inject(context.Background(), prepare("test.bob.x", 100, time.Now(), time.Minute))
		done <- err
	}()
	<-arrived
	if got, _ := c.Balance(context.Background(), "alice"); got != 100 {
		t.Fatalf("alice while in flight: %d, want 100 (limits see packets in flight)", got)
	}
	// The in-flight raise is not on disk: a reader of the file would see 0. Let the packet
	// finish, then it must be.
	close(hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = c.Close(context.Background())
	c2, _ := startMem(t, doc, nil)
	if got, _ := c2.Balance(context.Background(), "alice"); got != 100 {
		t.Fatalf("alice after restart: %d", got)
	}
}

// endFails is a store whose packet ends always fail with err, as a disk that broke or a Redis
// that went away after a packet's outcome.
type endFails struct {
	store.Store
	err error
}

func (endFails) BeginPacket(ctx context.Context) context.Context { return ctx }
func (e endFails) EndPacket(context.Context) error               { return e.err }

// appliedLater is the error of packet changes the store still applies (store.AppliedLater), as
// the Redis store's through an outage.
type appliedLater struct{}

func (appliedLater) Error() string      { return "kept, applied once Redis is back" }
func (appliedLater) AppliedLater() bool { return true }

// TestPacketEndFailureCounted: a packet whose balances the store could not make durable is
// still answered (the money moved), and counted on its source account for the on-call
// (ilp_connector_balance_store_errors{operation="end"}), not only logged — unless the store
// still applies them, which is nothing to reconcile.
func TestPacketEndFailureCounted(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want float64
	}{{errors.New("the disk is gone"), 1}, {appliedLater{}, 0}} {
		ml := &memLinks{}
		c := start(t, storeConfig(""), Options{Store: endFails{store.NewMemory(), tc.err}, newLink: ml.factory})
		ml.setRemote("bob", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
			return &ilp.Fulfill{Fulfillment: preimage}, nil
		})
		if _, err := ml.get("alice").inject(context.Background(), prepare("test.bob.x", 100, time.Now(), time.Minute)); err != nil {
			t.Fatalf("%v: the packet is answered whatever the store says afterwards: %v", tc.err, err)
		}
		got, _ := metricValue(t, c, middleware.MetricBalanceStoreErrors, map[string]string{"account": "alice", "operation": middleware.OpEndPacket})
		if got != tc.want {
			t.Errorf("%v: %s{account=alice,operation=end} = %v, want %v", tc.err, middleware.MetricBalanceStoreErrors, got, tc.want)
		}
	}
}

// TestJSStoreWarned: a CONNECTOR_STORE_PATH that also holds a LevelDB database (the JS
// connector's store) is opened, with a WARN that it is not read; a directory without one, or
// with a CURRENT file that is not LevelDB's, gets none.
func TestJSStoreWarned(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		warn  bool
	}{
		{"JS LevelDB files", map[string]string{"CURRENT": "MANIFEST-000004\n", "MANIFEST-000004": "x", "LOCK": ""}, true},
		{"empty directory", nil, false},
		{"another CURRENT file", map[string]string{"CURRENT": "hello\n"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var logs testlog.Buffer
			ml := &memLinks{}
			c, err := New(mustConfig(t, storeConfig("store: file\nstorePath: "+dir)),
				Options{newLink: ml.factory, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Close(context.Background())
			if got := strings.Contains(logs.String(), "LevelDB database"); got != tt.warn {
				t.Errorf("warned = %v, want %v; log:\n%s", got, tt.warn, logs.String())
			}
		})
	}
}

// TestIncomingDurationObserved: the time from the link's call to the answer, the next hop's
// included, lands in ilp_connector_incoming_ilp_packet_duration_seconds by result.
func TestIncomingDurationObserved(t *testing.T) {
	ml := &memLinks{}
	clock := testclock.New(time.Now())
	c := start(t, storeConfig(""), Options{Clock: clock, newLink: ml.factory})
	ml.setRemote("bob", func(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if p.Destination == "test.bob.x" { // not the connector's own messages (route updates)
			clock.Add(7 * time.Millisecond) // the next hop takes 7 ms to fulfill
		}
		return &ilp.Fulfill{Fulfillment: preimage}, nil
	})
	if _, err := ml.get("alice").inject(context.Background(), prepare("test.bob.x", 100, clock.Now(), time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := ml.get("alice").inject(context.Background(), prepare("test.nowhere", 100, clock.Now(), time.Minute)); err == nil {
		t.Fatal("a packet to no route was fulfilled")
	}
	for _, tc := range []struct {
		result string
		count  uint64
		sum    float64
	}{{"fulfilled", 1, .007}, {"rejected", 1, 0}, {"failed", 0, 0}} {
		h := histogramOf(t, c, middleware.MetricIncomingDuration, tc.result)
		if h.GetSampleCount() != tc.count || math.Abs(h.GetSampleSum()-tc.sum) > 1e-9 {
			t.Errorf("%s{result=%s}: count %d sum %v, want %d and %v", middleware.MetricIncomingDuration, tc.result,
				h.GetSampleCount(), h.GetSampleSum(), tc.count, tc.sum)
		}
	}
}

// histogramOf is the histogram of the series of name whose result label is result.
func histogramOf(t *testing.T, c *Connector, name, result string) *dto.Histogram {
	t.Helper()
	m := findMetric(t, c, name, map[string]string{"result": result})
	if m == nil {
		t.Fatalf("no series %s{result=%q}", name, result)
	}
	return m.GetHistogram()
}

// TestRedisReplicasReportSharedBalances: two connectors on one Redis (replicas); packets
// through one move the balances the other reports at its next scrape.
func TestRedisReplicasReportSharedBalances(t *testing.T) {
	srv := redistest.Start(t)
	replica := func(instance string) (*Connector, *memLinks) {
		return startMem(t, storeConfig(`store: redis
storeConfig: {url: "`+srv.URL()+`", instance: `+instance+`, prefix: "shared:"}`), nil)
	}
	c1, ml := replica("pod-1")
	c2, _ := replica("pod-2")
	ml.setRemote("bob", bobRemote(&fulfiller{}))
	for range 3 {
		if _, err := ml.get("alice").inject(context.Background(), prepare("test.bob.x", 100, time.Now(), time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	want, err := c1.Balance(context.Background(), "alice")
	if err != nil || want != 300 {
		t.Fatalf("alice on pod-1: %d %v, want 300", want, err)
	}
	if got, ok := metricValue(t, c2, middleware.MetricBalance, map[string]string{"account": "alice"}); !ok || got != float64(want) {
		t.Errorf("pod-2 reports %s{account=alice} = %v (exists: %v), want the shared %d", middleware.MetricBalance, got, ok, want)
	}
}
