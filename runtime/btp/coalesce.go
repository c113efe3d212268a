package btp

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"
)

// Write coalescing. The WebSocket layer (package ws) hands every frame to the connection in
// its own Write, under its write lock; written straight to the socket, at high concurrency the
// connection would spend most of its CPU in one syscall per small frame. coalescingConn sits
// under that layer: a Write copies the
// bytes into a pending buffer and returns, and one flusher goroutine per burst writes whatever
// accumulated meanwhile, in one write(2) per round. Frames keep their order (one FIFO
// buffer); a connection that stops reading fills the buffer up to maxPending, and then Writes
// block as they did before, so memory stays bounded and the pinger still catches a dead peer.
const (
	maxPending        = 1 << 20     // bytes buffered before Write blocks
	keepBuffer        = 64 << 10    // larger buffers are dropped after a burst, not kept per connection
	closeFlushTimeout = time.Second // how long Close lets pending bytes drain
)

type coalescingConn struct {
	net.Conn

	mu       sync.Mutex
	cond     sync.Cond // signalled when a flush round ends
	buf      []byte    // bytes waiting for the flusher
	spare    []byte    // the flusher's previous buffer, reused
	flushing bool      // a flusher goroutine is running
	closed   bool
	err      error // first write error: every later Write returns it
}

func newCoalescingConn(c net.Conn) *coalescingConn {
	cc := &coalescingConn{Conn: c}
	cc.cond.L = &cc.mu
	return cc
}

// Write queues p and returns at once, unless maxPending bytes are already waiting. A write
// error of the flusher is returned by the next Write (the connection is dead either way; its
// reader sees the failure too).
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.buf) >= maxPending {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.buf = append(c.buf, p...)
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
	return len(p), nil
}

// flush writes the pending bytes until none are left, swapping buffers so that Writes can
// append while the previous batch is in the kernel.
func (c *coalescingConn) flush() {
	// Yield first: the writers that are runnable now (other requests finishing on this
	// connection) append their frames before the first write(2), which makes the batches
	// 10–20 frames at 100 packets in flight instead of one or two. When nothing else is
	// runnable the yield returns at once.
	runtime.Gosched()
	c.mu.Lock()
	for len(c.buf) > 0 && c.err == nil {
		b := c.buf
		c.buf = c.spare[:0]
		c.mu.Unlock()
		_, err := c.Conn.Write(b)
		c.mu.Lock()
		if cap(b) <= keepBuffer {
			c.spare = b[:0]
		} else {
			c.spare = nil
		}
		if err != nil {
			c.err = err
		}
		c.cond.Broadcast()
	}
	if cap(c.buf) > keepBuffer {
		c.buf = nil
	}
	c.flushing = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Close lets the pending bytes drain (at most closeFlushTimeout) and closes the connection.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.flushing {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		for c.flushing {
			c.cond.Wait()
		}
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}

// coalescingListener wraps every accepted connection.
type coalescingListener struct{ net.Listener }

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	return newCoalescingConn(c), nil
}

// dialTimeout bounds a TCP connect of a Client. A peer that is up answers within a round trip;
// a connect that takes longer goes to an address nobody answers any more (in Kubernetes, a pod
// that is gone while its Service still points at it), and a new attempt, which resolves the name
// again, beats waiting out the whole response timeout (35 s) on it.
var dialTimeout = 5 * time.Second

// coalescingHTTPClient dials plain WebSocket connections whose writes coalesce; it is what a
// Client uses when ClientOptions.HTTPClient is nil. (A caller's own HTTPClient is used as it is.)
var coalescingHTTPClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second} // KeepAlive as http.DefaultTransport's
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return c, err
		}
		return newCoalescingConn(c), nil
	}
	return &http.Client{Transport: t}
}()
