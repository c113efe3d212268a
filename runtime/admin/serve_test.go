package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServeAndShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := Serve(ctx, "127.0.0.1", 0, NewHandler(newFake(), prometheus.NewRegistry(), Options{}))
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(srv.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("bound address %q (%v)", srv.Addr(), err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != `{"status":"ok"}` {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}

	cancel()
	select {
	case <-srv.Done():
	case <-time.After(ShutdownTimeout + 5*time.Second): // a bound for a hung shutdown, not a speed check
		t.Fatal("server did not stop after its context was cancelled")
	}
	if err := srv.Wait(); err != nil {
		t.Fatalf("Wait after graceful shutdown: %v", err)
	}
	client.CloseIdleConnections()
	if _, err := client.Get("http://" + srv.Addr() + "/healthz"); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}

func TestServeErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := NewHandler(&fakeBackend{}, prometheus.NewRegistry(), Options{})
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name string
		host string
		port int
	}{
		{"negative port", "127.0.0.1", -1},
		{"port too large", "127.0.0.1", 65536},
		{"port taken", "127.0.0.1", takenPort},
		{"bad host", "not a host", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := Serve(ctx, tt.host, tt.port, h)
			if err == nil {
				t.Fatalf("Serve(%q, %d) bound %s, want an error", tt.host, tt.port, srv.Addr())
			}
		})
	}
}

func TestServeDefaultHost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Serve(ctx, "", 0, NewHandler(&fakeBackend{}, prometheus.NewRegistry(), Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(srv.Addr()); host != DefaultHost {
		t.Errorf("host %q, want %q", host, DefaultHost)
	}
	cancel()
	if err := srv.Wait(); err != nil {
		t.Fatal(err)
	}
}
