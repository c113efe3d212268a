package btp

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// unansweredAddr returns a loopback address where TCP connects hang, as they do towards a pod
// that is gone: a listener with a backlog of 0 whose one queued connection is never accepted,
// so that Linux drops every further SYN.
func unansweredAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	filler, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = filler.Close() })
	return addr
}

func TestClientDialGivesUpOnAnUnansweredAddress(t *testing.T) {
	old := dialTimeout
	dialTimeout = 100 * time.Millisecond
	t.Cleanup(func() { dialTimeout = old })

	c := newClient(t, "btp+ws://u:token@"+unansweredAddr(t), func(o *ClientOptions) { o.ResponseTimeout = time.Minute })
	// The caller's bound only stops a hung test: a dial without its own timeout would run into it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.connect(ctx)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connect to an address that never answers: %v, want a dial timeout", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the dial waited for the caller's deadline instead of its own timeout: %v", err)
	}
}
