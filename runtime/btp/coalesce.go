package btp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/btp/internal/ws"
)

// Write coalescing. The WebSocket layer (package ws) hands every frame to the connection in
// its own Write, under its write lock; written straight to the socket, at high concurrency the
// connection would spend most of its CPU in one syscall per small frame. coalescingConn sits
// under that layer: a Write copies the bytes into a pending buffer and returns, and one
// flusher goroutine per burst writes whatever accumulated meanwhile, in one write(2) per
// round. Frames keep their order (one FIFO buffer); a connection that stops reading fills the
// buffer up to maxPending, and then Writes block, so memory stays bounded.
//
// A peer that stops reading for good must not hold those Writes (and the WebSocket write lock
// with them) forever: the flusher's writes have a deadline (armDeadline states the rule), and
// a write that fails or times out closes the socket, which fails every Write and the reader.
// A blocked Write also gives up when the WebSocket layer cancels it (WriteCancel: a Send whose
// packet expires), having taken nothing.
const (
	maxPending        = 1 << 20     // bytes buffered before Write blocks
	keepBuffer        = 64 << 10    // larger buffers are dropped after a burst, not kept per connection
	closeFlushTimeout = time.Second // how long Close lets pending bytes drain
)

type coalescingConn struct {
	net.Conn
	// writeTimeout bounds a socket write that makes no progress: the link's ping interval,
	// the time in which a live peer answers a ping, so a peer that takes none of our bytes
	// for that long is as dead as one that misses a pong. 0: no deadline.
	writeTimeout time.Duration

	mu       sync.Mutex
	wake     chan struct{} // closed when a flush round ends or the connection closes; made by a waiter
	buf      []byte        // bytes waiting for the flusher
	spare    []byte        // the flusher's previous buffer, reused
	flushing bool          // a flusher goroutine is running
	closed   bool
	err      error     // first write error: every later Write returns it
	rearmAt  time.Time // when the flusher next moves the socket's write deadline on
}

var _ ws.CancelWriter = (*coalescingConn)(nil)

func newCoalescingConn(c net.Conn, writeTimeout time.Duration) *coalescingConn {
	return &coalescingConn{Conn: c, writeTimeout: writeTimeout}
}

// Write queues p and returns at once, unless maxPending bytes are already waiting. A write
// error of the flusher is returned by the next Write (the connection is dead either way; its
// reader sees the failure too).
func (c *coalescingConn) Write(p []byte) (int, error) { return c.WriteCancel(p, nil) }

// WriteCancel is Write that gives up waiting for buffer space when cancel is closed: it then
// returns ws.ErrWriteCanceled and has queued nothing.
func (c *coalescingConn) WriteCancel(p []byte, cancel <-chan struct{}) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.buf) >= maxPending {
		if !c.wait(cancel) {
			return 0, ws.ErrWriteCanceled
		}
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

// wait releases c.mu until the next flush round ends or the connection closes (true), or
// cancel is closed (false), and takes it again.
func (c *coalescingConn) wait(cancel <-chan struct{}) bool {
	if c.wake == nil {
		c.wake = make(chan struct{})
	}
	wake := c.wake
	c.mu.Unlock()
	defer c.mu.Lock()
	select {
	case <-wake:
		return true
	case <-cancel:
		return false
	}
}

// broadcast wakes every waiter; c.mu is held.
func (c *coalescingConn) broadcast() {
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
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
		c.armDeadline(false)
		c.mu.Unlock()
		err := c.writeOut(b)
		c.mu.Lock()
		if cap(b) <= keepBuffer {
			c.spare = b[:0]
		} else {
			c.spare = nil
		}
		if err != nil {
			c.err = err
			// The peer stopped reading or the socket broke, maybe in the middle of a frame:
			// close it, so that the reader and every writer see the failure now.
			_ = c.Conn.Close()
		}
		c.broadcast()
	}
	if cap(c.buf) > keepBuffer {
		c.buf = nil
	}
	c.flushing = false
	c.broadcast()
	c.mu.Unlock()
}

// armDeadline moves the socket's write deadline writeTimeout ahead; c.mu is held. Unless
// forced, it does so only once half of the previous one has passed, so that a busy connection
// pays for it once per writeTimeout/2, not per round. The rule this makes, which the rest of
// the package refers to: a socket write without progress fails after writeTimeout/2 at least
// and writeTimeout at most (one with some progress goes on: writeOut). Once Close set its own
// deadline, it is left alone.
func (c *coalescingConn) armDeadline(force bool) {
	if c.writeTimeout <= 0 || c.closed {
		return
	}
	now := time.Now()
	if !force && now.Before(c.rearmAt) {
		return
	}
	_ = c.Conn.SetWriteDeadline(now.Add(c.writeTimeout))
	c.rearmAt = now.Add(c.writeTimeout / 2)
}

// writeOut writes b to the socket. A write that times out after some progress (a peer that
// reads, slowly) goes on with a new deadline; one without progress fails.
func (c *coalescingConn) writeOut(b []byte) error {
	for { // each iteration but the last writes at least one byte of b: bounded by len(b)
		n, err := c.Conn.Write(b)
		if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		b = b[n:]
		c.mu.Lock()
		closing := c.closed
		c.armDeadline(true)
		c.mu.Unlock()
		if closing { // Close's deadline is the last one
			return err
		}
	}
}

// Close lets the pending bytes drain (at most closeFlushTimeout) and closes the connection.
// Waiting Writes return at once.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.broadcast()
	if c.flushing {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
		for c.flushing {
			c.wait(nil)
		}
	}
	failed := c.err != nil // the flusher closed the socket already
	c.mu.Unlock()
	if failed {
		return nil
	}
	return c.Conn.Close()
}

// coalescingListener wraps every accepted connection.
type coalescingListener struct {
	net.Listener
	writeTimeout time.Duration
}

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	return newCoalescingConn(c, l.writeTimeout), nil
}

// dialTimeout bounds a TCP connect of a Client. A peer that is up answers within a round trip;
// a connect that takes longer goes to an address nobody answers any more (in Kubernetes, a pod
// that is gone while its Service still points at it), and a new attempt, which resolves the name
// again, beats waiting out the whole response timeout (35 s) on it.
var dialTimeout = 5 * time.Second

// newCoalescingHTTPClient dials plain WebSocket connections whose writes coalesce, with the
// given write timeout, and TLS as tlsConfig says (nil: the system roots) for wss://; a Client
// uses one of its own when ClientOptions.HTTPClient is nil. (A caller's own HTTPClient is used
// as it is.) Keep-alives are off: every handshake dials its own connection, which a dial
// context made by withDialed then names.
func newCoalescingHTTPClient(writeTimeout time.Duration, tlsConfig *tls.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	if tlsConfig != nil {
		t.TLSClientConfig = tlsConfig.Clone()
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second} // KeepAlive as http.DefaultTransport's
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return c, err
		}
		cc := newCoalescingConn(c, writeTimeout)
		if slot, ok := ctx.Value(dialedKey{}).(*dialed); ok {
			slot.conn = cc
		}
		return cc, nil
	}
	return &http.Client{Transport: t}
}

// dialed receives the connection a coalescing HTTP client dials for a request whose context
// withDialed made: net/http hands the WebSocket over as the 101 response's body, which writes
// to that connection but cannot be cancelled (ws.CancelWriter).
type dialed struct{ conn *coalescingConn }

type dialedKey struct{}

// withDialed is ctx with a slot for the connection dialed under it.
func withDialed(ctx context.Context) (context.Context, *dialed) {
	d := &dialed{}
	return context.WithValue(ctx, dialedKey{}, d), d
}
