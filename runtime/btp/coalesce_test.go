package btp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/btp/internal/ws"
)

// tcpPair returns both ends of a loopback TCP connection, the client end coalescing with no
// write timeout.
func tcpPair(t *testing.T) (*coalescingConn, net.Conn) {
	t.Helper()
	return tcpPairTimeout(t, 0)
}

func tcpPairTimeout(t *testing.T, writeTimeout time.Duration) (*coalescingConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return newCoalescingConn(c, writeTimeout), s
}

// TestCoalescingKeepsEveryWriteInOrder: concurrent writers, each write arrives whole and each
// writer's writes in order (the WebSocket library serialises its writers the same way).
func TestCoalescingKeepsEveryWriteInOrder(t *testing.T) {
	for _, tc := range []struct{ writers, each, size int }{{1, 1000, 10}, {8, 500, 100}, {4, 50, 40000}} {
		t.Run(fmt.Sprintf("%dx%dx%dB", tc.writers, tc.each, tc.size), func(t *testing.T) {
			cc, peer := tcpPair(t)
			var mu sync.Mutex // one write at a time, as under the library's lock
			var wg sync.WaitGroup
			for w := range tc.writers {
				wg.Go(func() {
					for i := range tc.each {
						rec := bytes.Repeat([]byte{byte(w)}, tc.size)
						rec[0], rec[1] = byte(i>>8), byte(i)
						mu.Lock()
						_, err := cc.Write(rec)
						mu.Unlock()
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			next := make([]int, tc.writers)
			buf := make([]byte, tc.size)
			for range tc.writers * tc.each {
				if _, err := io.ReadFull(peer, buf); err != nil {
					t.Fatal(err)
				}
				w := int(buf[tc.size-1])
				if i := int(buf[0])<<8 | int(buf[1]); w >= tc.writers || i != next[w]%65536 {
					t.Fatalf("writer %d: record %d, want %d", w, i, next[w])
				}
				next[w]++
			}
			wg.Wait()
		})
	}
}

// TestCoalescingBoundsMemory: a peer that does not read makes Write block once maxPending
// bytes wait, and Close unblocks it.
func TestCoalescingBoundsMemory(t *testing.T) {
	cc, _ := tcpPair(t) // the peer never reads
	chunk := make([]byte, 64<<10)
	blocked := make(chan error, 1)
	go func() {
		for i := 0; i < 10000; i++ { // far more than the socket buffers and maxPending hold
			if _, err := cc.Write(chunk); err != nil {
				blocked <- err
				return
			}
		}
		blocked <- nil
	}()
	time.Sleep(200 * time.Millisecond)
	cc.mu.Lock()
	pending := len(cc.buf)
	cc.mu.Unlock()
	if pending > maxPending+len(chunk) {
		t.Fatalf("%d bytes pending, bound is %d", pending, maxPending+len(chunk))
	}
	select {
	case err := <-blocked:
		t.Fatalf("writes did not block on a peer that does not read (err %v)", err)
	default:
	}
	closed := make(chan struct{})
	go func() { cc.Close(); close(closed) }()
	select {
	case err := <-blocked:
		if err == nil {
			t.Fatal("write after Close succeeded")
		}
	case <-time.After(closeFlushTimeout + 5*time.Second): // failure bound only
		t.Fatal("Close did not unblock the writer")
	}
	select {
	case <-closed:
	case <-time.After(closeFlushTimeout + 5*time.Second): // failure bound only
		t.Fatal("Close did not return on a peer that does not read")
	}
}

// TestCoalescingCloseDrains: bytes accepted by Write reach the peer even when Close follows at
// once, and a write error is reported by later Writes.
func TestCoalescingCloseDrains(t *testing.T) {
	cc, peer := tcpPair(t)
	msg := bytes.Repeat([]byte("x"), 100000)
	if _, err := cc.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(peer); got <- b }()
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, msg) {
		t.Fatalf("peer got %d bytes, want %d", len(b), len(msg))
	}
	if _, err := cc.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestCoalescingWriteTimeoutClosesSocket: a peer that takes none of our bytes for the write
// timeout fails the connection by itself (no Close, no pinger): the blocked Write and every
// later one return the error, and the socket is closed, so its reader ends too.
func TestCoalescingWriteTimeoutClosesSocket(t *testing.T) {
	cc, peer := tcpPairTimeout(t, 100*time.Millisecond)
	blocked := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for range 10000 { // far more than the socket buffers and maxPending hold
			if _, err := cc.Write(chunk); err != nil {
				blocked <- err
				return
			}
		}
		blocked <- nil
	}()
	select {
	case err := <-blocked:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked Write = %v, want the write deadline's error", err)
		}
	case <-time.After(20 * time.Second): // failure bound only
		t.Fatal("a Write blocked on a peer that reads nothing never failed")
	}
	if _, err := cc.Write([]byte("x")); err == nil {
		t.Error("Write after the write timeout succeeded")
	}
	if _, err := cc.Conn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("own Read after the write timeout = %v, want net.ErrClosed (socket closed)", err)
	}
	_ = peer
	if err := cc.Close(); err != nil {
		t.Errorf("Close after the write timeout = %v", err)
	}
}

// stuckConn is a socket whose writes block until a write deadline is set (Close sets one).
type stuckConn struct {
	net.Conn // nil: only what coalescingConn uses is implemented
	once     sync.Once
	unstuck  chan struct{}
}

func (s *stuckConn) Write([]byte) (int, error) { <-s.unstuck; return 0, os.ErrDeadlineExceeded }
func (s *stuckConn) SetWriteDeadline(time.Time) error {
	s.once.Do(func() { close(s.unstuck) })
	return nil
}
func (s *stuckConn) Close() error { return nil }

// TestCoalescingWriteCancel: a Write waiting for buffer space gives up when cancelled, having
// queued nothing, and leaves the connection as it was.
func TestCoalescingWriteCancel(t *testing.T) {
	cc := newCoalescingConn(&stuckConn{unstuck: make(chan struct{})}, 0)
	chunk := make([]byte, 64<<10)
	if _, err := cc.Write(chunk); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, "the flusher stuck with the first chunk", 4000, func() bool {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		return len(cc.buf) == 0
	})
	for range maxPending / len(chunk) { // fill the buffer exactly: the next Write waits
		if _, err := cc.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	cc.mu.Lock()
	before := len(cc.buf)
	cc.mu.Unlock()
	if before < maxPending {
		t.Fatalf("%d bytes pending; the test wants a full buffer", before)
	}
	cancel := make(chan struct{})
	close(cancel)
	if n, err := cc.WriteCancel([]byte("late"), cancel); n != 0 || !errors.Is(err, ws.ErrWriteCanceled) {
		t.Fatalf("WriteCancel = %d, %v; want 0, ws.ErrWriteCanceled", n, err)
	}
	cc.mu.Lock()
	after, err := len(cc.buf), cc.err
	cc.mu.Unlock()
	if after != before || err != nil {
		t.Errorf("after a cancelled write: %d bytes pending (were %d), error %v", after, before, err)
	}
	_ = cc.Close()
	if _, err := cc.Write(chunk); err == nil {
		t.Error("Write after Close succeeded")
	}
}
