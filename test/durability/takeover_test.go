package durability

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/store"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// TestRedisTakeoverStopsTheRuntime: a second process started under a runtime's instance name
// (two pods given one name) takes the instance over; the runtime stops with exit status 1 and
// says why, instead of writing balances whose packets in flight were reverted; restarted under
// the name, after the other process is gone, it serves again.
func TestRedisTakeoverStopsTheRuntime(t *testing.T) {
	srv := redistest.Start(t)
	cfg := fmt.Sprintf(`{"url":%q,"instance":"taken","prefix":"takeover:"}`, srv.URL())
	rt := newRuntime(t, map[string]string{"CONNECTOR_STORE": "redis", "CONNECTOR_STORE_CONFIG": cfg})
	rt.start(t)
	ctx := context.Background()
	other, err := store.OpenRedis(ctx, store.RedisOptions{URL: srv.URL(), Instance: "taken", Prefix: "takeover:"})
	if err != nil {
		t.Fatal(err)
	}
	// The runtime learns it at its next heartbeat, a sixth of the 30 s lease.
	select {
	case <-rt.exited:
	case <-time.After(20 * time.Second):
		_ = rt.cmd.Process.Signal(syscall.SIGQUIT) // its goroutines, into the log shown below
		<-rt.exited
		rt.cmd = nil
		t.Fatal("the runtime still ran 20 s after its instance was taken over")
	}
	if code := rt.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	log, _ := os.ReadFile(rt.logPath)
	if !strings.Contains(string(log), "instance was taken over") {
		t.Errorf("the log does not say why it stopped:\n%s", tail(log, 2048))
	}
	rt.cmd = nil
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	rt.start(t)
	rt.stop(t)
}
