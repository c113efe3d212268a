package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/ilpfleet/ilpfleet/internal/memlimit"
	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
	"github.com/ilpfleet/ilpfleet/runtime/admin"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
)

// connectorFlags are the flags of `ilpfleet connector`.
type connectorFlags struct {
	config    string
	source    string // env, file or kubernetes
	connector string // the Connector to run, with --source=kubernetes
	namespace string // POD_NAMESPACE, with --source=kubernetes
	logFormat string
	logLevel  string
}

// The config sources of `ilpfleet connector --source`.
const (
	sourceEnv        = "env"
	sourceFile       = "file"
	sourceKubernetes = "kubernetes"
)

func parseConnectorFlags(args []string, out io.Writer) (connectorFlags, error) {
	var f connectorFlags
	fs := flag.NewFlagSet("connector", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.config, "config", "", "YAML or JSON config file, watched for changes (default: the CONNECTOR_* environment variables, as ilp-connector)")
	fs.StringVar(&f.source, "source", "", "where the config comes from: env (CONNECTOR_* variables), file (--config) or kubernetes (the Connector named by --connector in POD_NAMESPACE, hot-reloaded); default: file with --config, else env")
	fs.StringVar(&f.connector, "connector", "", "with --source=kubernetes: the name of the Connector this pod runs")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, checkSource(&f)
}

// checkSource resolves the default --source and refuses flags that do not go together.
func checkSource(f *connectorFlags) error {
	if f.source == "" {
		f.source = sourceEnv
		if f.config != "" {
			f.source = sourceFile
		}
	}
	switch f.source {
	case sourceEnv:
		if f.config != "" {
			return errors.New("--config needs --source=file (or no --source)")
		}
	case sourceFile:
		if f.config == "" {
			return errors.New("--source=file needs --config=<path>")
		}
	case sourceKubernetes:
		f.namespace = os.Getenv("POD_NAMESPACE")
		switch {
		case f.config != "":
			return errors.New("--config cannot be used with --source=kubernetes")
		case f.connector == "":
			return errors.New("--source=kubernetes needs --connector=<name of the Connector>")
		case f.namespace == "":
			return errors.New("--source=kubernetes needs POD_NAMESPACE (the operator sets it from the downward API)")
		}
	default:
		return fmt.Errorf("--source %q: want env, file or kubernetes", f.source)
	}
	if f.connector != "" && f.source != sourceKubernetes {
		return errors.New("--connector applies to --source=kubernetes only")
	}
	return nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: debugLevelName}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// debugLevelName writes every level below INFO as DEBUG. The Kubernetes client libraries log
// through logr, whose V(n) is slog level −n; slog would name V(2) "DEBUG+2", which log pipelines
// keyed on DEBUG/INFO/WARN/ERROR do not know. Which debug verbosity a record had is not worth
// that: --log-level debug shows them all.
func debugLevelName(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		if lv, ok := a.Value.Any().(slog.Level); ok && lv < slog.LevelInfo {
			a.Value = slog.StringValue(slog.LevelDebug.String())
		}
	}
	return a
}

// packetGCPercent is the GOGC of the packet-forwarding commands when the user has not set one.
// Every packet allocates a little (decoded packets, frames, contexts) while the live heap of a
// connector is small (tens of MB), so at Go's default of 100 the collector runs very often at
// full load; 400 runs it a quarter as often, for a heap that peaks at about five times the live
// one (BenchmarkForwardBTP: +14 % packets/s). So that such a heap does not run into a container's
// memory limit, a process in a cgroup with a memory limit and no GOMEMLIMIT in its environment
// gets a soft limit of 90 % of it (the operator also sets GOMEMLIMIT in Connector pods, from
// their spec: controllers.connectorEnv). GOGC and GOMEMLIMIT in the environment always win.
const packetGCPercent = 400

// memLimitShare is the part of the cgroup's memory limit given to the Go heap: the rest is for
// what the heap does not count (stacks, the runtime's own memory).
const memLimitShare = 0.9

// tuneGC applies packetGCPercent unless GOGC is set, and a soft memory limit from the cgroup
// unless GOMEMLIMIT is set.
func tuneGC() { tuneGCFrom(os.DirFS("/")) }

// tuneGCFrom is tuneGC with the cgroup files read from root (tests give their own).
func tuneGCFrom(root fs.FS) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(packetGCPercent)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		if limit, ok := memlimit.Of(root); ok {
			debug.SetMemoryLimit(int64(float64(limit) * memLimitShare))
		}
	}
}

