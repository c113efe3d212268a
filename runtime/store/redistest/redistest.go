// Package redistest starts a real redis-server for tests, on a random loopback port, stopped
// when the test ends. The binary comes from PATH, or from hack/redis-server.sh, which installs
// Debian's package when missing and root. A test that needs Redis fails — it never skips —
// when no binary can be had.
package redistest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testport"
)

// Binary returns the path of redis-server, or an error saying how to get one.
func Binary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("redis-server not on PATH, and %w", err)
	}
	out, err := exec.Command(filepath.Join(root, "hack", "redis-server.sh")).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("redis-server not on PATH and hack/redis-server.sh failed: %s", msg)
	}
	return strings.TrimSpace(string(out)), nil
}

// moduleRoot is the nearest directory above the working directory that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 32 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("no go.mod above the working directory to find hack/redis-server.sh")
}

// Server is a running redis-server.
type Server struct {
	Addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	stop func()
}

// Kill stops the server at once, as a crash would (the test's cleanup is then a no-op).
func (s *Server) Kill() { s.stop() }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Start runs a redis-server on a free loopback port, without persistence, and stops it when
// t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return startRetrying(t, func(dir string, port int) []string { return serverArgs(dir, port) })
}

// StartReplica runs a redis-server that replicates master, and returns once its link to the
// master is up (the first sync done).
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	s := startRetrying(t, func(dir string, p int) []string {
		return append(serverArgs(dir, p), "--replicaof", host, port)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !strings.Contains(info(s.Addr, "replication"), "master_link_status:up") {
		select {
		case <-ctx.Done():
			t.Fatalf("replica %s: no link to its master %s in 30 s:\n%s", s.Addr, master.Addr, info(s.Addr, "replication"))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return s
}

// StartSentinel runs a Redis Sentinel that monitors master under name, alone (quorum 1), and
// declares it down after 300 ms without an answer, so that a test sees a failover in seconds.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	return startRetrying(t, func(dir string, p int) []string {
		conf := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites its config: a file of its own
		body := fmt.Sprintf("bind 127.0.0.1\nport %d\ndir %s\nsentinel monitor %s %s %s 1\n"+
			"sentinel down-after-milliseconds %s 300\nsentinel failover-timeout %s 2000\n", p, dir, name, host, port, name, name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{conf, "--sentinel", "--loglevel", "warning"}
	})
}

// serverArgs: no persistence; a replica's first sync starts at once (Redis waits 5 s by
// default for more replicas to share it).
func serverArgs(dir string, port int) []string {
	return []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning",
		"--repl-diskless-sync-delay", "0"}
}

// startRetrying starts a redis-server with args(dir, port) on a free port, trying again if
// the port was taken between the probe and the bind.
func startRetrying(t testing.TB, args func(dir string, port int) []string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("this test needs a real Redis: %v", err)
	}
	var lastErr error
	for range 3 {
		s, err := start(t, bin, args)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("cannot start redis-server: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string, args func(dir string, port int) []string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, args(dir, port)...)
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, stop: stop}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return nil, fmt.Errorf("redis-server exited: %s", strings.TrimSpace(string(log)))
		case <-time.After(20 * time.Millisecond):
		}
		if ping(s.Addr) == nil {
			t.Cleanup(stop)
			return s, nil
		}
	}
	stop()
	return nil, fmt.Errorf("redis-server on %s did not answer PING in 10 s", s.Addr)
}

func freePort() (int, error) { return testport.Free() }

// info is INFO section's text, "" when the server does not answer (enough RESP for a test).
func info(addr, section string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("INFO " + section + "\r\n")); err != nil {
		return ""
	}
	buf := make([]byte, 64<<10)
	n, _ := io.ReadAtLeast(c, buf, 1)
	return string(buf[:n])
}

// ping speaks just enough RESP to see the server answer.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "+PONG") {
		return fmt.Errorf("unexpected reply %q", buf[:n])
	}
	return nil
}
