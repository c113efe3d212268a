package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/settlementtest"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/redis/go-redis/v9"
)

func TestParseEngineFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		want    string // the parsed flags, printed; "" when an error is expected
		wantErr string
	}{
		{args: nil, want: "mock http://127.0.0.1:7771 127.0.0.1:3000 9 2 memory "},
		{args: nil, env: map[string]string{"CONNECTOR_URL": "http://conn-admin:7771", "ENGINE_LISTEN": "0.0.0.0:3000", "ENGINE_STORE": "redis://r:6379/0", "ENGINE_METRICS_LISTEN": "0.0.0.0:9100"},
			want: "mock http://conn-admin:7771 0.0.0.0:3000 9 2 redis://r:6379/0 0.0.0.0:9100"},
		{args: []string{"--connector-url", "http://x:1", "--asset-scale", "6", "--mock-scale", "0", "--metrics-listen", "127.0.0.1:9100"}, want: "mock http://x:1 127.0.0.1:3000 6 0 memory 127.0.0.1:9100"},
		{args: []string{"--metrics-listen", "9100"}, wantErr: "--metrics-listen"},
		{args: []string{"--metrics-listen", ":99999"}, wantErr: "want 0 to 65535"},
		{args: []string{"--engine", "xrp"}, wantErr: "only built-in engine is mock"},
		{args: []string{"--asset-scale", "256"}, wantErr: "0 to 255"},
		{args: []string{"--store", "postgres://db"}, wantErr: "want memory or a redis:// URL"},
		{args: []string{"extra"}, wantErr: "unexpected arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			f, err := parseEngineFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			got := strings.Join([]string{f.engine, f.connectorURL, f.listen, itoa(f.assetScale), itoa(f.mockScale), f.store, f.metrics}, " ")
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func itoa(v uint) string { return strconv.FormatUint(uint64(v), 10) }

// TestEngineConfigStarts: every --asset-scale the flags take, 0 included (whole units, which
// the framework takes only when said so), gives a Config the framework starts with.
func TestEngineConfigStarts(t *testing.T) {
	for _, args := range [][]string{nil, {"--asset-scale", "0"}, {"--asset-scale", "6"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			f, err := parseEngineFlags(append(args, "--listen", "127.0.0.1:0"), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := engine.Start(context.Background(), mock.Connect(2), engine.NewMemory(), f.config(slog.New(slog.DiscardHandler), nil))
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSettlementEngineRedisLease: `ilpfleet settlement-engine` on a Redis prefix another
// process holds waits (until SIGTERM, then fails saying so); one that loses the prefix's
// lease stops with an error (a non-zero exit) instead of settling on.
func TestSettlementEngineRedisLease(t *testing.T) {
	srv := redistest.Start(t)
	defer func(l time.Duration, w io.Writer) { engineRedisLease, engineLogOutput = l, w }(engineRedisLease, engineLogOutput)
	log := &testlog.Buffer{}
	engineRedisLease, engineLogOutput = 3*time.Second, log
	prefix := "t:" + t.Name() + ":"
	args := []string{"--store", srv.URL(), "--redis-prefix", prefix, "--listen", "127.0.0.1:0",
		"--connector-url", "http://127.0.0.1:1"}
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	ctx := context.Background()

	first := make(chan error, 1)
	firstCtx, stopFirst := context.WithCancel(ctx)
	defer stopFirst()
	go func() { first <- runSettlementEngine(firstCtx, args) }()
	var holder string
	testwait.Eventually(t, "the first engine holds the prefix", 6000, func() bool {
		holder = rc.Get(ctx, prefix+"lease").Val()
		return holder != ""
	})

	second := make(chan error, 1)
	secondCtx, stopSecond := context.WithCancel(ctx)
	go func() { second <- runSettlementEngine(secondCtx, args) }()
	testwait.Eventually(t, "the second engine waits", 6000, func() bool {
		return strings.Contains(log.String(), "another process holds this Redis prefix; waiting")
	})
	stopSecond() // SIGTERM
	if err := <-second; err == nil || !strings.Contains(err.Error(), "waiting for the process holding prefix") {
		t.Fatalf("second engine: %v, want an error saying it waited", err)
	}
	if got := rc.Get(ctx, prefix+"lease").Val(); got != holder {
		t.Fatalf("lease %q after the second engine stopped, want the first's %q", got, holder)
	}

	if err := rc.Set(ctx, prefix+"lease", "another process", 0).Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-first:
		if !errors.Is(err, engine.ErrLeaseLost) || !strings.Contains(log.String(), "level=ERROR msg=\"shutting down: the engine's store failed\"") {
			t.Fatalf("first engine: %v, want ErrLeaseLost, and said; log:\n%s", err, log)
		}
	case <-time.After(time.Minute):
		t.Fatal("the engine still runs a minute after it lost the prefix's lease")
	}
}

// TestSettlementEngineMetrics: with --metrics-listen, `ilpfleet settlement-engine` serves GET
// /metrics with the engine's series (an account's queued amount, once the connector created
// it) and the Go and process metrics, until it stops; without it, it listens for none.
func TestSettlementEngineMetrics(t *testing.T) {
	defer func(w io.Writer) { engineLogOutput = w }(engineLogOutput)
	log := &testlog.Buffer{}
	engineLogOutput = log
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- runSettlementEngine(ctx, []string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
			"--connector-url", "http://127.0.0.1:1"})
	}()
	addr := func(msg string) string {
		m := regexp.MustCompile(`msg="` + msg + `" addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(log.String())
		if m == nil {
			return ""
		}
		return m[1]
	}
	testwait.Eventually(t, "the engine listening", 6000, func() bool { return addr("settlement engine listening") != "" })
	metricsAddr := addr("settlement engine metrics listening")
	if metricsAddr == "" {
		t.Fatalf("no metrics address logged:\n%s", log)
	}
	if st, b := settlementtest.Do(t, "POST", "http://"+addr("settlement engine listening")+"/accounts", "", `{"id":"peer"}`); st != http.StatusCreated {
		t.Fatal(st, b)
	}
	st, body := settlementtest.Do(t, "GET", "http://"+metricsAddr+"/metrics", "", "")
	if st != http.StatusOK {
		t.Fatal(st, body)
	}
	for _, want := range []string{engine.MetricQueued + `{account="peer"} 0`, engine.MetricInProgress + `{account="peer"} 0`,
		"go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", metricsAddr); err == nil {
		_ = c.Close()
		t.Fatal("metrics still served after the engine stopped")
	}
}

// TestSettlementEngineMetricsListen: --metrics-listen is listened on as --listen is, the
// address as given (":9100" every interface, not loopback only); the test binds loopback.
func TestSettlementEngineMetricsListen(t *testing.T) {
	for _, addr := range []string{":9100", "0.0.0.0:9100", "127.0.0.1:9100", "[::]:9100"} {
		t.Run(addr, func(t *testing.T) {
			var asked []string
			defer func(l func(string, string) (net.Listener, error)) { engineListen = l }(engineListen)
			engineListen = func(network, a string) (net.Listener, error) {
				asked = append(asked, network+" "+a)
				return net.Listen("tcp", "127.0.0.1:0")
			}
			f, err := parseEngineFlags([]string{"--metrics-listen", addr}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			_, srv, err := serveEngineMetrics(ctx, f, slog.New(slog.DiscardHandler))
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			if st, body := settlementtest.Do(t, "GET", "http://"+srv.Addr()+"/metrics", "", ""); st != http.StatusOK {
				t.Errorf("GET /metrics: %d %s", st, body)
			}
			cancel()
			if err := srv.Wait(); err != nil {
				t.Errorf("Wait: %v", err)
			}
			if want := "tcp " + addr; !slices.Equal(asked, []string{want}) {
				t.Fatalf("listened on %q, want %q (as --listen)", asked, want)
			}
		})
	}
}

// failingListener is a listener whose Accept fails for good, as a closed socket's.
type failingListener struct{ net.Listener }

func (failingListener) Accept() (net.Conn, error) { return nil, errors.New("accept: socket gone") }

// TestSettlementEngineMetricsServeErrorLogged: /metrics failing to serve is logged when it
// happens, while the engine runs on, not only at exit.
func TestSettlementEngineMetricsServeErrorLogged(t *testing.T) {
	defer func(l func(string, string) (net.Listener, error)) { engineListen = l }(engineListen)
	engineListen = func(string, string) (net.Listener, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		return failingListener{ln}, err
	}
	f, err := parseEngineFlags([]string{"--metrics-listen", "127.0.0.1:0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out testlog.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, srv, err := serveEngineMetrics(ctx, f, slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.ln.Close()
	if err := srv.Wait(); err != nil { // ctx still running: returns once serving failed
		t.Errorf("Wait: %v, want nil (the serve error is logged)", err)
	}
	if log := out.String(); !strings.Contains(log, "serve failed") || !strings.Contains(log, "socket gone") {
		t.Fatalf("the serve error is not logged when it happens:\n%s", log)
	}
}
