package testport

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestPortsAreDistinctAndClaimed draws ports in this process and in a child process, and
// checks that no port is handed out twice and that a port claimed here is refused elsewhere.
func TestPortsAreDistinctAndClaimed(t *testing.T) {
	if os.Getenv("TESTPORT_CHILD") != "" {
		p, _ := strconv.Atoi(os.Getenv("TESTPORT_CHILD"))
		if _, err := claim(p); err == nil {
			t.Fatalf("port %d claimed by the parent was claimable in the child", p)
		}
		return
	}
	seen := map[int]bool{}
	var last int
	for range 50 {
		p := Get(t)
		if p < low || p >= high {
			t.Fatalf("port %d outside %d-%d", p, low, high)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p], last = true, p
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPortsAreDistinctAndClaimed$")
	cmd.Env = append(os.Environ(), "TESTPORT_CHILD="+strconv.Itoa(last))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestClaimNeedsNoWriteAccess: another user's lock file is readable, not writable, by us; a
// claim must open it read-only (checked on the descriptor, since root would be allowed either
// way).
func TestClaimNeedsNoWriteAccess(t *testing.T) {
	p := Get(t)
	mu.Lock()
	f := claimed[p]
	mu.Unlock()
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	if mode := flags & syscall.O_ACCMODE; mode != syscall.O_RDONLY {
		t.Errorf("lock file of port %d opened with access mode %#o, want read-only", p, mode)
	}
}
