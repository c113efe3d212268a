package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/internal/testport"
)

// logBuffer collects a process's output for the failure report; safe for concurrent writes.
type logBuffer struct{ testlog.Buffer }

// tail is the last n lines of the log.
func (l *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// proc is a child process of a test, in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// startProc starts a process whose stdout and stderr go to its log, and registers its stop
// (SIGTERM to the group, SIGKILL after 5 s) and, if the test failed, the printing of its log.
// lines, when not nil, also receives every stdout line; it is closed when stdout ends.
func startProc(t *testing.T, name string, env []string, lines chan<- string, argv ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: &logBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.SysProcAttr = sysProcAttr()
	p.cmd.Stderr = p.log
	var stdout io.ReadCloser
	if lines == nil {
		p.cmd.Stdout = p.log
	} else {
		var err error
		if stdout, err = p.cmd.StdoutPipe(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A pipe that stays open for the process's life: peers that watch stdin exit when it
	// closes, even if this test binary is killed before its cleanups run.
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s (%s): %v", name, argv[0], err)
	}
	var readers sync.WaitGroup
	if lines != nil {
		readers.Add(1)
		go func() {
			defer readers.Done()
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64*1024), 1<<20)
			for sc.Scan() {
				fmt.Fprintf(p.log, "%s\n", sc.Text())
				lines <- sc.Text()
			}
		}()
	}
	go func() {
		readers.Wait() // Wait closes the stdout pipe: read it to the end first
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("=== log of %s (%s) ===\n%s\n=== end of log of %s ===", name, strings.Join(argv, " "), p.log.tail(150), name)
		}
	})
	t.Cleanup(func() {
		stdin.Close()
		p.stop()
	})
	return p
}

// stop ends the process group: SIGTERM, then SIGKILL if it has not exited within 5 s.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// childEnv is this process's environment without CONNECTOR_* and DEBUG variables (so that a
// developer's shell cannot change a test's connectors), plus extra.
func childEnv(extra map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CONNECTOR_") || strings.HasPrefix(kv, "DEBUG=") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	return out
}

func freePort(t *testing.T) int { return testport.Get(t) }

// waitPort waits until something accepts TCP connections on 127.0.0.1:port, the process
// exits, or the timeout passes.
func waitPort(p *proc, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited (%v) before listening on %s", p.name, err, addr)
		}
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on %s after %v: %v", p.name, addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

// getJSON GETs http://127.0.0.1:port/path into v.
func getJSON(ctx context.Context, port int, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %v in %s", path, err, body)
	}
	return nil
}

// waitConnected polls the admin API's GET /status until every listed account is connected.
func waitConnected(p *proc, adminPort int, accounts []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		var st struct {
			Connected map[string]bool `json:"connected"`
		}
		err := getJSON(ctx, adminPort, "/status", &st)
		if err == nil {
			missing := []string{}
			for _, a := range accounts {
				if !st.Connected[a] {
					missing = append(missing, a)
				}
			}
			if len(missing) == 0 {
				return nil
			}
			last = fmt.Sprintf("accounts not connected: %v (status: %v)", missing, st.Connected)
		} else {
			last = err.Error()
		}
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited (%v)", p.name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s after %v", p.name, last, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errNoAdmin says the admin API never answered.
var errNoAdmin = errors.New("admin API not answering")

// balances reads GET /balance: account id → balance (a decimal string).
func balances(adminPort int) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var b struct {
		Accounts map[string]struct {
			Balance string `json:"balance"`
		} `json:"accounts"`
	}
	if err := getJSON(ctx, adminPort, "/balance", &b); err != nil {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: %v", errNoAdmin, err)
		}
		return nil, err
	}
	out := make(map[string]string, len(b.Accounts))
	for id, a := range b.Accounts {
		out[id] = a.Balance
	}
	return out, nil
}
