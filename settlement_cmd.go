package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/admin"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// engineFlags are the flags of `ilpfleet settlement-engine`.
type engineFlags struct {
	engine       string
	connectorURL string
	listen       string
	metrics      string // listen address of GET /metrics; "" none
	assetScale   uint
	mockScale    uint
	store        string // "memory" or a redis:// URL
	redisPrefix  string
	logFormat    string
	logLevel     string
}

func parseEngineFlags(args []string, out io.Writer) (engineFlags, error) {
	var f engineFlags
	fs := flag.NewFlagSet("settlement-engine", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.engine, "engine", "mock", "the engine: mock, the only one built in (NO MONEY MOVES: it settles by a message to the peer's mock; for tests and demos)")
	fs.StringVar(&f.connectorURL, "connector-url", envOr("CONNECTOR_URL", engine.DefaultConnectorURL), "the connector's settlement API (its settlementApiHost/Port); env CONNECTOR_URL")
	fs.StringVar(&f.listen, "listen", envOr("ENGINE_LISTEN", engine.DefaultAddr), "listen address of the engine's RFC 38 API (0.0.0.0:3000 in a pod); env ENGINE_LISTEN")
	fs.StringVar(&f.metrics, "metrics-listen", envOr("ENGINE_METRICS_LISTEN", ""), "listen address of GET /metrics (the engine's ilp_settlement_engine_* metrics, Go and process metrics), as --listen: :9100 is every interface (in a pod), 127.0.0.1:9100 this host only; empty: none; env ENGINE_METRICS_LISTEN")
	fs.UintVar(&f.assetScale, "asset-scale", 9, "scale of the amounts the engine credits to the connector (its accounts' assetScale; 0 credits whole units only)")
	fs.UintVar(&f.mockScale, "mock-scale", 2, "with --engine=mock: decimal places the mock settles (rounded down; the rest waits as a leftover)")
	fs.StringVar(&f.store, "store", envOr("ENGINE_STORE", "memory"), "the engine's state: memory (lost on restart) or a redis:// URL; env ENGINE_STORE")
	fs.StringVar(&f.redisPrefix, "redis-prefix", "", "with a Redis store: key prefix (default ilpfleet:se:); one process at a time: another waits until this one stops")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case fs.NArg() > 0:
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	case f.engine != "mock":
		return f, fmt.Errorf("--engine %q: the only built-in engine is mock; write a real one with the framework in runtime/settlement/engine", f.engine)
	case f.assetScale > 255 || f.mockScale > 255:
		return f, fmt.Errorf("--asset-scale and --mock-scale take 0 to 255")
	case f.store != "memory" && !strings.HasPrefix(f.store, "redis://") && !strings.HasPrefix(f.store, "rediss://"):
		return f, fmt.Errorf("--store %q: want memory or a redis:// URL", f.store)
	}
	if f.metrics != "" {
		if err := checkListenAddr(f.metrics); err != nil {
			return f, fmt.Errorf("--metrics-listen %q: %w", f.metrics, err)
		}
	}
	return f, nil
}

// checkListenAddr checks a listen address host:port (host may be empty: every interface).
func checkListenAddr(addr string) error {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port, err := strconv.Atoi(p); err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("port %q: want 0 to 65535", p)
	}
	return nil
}

// config is the framework's Config of f, its metrics on reg (nil: none). The flag always
// gives a scale (9 by default), so a 0 was asked for: whole units.
func (f engineFlags) config(log *slog.Logger, reg prometheus.Registerer) engine.Config {
	return engine.Config{ConnectorURL: f.connectorURL, Addr: f.listen, AssetScale: uint8(f.assetScale),
		WholeUnits: f.assetScale == 0, Log: log, Registerer: reg}
}

// engineListen listens for the metrics (changed by tests).
var engineListen = net.Listen

// metricsServer serves GET /metrics until the context given to serveEngineMetrics ends.
type metricsServer struct {
	ln   net.Listener
	done chan error // receives the shutdown's error (nil: graceful), once
}

// Addr is the bound address, host:port.
func (m *metricsServer) Addr() string { return m.ln.Addr().String() }

