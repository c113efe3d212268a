package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/admin"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
)

// connectorFlags are the flags of `ilpfleet connector`.
type connectorFlags struct {
	config    string
	logFormat string
	logLevel  string
}

func parseConnectorFlags(args []string, out io.Writer) (connectorFlags, error) {
	var f connectorFlags
	fs := flag.NewFlagSet("connector", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.config, "config", "", "YAML or JSON config file, watched for changes (default: the CONNECTOR_* environment variables, as ilp-connector)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return f, nil
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// runConnector runs one connector until ctx is done (SIGTERM/SIGINT), then closes it gracefully.
func runConnector(ctx context.Context, args []string) error {
	flags, err := parseConnectorFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log, err := newLogger(os.Stderr, flags.logFormat, flags.logLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
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
		closeConnector(c, cfg, log)
		return err
	}
	if cfg.AdminAPI {
		h := admin.NewHandler(c, c.Gatherer(), admin.Options{Log: log, Ready: func() error {
			if c.Address() == "" {
				return errors.New("the connector does not know its ILP address yet")
			}
			return nil
		}})
		srv, err := admin.Serve(ctx, cfg.AdminAPIHost, cfg.AdminAPIPort, h)
		if err != nil {
			closeConnector(c, cfg, log)
			return fmt.Errorf("admin API: %w", err)
		}
		log.Info("admin API listening", "addr", srv.Addr())
		defer func() { _ = srv.Wait() }()
	}
	if watcher != nil {
		go watchConfig(ctx, watcher, c, log)
	}
	<-ctx.Done()
	log.Info("shutting down")
	closeConnector(c, c.Config(), log)
	return nil
}

// watchConfig applies every valid change of the config file; an invalid one is logged and the
// running config kept (the Watcher delivers only valid configs, Apply may still refuse one).
func watchConfig(ctx context.Context, w *config.Watcher, c *connector.Connector, log *slog.Logger) {
	_ = w.Run(ctx, func(_, next *config.Config) {
		if err := c.Apply(ctx, next); err != nil {
			log.Error("config change not applied; the running config stays in force", "error", err)
		}
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
