// Package manager runs the ilpfleet operator: a controller-runtime manager with every
// reconciler of package controllers, leader election, health probes and metrics.
package manager

import (
	"context"
	"flag"
	"fmt"

	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/ilpfleet/ilpfleet/controllers"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
)

// Run parses the manager's flags and runs it until ctx ends.
func Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "path to a kubeconfig; empty: in-cluster config or $KUBECONFIG")
	metricsAddr := fs.String("metrics-bind-address", "0", "address of the metrics endpoint (:8080, or 0 to disable)")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	leaderElect := fs.Bool("leader-elect", false, "elect a leader so that only one replica reconciles")
	image := fs.String("connector-image", "", "image of connector pods whose Connector sets no spec.image (default: $"+controllers.EnvImage+", else ilpfleet:<version>)")
	logOpts := zap.Options{}
	logOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	withoutStacktraces(fs, &logOpts)
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&logOpts)))

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme.New(),
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress: *probeAddr,
		LeaderElection:         *leaderElect,
		LeaderElectionID:       "manager.ilpfleet.dev",
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	opts := controllers.OptionsFromEnv()
	if *image != "" {
		opts.ConnectorImage = *image
	}
	if err := controllers.SetupWithOptions(ctx, mgr, opts); err != nil {
		return err
	}
	// Here rather than in SetupWithOptions: the registry is per process, and a test process
	// may set up several managers. Every replica exports the series, from its own cache.
	if err := metrics.Registry.Register(controllers.NewStatusCollector(mgr.GetClient())); err != nil {
		return fmt.Errorf("register status metrics: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// withoutStacktraces turns off the stack traces that controller-runtime's production logger
// adds to every ERROR line, unless --zap-devel or --zap-stacktrace-level asks for them: each
// reconcile that fails for a passing reason (a conflict, the API server away) would print
// twenty lines of controller-runtime's own frames, which tell an operator on call nothing the
// error does not.
func withoutStacktraces(fs *flag.FlagSet, o *zap.Options) {
	set := false
	fs.Visit(func(f *flag.Flag) {
		set = set || f.Name == "zap-stacktrace-level" || f.Name == "zap-devel" && f.Value.String() == "true"
	})
	if !set {
		o.StacktraceLevel = zapcore.PanicLevel
	}
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return ctrl.GetConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}
