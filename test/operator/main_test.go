// Package operator tests the operator and the connector runtime together against a real
// kube-apiserver and etcd: the operator runs in-process (controllers.SetupWithOptions), and
// each connector runtime runs in-process with the Kubernetes config source, talking to the API
// server as the ServiceAccount the operator made for its Connector (impersonation), so the
// Role the operator generates is what the runtime gets.
package operator

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testport"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/controllers"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testenv"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

var (
	adminCfg *rest.Config
	k8s      client.Client // uncached admin client
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	lvl := zapcore.Level(2)
	if os.Getenv("TEST_VERBOSE_MANAGER") != "" {
		lvl = -1
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(lvl)))
	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	adminCfg = env.Config
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: scheme.New(), Cache: controllers.CacheOptions(), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := controllers.SetupWithOptions(ctx, mgr, controllers.Options{ConnectorImage: "ilpfleet:test"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "operator:", err)
		}
	}()
	defer func() { cancel(); <-done }()
	if k8s, err = client.New(env.Config, client.Options{Scheme: scheme.New()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// eventually polls cond until it returns nil; the bound only stops a hung test.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "op-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int32 { return int32(testport.Get(t)) }

// runtimeUnderTest is one connector runtime, as a pod would run it.
type runtimeUnderTest struct {
	name   string
	src    *kube.Source
	conn   atomic.Pointer[connector.Connector]
	starts atomic.Int32

	mu    sync.Mutex
	syncs []kube.SyncResult
}

// lastSync returns the last sync that ended after t, if any.
func (r *runtimeUnderTest) syncAfter(t time.Time) (kube.SyncResult, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.syncs {
		if !s.Begin.Before(t) {
			return s, true
		}
	}
	return kube.SyncResult{}, false
}

// saImpersonation is the rest config of the Connector's ServiceAccount.
func saImpersonation(ns, conn string) *rest.Config {
	c := rest.CopyConfig(adminCfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + conn + "-connector"}
	return c
}

// startRuntime waits for the operator's RoleBinding of the Connector, then runs the runtime
// with the Kubernetes source as the Connector's ServiceAccount until the test ends.
func startRuntime(t *testing.T, ns, name string) *runtimeUnderTest {
	t.Helper()
	return startRuntimePod(t, ns, name, name+"-pod-0", nil)
}

// createPod creates the Pod object of an in-process runtime (envtest runs no kubelet, so it
// never starts): the operator drops the status.pods entries of pods that do not exist.
func createPod(t *testing.T, ns, connector, name string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{"app.kubernetes.io/component": "connector", ilpv1.LabelConnector: connector}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "connector", Image: "ilpfleet:test"}}},
	}
	if err := k8s.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
}

// startRuntimePod is startRuntime as pod; a non-nil startErr makes every start of the
// connector fail with it, as a pod whose runtime cannot apply its config.
func startRuntimePod(t *testing.T, ns, name, pod string, startErr error) *runtimeUnderTest {
	t.Helper()
	eventually(t, "RoleBinding of "+name, func() error {
		var rb rbacv1.RoleBinding
		return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name + "-connector"}, &rb)
	})
	createPod(t, ns, name, pod)
	r := &runtimeUnderTest{name: name}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("TEST_VERBOSE_RUNTIME") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("runtime", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	src, err := kube.New(kube.Options{
		Config: saImpersonation(ns, name), Namespace: ns, Connector: name, Pod: pod,
		Logger: log, ListenHost: "127.0.0.1", ReportInterval: 250 * time.Millisecond, RetryRefused: 500 * time.Millisecond,
		Start: func(_ context.Context, cfg *config.Config) (kube.Runtime, error) {
			if startErr != nil {
				return nil, startErr
			}
			c, err := connector.New(cfg, connector.Options{Logger: log})
			if err != nil {
				return nil, err
			}
			if err := c.Start(ctx); err != nil {
				_ = c.Close(context.Background())
				return nil, err
			}
			r.starts.Add(1)
			r.conn.Store(c)
			return c, nil
		},
		OnSync: func(s kube.SyncResult) {
			r.mu.Lock()
			r.syncs = append(r.syncs, s)
			r.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.src = src
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("source of %s: %v", name, err)
		}
		if c := r.conn.Load(); c != nil {
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			_ = c.Close(cctx)
		}
	})
	return r
}

// configApplied waits for the Connector's ConfigApplied condition to match.
func configApplied(t *testing.T, ns, name string, want func(*metav1.Condition) error) {
	t.Helper()
	eventually(t, "ConfigApplied of "+name, func() error {
		var c ilpv1.Connector
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &c); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(c.Status.Conditions, ilpv1.ConditionConfigApplied)
		if cond == nil {
			return fmt.Errorf("no ConfigApplied yet; conditions %+v", c.Status.Conditions)
		}
		if cond.ObservedGeneration != c.Generation {
			return fmt.Errorf("ConfigApplied is for generation %d, not %d", cond.ObservedGeneration, c.Generation)
		}
		return want(cond)
	})
}

func isTrue(c *metav1.Condition) error {
	if c.Status != metav1.ConditionTrue {
		return fmt.Errorf("ConfigApplied %s %s: %s", c.Status, c.Reason, c.Message)
	}
	return nil
}

// quiet discards the logs of the test children.
var quiet = slog.New(slog.DiscardHandler)

// preimage is the fulfillment every test receiver answers with.
var preimage = [32]byte{1, 2, 3}

func condition() [32]byte { return sha256.Sum256(preimage[:]) }

// child is a BTP client of a mini-accounts account: it sends packets and fulfills those it gets.
type child struct {
	cl       *btp.Client
	received atomic.Int64
}

func dialChild(t *testing.T, port int32, user string) *child {
	t.Helper()
	c, err := tryChild(port, user, 20*time.Second)
	if err != nil {
		t.Fatalf("child %s on port %d: %v", user, port, err)
	}
	t.Cleanup(func() { _ = c.cl.Close() })
	return c
}

// tryChild connects a child; the caller closes it.
func tryChild(port int32, user string, timeout time.Duration) (*child, error) {
	ch := &child{}
	cl, err := btp.NewClient(btp.ClientOptions{Server: fmt.Sprintf("btp+ws://%s:tok-%s@127.0.0.1:%d", user, user, port), ReconnectInterval: 50 * time.Millisecond, Common: btp.Common{Logger: quiet}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = cl.Start(ctx, func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		ch.received.Add(1)
		return &ilp.Fulfill{Fulfillment: preimage}, nil
	})
	if err != nil {
		_ = cl.Close()
		return nil, err
	}
	ch.cl = cl
	return ch, nil
}

// send sends one packet and returns nil for a Fulfill.
func (c *child) send(amount uint64, dest string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.cl.Send(ctx, &ilp.Prepare{Amount: amount, ExpiresAt: time.Now().Add(8 * time.Second),
		ExecutionCondition: condition(), Destination: ilp.Address(dest)})
	return err
}

func rejectCode(err error) ilp.ErrorCode {
	if r, ok := err.(*ilp.Reject); ok {
		return r.Code
	}
	return ""
}
