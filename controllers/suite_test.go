package controllers

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

// k8s is an uncached client of the package's shared control plane, on which the manager runs.
var k8s client.Client

// managerClient is the manager's own client, which reads from its cache and knows its field
// indexes: for tests that run a reconciler by hand.
var managerClient client.Client

// testEnv is the shared control plane; tests derive other identities from its admin config.
var testEnv *envtest.Environment

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	testEnv = env

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:  scheme.New(),
		Cache:   CacheOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := SetupWithOptions(ctx, mgr, Options{ConnectorImage: "ilpfleet:test"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	managerClient = mgr.GetClient()
	// Tests read straight from the API server: the manager's cache lags behind writes, and a
	// test that read from it would race the informer.
	if k8s, err = client.New(env.Config, client.Options{Scheme: mgr.GetScheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		fmt.Fprintln(os.Stderr, "cache did not sync")
		return 1
	}
	return m.Run()
}

// zapLevel keeps the manager quiet unless a test run asks for logs.
func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE_MANAGER") != "" {
		return -1
	}
	return 2
}

// namespace creates a fresh namespace for one test: envtest never finishes deleting namespaces,
// so tests isolate themselves by name instead.
func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// eventually polls cond until it returns nil or the bound passes. The bound only stops a hung
// test; no test asserts how fast something happens.
func eventually(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