// Wait blocks until the server has stopped and returns the error of its shutdown: nil after a
// graceful one, or after serving failed on its own (logged when it happened). Called once.
func (m *metricsServer) Wait() error { return <-m.done }

// serveEngineMetrics serves GET /metrics on f.metrics, until ctx ends, with the Go and
// process collectors (as the connector's admin port with collectDefaultMetrics), and returns
// the registry the engine's metrics go on; none (nil, nil) without --metrics-listen. It
// listens as --listen does (net.Listen: ":9100" is every interface), before the store is
// opened, so that a process waiting for a Redis prefix shows its process metrics, and a bad
// address fails at once.
func serveEngineMetrics(ctx context.Context, f engineFlags, log *slog.Logger) (*prometheus.Registry, *metricsServer, error) {
	if f.metrics == "" {
		return nil, nil, nil
	}
	ln, err := engineListen("tcp", f.metrics)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	reg := admin.NewRegistry(true)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	m := &metricsServer{ln: ln, done: make(chan error, 1)}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	go func() {
		select {
		case err := <-served: // failed on its own: said now, not at exit
			log.Error("settlement engine metrics: serve failed; /metrics is not served any more", "addr", m.Addr(), "err", err)
			m.done <- nil
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), admin.ShutdownTimeout)
		defer cancel()
		err := hs.Shutdown(sctx)
		<-served
		m.done <- err
	}()
	log.Info("settlement engine metrics listening", "addr", m.Addr(), "path", "/metrics")
	return reg, m, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// runSettlementEngine runs a settlement engine until ctx is done, or until its Redis store
// loses the lease on its prefix (an error: the process must restart).
func runSettlementEngine(ctx context.Context, args []string) error {
	f, err := parseEngineFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(engineLogOutput, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	mctx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx)) // served to the end
	defer stopMetrics()
	reg, msrv, err := serveEngineMetrics(mctx, f, log)
	if err != nil {
		return err
	}
	if msrv != nil {
		defer func() {
			stopMetrics()
			if err := msrv.Wait(); err != nil {
				log.Error("settlement engine metrics: shutdown", "err", err)
			}
		}()
	}
	// With Redis, this waits while another process holds the prefix (until SIGTERM).
	st, err := openEngineStore(ctx, f, log)
	if err != nil {
		return err
	}
	log.Warn("running the mock settlement engine: NO MONEY MOVES, settlements are messages between two mocks")
	srv, err := engine.Start(ctx, mock.Connect(uint8(f.mockScale)), st, f.config(log, reg))
	if err != nil {
		return errors.Join(err, st.Close())
	}
	var lost error
	select {
	case <-ctx.Done():
	case <-st.Failed():
		lost = st.Err()
		log.Error("shutting down: the engine's store failed", "err", lost)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	serr := srv.Close(sctx)
	// The store only after the server, once its Settles returned: its Close releases the
	// prefix's lease, and the next process on it may start then.
	return errors.Join(lost, serr, st.Close())
}

// engineStore is the store of `ilpfleet settlement-engine`.
type engineStore interface {
	engine.Store
	// Failed is closed when the store may no longer be used (see engine.Redis.Failed), Err
	// says why.
	Failed() <-chan struct{}
	Err() error
	Close() error
}

// memoryStore is the memory store, which never fails.
type memoryStore struct{ *engine.Memory }

func (memoryStore) Failed() <-chan struct{} { return nil }
func (memoryStore) Err() error              { return nil }
func (memoryStore) Close() error            { return nil }

// engineRedisLease is the Redis store's lease, and engineLogOutput where the log goes (both
// changed by tests).
var (
	engineRedisLease           = engine.DefaultRedisLease
	engineLogOutput  io.Writer = os.Stderr
)

func openEngineStore(ctx context.Context, f engineFlags, log *slog.Logger) (engineStore, error) {
	if f.store == "memory" {
		return memoryStore{engine.NewMemory()}, nil
	}
	r, err := engine.OpenRedisWith(ctx, f.store, f.redisPrefix, engine.RedisOptions{Lease: engineRedisLease, Log: log})
	if err != nil {
		return nil, err
	}
	return r, nil
}
