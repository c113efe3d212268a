// Package testport hands tests free TCP ports for servers that must be told their port before
// they start (a connector configured with listener ports).
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// Ports are drawn below Linux's default ephemeral range (32768 and up), so that a port the
// kernel gives to an outgoing connection or a ":0" listener never collides with one drawn here.
const (
	low  = 20000
	high = 32000
)

// Test packages run in parallel processes. A port is free when it is drawn, but another
// process could draw it too before the server binds it; so every drawn port is also claimed
// with an flock on a file that the drawing process holds until it exits, and other processes
// skip claimed ports. The kernel drops the locks when a process ends, even on kill -9.
var (
	mu        sync.Mutex
	claimed   = map[int]*os.File{}
	shareOnce sync.Once
	lockDir   = filepath.Join(os.TempDir(), "ilpfleet-testport")
)

// Free returns a port that was free on every interface a moment ago and that no other test
// process of this machine has drawn (the BTP and HTTP listeners of a JS-style configuration
// bind every interface).
func Free() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	if err := os.MkdirAll(lockDir, 0o777); err != nil {
		return 0, fmt.Errorf("testport: %w", err)
	}
	shareOnce.Do(func() {
		// Ports are the machine's, so the claims are shared by its users: the directory is
		// sticky and world-writable like /tmp (the creator's umask narrowed it; only the
		// creator can widen it, so others ignore the error).
		_ = os.Chmod(lockDir, 0o777|os.ModeSticky)
	})
	var err error
	for range 500 {
		port := low + rand.IntN(high-low)
		if claimed[port] != nil {
			continue
		}
		var f *os.File
		if f, err = claim(port); err != nil {
			continue
		}
		var l net.Listener
		if l, err = net.Listen("tcp", ":"+strconv.Itoa(port)); err != nil {
			_ = f.Close()
			continue
		}
		_ = l.Close()
		claimed[port] = f
		return port, nil
	}
	return 0, fmt.Errorf("testport: no free port in %d-%d: %v", low, high-1, err)
}

// claim takes an exclusive lock on the port's file, without waiting. flock needs only a
// read-only descriptor: another user's lock file (0644, theirs) can be claimed too.
func claim(port int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(port)), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// Get is Free for tests: it fails the test when no port is free.
func Get(t testing.TB) int {
	t.Helper()
	port, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