// runConnector runs one connector until ctx is done (SIGTERM/SIGINT), then closes it gracefully.
func runConnector(ctx context.Context, args []string) error {
	tuneGC()
	flags, err := parseConnectorFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(os.Stderr, flags.logFormat, flags.logLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	if flags.source == sourceKubernetes {
		return runKubeConnector(ctx, flags, log)
	}
	cfg, watcher, warnings, err := connector.LoadConfig(flags.config, os.Environ())
	for _, w := range warnings {
		log.Warn(w)
	}
	if err != nil {
		return err
	}
	reg := admin.NewRegistry(cfg.CollectDefaultMetrics)
	c, err := connector.New(cfg, connector.Options{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		stopped := stoppedStart(ctx, err) // before the close, which a later signal must not change
		closeConnector(c, cfg, log)
		return startFailure(stopped, err, log)
	}
	ctx, stop := context.WithCancel(ctx) // also stopped when the store fails
	defer stop()
	if cfg.AdminAPI {
		srv, err := serveAdmin(ctx, c, cfg, log)
		if err != nil {
			closeConnector(c, cfg, log)
			return err
		}
		defer func() { _ = srv.Wait() }()
	}
	if watcher != nil {
		go watchConfig(ctx, watcher, c, log)
	}
	go stopOnStoreFailure(ctx, c, stop, log)
	<-ctx.Done()
	log.Info("shutting down")
	closeConnector(c, c.Config(), log)
	return storeFailure(c)
}

// stoppedStart reports whether Start failed with err because the stop was asked for: ctx is
// done and Start gave up on it. A real failure found as the signal came (a port in use) is
// not a stop, and still exits 1.
func stoppedStart(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, context.Canceled)
}

// startFailure is what runConnector returns when Start failed with err. A stop asked for
// (SIGTERM or SIGINT: the command's ctx was done when Start returned) while the links were
// still connecting is not a failure: Start gave up because of it, and the process exits 0,
// as it does for a stop once started. Anything else is a start-up failure (exit 1).
func startFailure(stopped bool, err error, log *slog.Logger) error {
	if !stopped {
		return err
	}
	log.Info("stopped before start-up finished", "interrupted", err)
	return nil
}

// watchConfig applies every valid change of the config file; an invalid one is logged and the
// running config kept (the Watcher delivers only valid configs, Apply may still refuse one,
// which the Watcher offers again later).
// A refusal that each retry meets again is logged again only every few minutes, with a count.
func watchConfig(ctx context.Context, w *config.Watcher, c *connector.Connector, log *slog.Logger) {
	refused := warnlimit.Gate{Every: 5 * time.Minute}
	_ = w.Run(ctx, func(_, next *config.Config) error {
		err := c.Apply(ctx, next)
		if err == nil {
			refused.Reset()
			return nil
		}
		if ok, heldBack := refused.Pass(err.Error(), time.Now()); ok {
			log.Error("config change not applied; the running config stays in force", "error", err, "retryIn", config.RetryRefused,
				"repeatedSinceLastLog", heldBack)
		}
		return err
	}, func(err error) {
		log.Error("invalid config file; the running config stays in force", "error", err)
	})
}

// closeConnector gives packets in flight the max hold time to finish, plus a margin.
func closeConnector(c *connector.Connector, cfg *config.Config, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.MaxHoldTime+5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		log.Error("closing the connector", "error", err)
	}
}

// serveAdmin serves the admin API, /metrics and the /healthz probe until ctx is done.
func serveAdmin(ctx context.Context, c *connector.Connector, cfg *config.Config, log *slog.Logger) (*admin.Server, error) {
	h := admin.NewHandler(c, c.Gatherer(), admin.Options{Log: log, Ready: func() error {
		if c.Address() == "" {
			return errors.New("the connector does not know its ILP address yet")
		}
		return nil
	}})
	srv, err := admin.Serve(ctx, cfg.AdminAPIHost, cfg.AdminAPIPort, h)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	log.Info("admin API listening", "addr", srv.Addr())
	return srv, nil
}

// runKubeConnector runs the connector of a pod: the Kubernetes source watches the Connector,
// starts the connector with the first valid config and applies every later one in place.
func runKubeConnector(ctx context.Context, flags connectorFlags, log *slog.Logger) error {
	ctx, stop := context.WithCancel(ctx) // also stopped when the store fails
	defer stop()
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	restCfg, err := ctrlconfig.GetConfig()
	if err != nil {
		return fmt.Errorf("--source=kubernetes: %w", err)
	}
	var c *connector.Connector
	var srv *admin.Server
	start := func(_ context.Context, cfg *config.Config) (kube.Runtime, error) {
		cc, err := connector.New(cfg, connector.Options{Logger: log, Registerer: admin.NewRegistry(cfg.CollectDefaultMetrics)})
		if err != nil {
			return nil, err
		}
		if err := cc.Start(ctx); err != nil {
			closeConnector(cc, cfg, log)
			return nil, err
		}
		if cfg.AdminAPI {
			if srv, err = serveAdmin(ctx, cc, cfg, log); err != nil {
				closeConnector(cc, cfg, log)
				return nil, err
			}
		}
		c = cc
		go stopOnStoreFailure(ctx, cc, stop, log)
		return cc, nil
	}
	src, err := kube.New(kube.Options{Config: restCfg, Namespace: flags.namespace, Connector: flags.connector,
		Pod: os.Getenv("POD_NAME"), Start: start, Logger: log})
	if err != nil {
		return err
	}
	log.Info("watching the Connector", "namespace", flags.namespace, "connector", flags.connector)
	err = src.Run(ctx) // returns when ctx is done; the source's goroutines have stopped
	if c != nil {
		err = cmp.Or(storeFailure(c), err)
	}
	log.Info("shutting down")
	if c != nil {
		closeConnector(c, c.Config(), log)
	}
	if srv != nil {
		_ = srv.Wait()
	}
	return err
}

// stopOnStoreFailure stops the connector's command when its store fails for good, so that it
// exits with the error (and Kubernetes restarts the container).
func stopOnStoreFailure(ctx context.Context, c *connector.Connector, stop context.CancelFunc, log *slog.Logger) {
	failed, why := c.StoreFailed()
	select {
	case <-ctx.Done():
	case <-failed:
		log.Error("shutting down: the balance store failed", "error", why())
		stop()
	}
}

// storeFailure is why the connector's store failed for good, or nil.
func storeFailure(c *connector.Connector) error {
	failed, why := c.StoreFailed()
	select {
	case <-failed:
		return why()
	default:
		return nil
	}
}
