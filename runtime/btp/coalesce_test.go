package btp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, the client end coalescing.
func tcpPair(t *testing.T) (*coalescingConn, net.Conn) {
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
	return newCoalescingConn(c), s
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
	start := time.Now()
	cc.Close()
	select {
	case err := <-blocked:
		if err == nil {
			t.Fatal("write after Close succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock the writer")
	}
	if d := time.Since(start); d > closeFlushTimeout+3*time.Second {
		t.Fatalf("Close took %v", d)
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
