// Package scale measures the Kubernetes config source with many Accounts against a real
// kube-apiserver and etcd, without the operator (whose own reconciles of 10,000 Accounts would
// share the two cores): how long a connector takes to start from the API objects and to apply
// a one-Account change. The count is ILPFLEET_SCALE_ACCOUNTS (default 300; docs/benchmarks.md
// reports 10000). It only logs durations; it asserts that every Account was applied.
package scale

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testport"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testenv"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
)

func accountCount(t *testing.T) int {
	if s := os.Getenv("ILPFLEET_SCALE_ACCOUNTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 15000 {
			t.Fatalf("ILPFLEET_SCALE_ACCOUNTS=%q: want 1 to 15000", s)
		}
		return n
	}
	return 300
}

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int32 {
	t.Helper()
	seen := make(map[int]bool, n)
	ports := make([]int32, 0, n)
	for len(ports) < n {
		if p := testport.Get(t); !seen[p] {
			seen[p] = true
			ports = append(ports, int32(p))
		}
	}
	return ports
}

// syncs collects the source's sync results.
type syncs struct {
	mu  sync.Mutex
	all []kube.SyncResult
	ch  chan kube.SyncResult
}

func (s *syncs) add(r kube.SyncResult) {
	s.mu.Lock()
	s.all = append(s.all, r)
	s.mu.Unlock()
	select {
	case s.ch <- r:
	default:
	}
}

// next waits for a sync that began at or after t and applied want accounts.
func (s *syncs) next(t *testing.T, after time.Time, want int) kube.SyncResult {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		s.mu.Lock()
		for _, r := range s.all {
			if !r.Begin.Before(after) && r.Err == nil && r.Accounts == want {
				s.mu.Unlock()
				return r
			}
		}
		s.mu.Unlock()
		select {
		case <-s.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, r := range s.all {
				t.Logf("sync: %d accounts, %d problems, err %v", r.Accounts, len(r.Problems), r.Err)
			}
			t.Fatalf("no sync with %d accounts", want)
		}
	}
}

func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test")
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(2))))
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	k8s, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "scale"}}
	conn := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: "big"},
		Spec: ilpv1.ConnectorSpec{ILPAddress: "test.big", Routing: &ilpv1.RoutingSpec{Broadcast: ptrTo(false)}}}
	for _, o := range []client.Object{ns, conn} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	n := accountCount(t)
	ports := freePorts(t, n+1)
	began := time.Now()
	createAccounts(t, k8s, ports[:n])
	t.Logf("created %d Accounts in %v", n, time.Since(began).Round(time.Millisecond))

	var got syncs
	got.ch = make(chan kube.SyncResult, 1)
	var rt *connector.Connector
	rctx, cancel := context.WithCancel(ctx)
	src, err := kube.New(kube.Options{Config: env.Config, Namespace: "scale", Connector: "big", Pod: "big-0",
		ListenHost: "127.0.0.1", DisableLeaderElection: true, OnSync: got.add,
		Start: func(_ context.Context, cfg *config.Config) (kube.Runtime, error) {
			c, err := connector.New(cfg, connector.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return nil, err
			}
			if err := c.Start(rctx); err != nil {
				return nil, err
			}
			rt = c
			return c, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- src.Run(rctx) }()
	defer func() {
		cancel()
		<-done
		if rt != nil {
			_ = rt.Close(context.Background())
		}
	}()
	first := got.next(t, start, n)
	t.Logf("start with %d Accounts: process start → connector running %v (cache sync %v, build+Start %v)", n,
		first.End.Sub(start).Round(time.Millisecond), first.Begin.Sub(start).Round(time.Millisecond), first.End.Sub(first.Begin).Round(time.Millisecond))

	var change []time.Duration
	for i := range 5 {
		a := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: "acct-0"}}
		t0 := time.Now()
		patch := fmt.Sprintf(`{"spec":{"maxPacketAmount":"%d"}}`, 1000+i)
		if err := k8s.Patch(ctx, a, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
			t.Fatal(err)
		}
		waitLimit(t, &rt, 1000+uint64(i))
		change = append(change, got.next(t, t0, n).End.Sub(t0))
	}
	t0 := time.Now()
	add := account("acct-new", ports[n])
	if err := k8s.Create(ctx, add); err != nil {
		t.Fatal(err)
	}
	added := got.next(t, t0, n+1).End.Sub(t0)
	slices.Sort(change)
	t.Logf("one-Account change with %d Accounts, API write → Apply done: median %v, max %v (n=%d); one Account added: %v",
		n, change[len(change)/2].Round(time.Millisecond), change[len(change)-1].Round(time.Millisecond), len(change), added.Round(time.Millisecond))
}

func waitLimit(t *testing.T, rt **connector.Connector, want uint64) {
	t.Helper()
	for range 6000 {
		if m := (*rt).Config().Accounts["acct-0"].MaxPacketAmount; m != nil && *m == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("maxPacketAmount %d never applied", want)
}

func ptrTo[T any](v T) *T { return &v }

func account(name string, port int32) *ilpv1.Account {
	return &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: "scale", Name: name},
		Spec: ilpv1.AccountSpec{ConnectorRef: "big", Relation: ilpv1.RelationChild, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: port}}}}
}

// createAccounts creates acct-0 … acct-(n-1) with 8 writers.
func createAccounts(t *testing.T, k8s client.Client, ports []int32) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(ports); i += 8 {
				if err := k8s.Create(context.Background(), account("acct-"+strconv.Itoa(i), ports[i])); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
