package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testport"
)

func TestConnectorSourceFlags(t *testing.T) {
	tests := []struct {
		args      []string
		namespace string // POD_NAMESPACE
		source    string // resolved --source; "" when an error is expected
		err       string
	}{
		{nil, "", sourceEnv, ""},
		{[]string{"--config=c.yaml"}, "", sourceFile, ""},
		{[]string{"--source=kubernetes", "--connector=alice"}, "ns", sourceKubernetes, ""},
		{[]string{"--source=kubernetes", "--connector=alice"}, "", "", "needs POD_NAMESPACE"},
		{[]string{"--source=kubernetes"}, "ns", "", "needs --connector"},
		{[]string{"--source=kubernetes", "--connector=a", "--config=c.yaml"}, "ns", "", "--config cannot be used"},
		{[]string{"--source=env", "--config=c.yaml"}, "", "", "--config needs --source=file"},
		{[]string{"--source=file"}, "", "", "needs --config"},
		{[]string{"--connector=a"}, "", "", "--connector applies to --source=kubernetes only"},
		{[]string{"--source=etcd"}, "", "", `want env, file or kubernetes`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tt.namespace)
			f, err := parseConnectorFlags(tt.args, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || f.source != tt.source || (tt.source == sourceKubernetes && f.namespace != tt.namespace) {
				t.Fatalf("flags %+v, err %v", f, err)
			}
		})
	}
}

func TestTuneGC(t *testing.T) {
	tests := []struct {
		name    string
		gogc    string // GOGC, when set
		set     bool
		runtime int // the GC percent the runtime started with (from GOGC when set)
		want    int
	}{
		{"GOGC unset: the packet default", "", false, 100, packetGCPercent},
		{"GOGC set by the user: kept", "50", true, 50, 50},
		{"GOGC=off set by the user: kept", "off", true, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOGC", tt.gogc) // and restores it afterwards
			if !tt.set {
				os.Unsetenv("GOGC")
			}
			prev := debug.SetGCPercent(tt.runtime)
			defer debug.SetGCPercent(prev)
			defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // tuneGC may set one from the cgroup
			tuneGC()
			if got := debug.SetGCPercent(prev); got != tt.want {
				t.Errorf("GC percent after tuneGC = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTuneGCMemoryLimit(t *testing.T) {
	cgroup := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("1000000000\n")},
	}
	const before = 123 << 20
	tests := []struct {
		name, env string
		set       bool
		want      int64
	}{
		{"no GOMEMLIMIT: 90 % of the cgroup's limit", "", false, 900000000},
		{"GOMEMLIMIT set by the user: kept", "2GiB", true, before},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tt.env)
			if !tt.set {
				os.Unsetenv("GOMEMLIMIT")
			}
			prev := debug.SetMemoryLimit(before)
			defer debug.SetMemoryLimit(prev)
			tuneGCFrom(cgroup)
			if got := debug.SetMemoryLimit(-1); got != tt.want {
				t.Errorf("memory limit after tuneGC = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestConnectorStopDuringStartUp: a stop asked for (SIGTERM or SIGINT: run's ctx done) while
// the connector still waits for a BTP server that does not answer, within
// CONNECTOR_INITIAL_CONNECT_TIMEOUT, exits 0 and says so; a start-up that really fails (a
// listener whose port is taken) still exits 1 with its error.
func TestConnectorStopDuringStartUp(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	silent := testport.Get(t) // nothing listens there
	client := `{"p": {"relation": "peer", "plugin": "ilp-plugin-btp", "assetCode": "USD", "assetScale": 2,
		"options": {"server": "btp+ws://:s@127.0.0.1:` + strconv.Itoa(silent) + `"}}}`
	listener := `{"p": {"relation": "peer", "plugin": "ilp-plugin-btp", "assetCode": "USD", "assetScale": 2,
		"options": {"listener": {"host": "127.0.0.1", "port": ` + strconv.Itoa(busy.Addr().(*net.TCPAddr).Port) + `, "secret": "s"}}}}`
	tests := []struct {
		name     string
		accounts string
		stop     func(cancel context.CancelFunc) // asks for the stop; nil: none
		want     int
		wantLog  string
		notLog   string
	}{
		{"stop asked before start-up", client, func(cancel context.CancelFunc) { cancel() },
			0, "stopped before start-up finished", "ilpfleet connector:"},
		// Whether the stop comes before or while Start waits for p, the outcome is the same:
		// the delay is no assertion, only a likely way into the wait.
		{"stop asked while connecting", client, func(cancel context.CancelFunc) { time.AfterFunc(100*time.Millisecond, cancel) },
			0, "stopped before start-up finished", "ilpfleet connector:"},
		{"start-up failure", listener, nil,
			1, "ilpfleet connector: connector: starting account p", "stopped before start-up finished"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// connector tunes the GC unless these are set: the test process keeps its own.
			t.Setenv("GOGC", "100")
			t.Setenv("GOMEMLIMIT", "off")
			t.Setenv("CONNECTOR_ILP_ADDRESS", "test.x")
			t.Setenv("CONNECTOR_BACKEND", "one-to-one")
			t.Setenv("CONNECTOR_ACCOUNTS", tt.accounts)
			t.Setenv("CONNECTOR_INITIAL_CONNECT_TIMEOUT", "60000") // longer than the test waits
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.stop != nil {
				tt.stop(cancel)
			}
			var code int
			stderr := captureStderr(t, func() { code = run(ctx, []string{"connector"}) })
			if code != tt.want || !strings.Contains(stderr, tt.wantLog) || strings.Contains(stderr, tt.notLog) {
				t.Errorf("exit status %d, want %d, with %q and without %q; stderr:\n%s", code, tt.want, tt.wantLog, tt.notLog, stderr)
			}
		})
	}
}

// TestStoppedStart: only a Start that gave up because of the stop counts as stopped; a real
// start-up failure that happens to come with the signal still exits 1.
func TestStoppedStart(t *testing.T) {
	live := context.Background()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	portInUse := errors.New("connector: starting account p: btp: listen tcp :7768: bind: address already in use")
	gaveUp := fmt.Errorf("connector: starting account p: %w", context.Canceled)
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"stop asked, Start gave up", stopped, gaveUp, true},
		{"stop asked, Start failed for another reason", stopped, portInUse, false},
		{"no stop, Start failed", live, portInUse, false},
		{"no stop, a context of Start's own cancelled", live, gaveUp, false},
	}
	for _, tt := range tests {
		if got := stoppedStart(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: stoppedStart = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestLogLevelNames: records below INFO — the Kubernetes libraries' logr V(n) are slog level −n —
// are named DEBUG in both formats, not slog's "DEBUG+2".
func TestLogLevelNames(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var b strings.Builder
		log, err := newLogger(&b, format, "debug")
		if err != nil {
			t.Fatal(err)
		}
		log.Log(context.Background(), slog.Level(-2), "v2")
		log.Debug("debug")
		log.Warn("warn")
		out := b.String()
		if strings.Contains(out, "DEBUG+") || strings.Count(out, "DEBUG") != 2 || !strings.Contains(out, "WARN") {
			t.Errorf("%s: level names\n%s", format, out)
		}
	}
}
