package ws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testwait"
)

// rawFrame encodes one frame as a peer would, with any header bits: for the reader's tests.
func rawFrame(first byte, payload []byte, key *[4]byte) []byte {
	b := []byte{first}
	m := byte(0)
	if key != nil {
		m = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if key == nil {
		return append(b, payload...)
	}
	b = append(b, key[:]...)
	for i, c := range payload { // byte by byte: an implementation independent of mask()
		b = append(b, c^key[i%4])
	}
	return b
}

var testKey = &[4]byte{0x37, 0xfa, 0x21, 0x3d}

// pipeConn is an in-memory connection: the test writes what the Conn reads, and collects
// what the Conn writes.
type pipeConn struct {
	io.Reader
	mu  sync.Mutex
	out bytes.Buffer
}

func (p *pipeConn) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}
func (p *pipeConn) Close() error { return nil }

func (p *pipeConn) written() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.out.Bytes()...)
}

// reading returns a server-side (client=false) or client-side Conn that reads in.
func reading(in []byte, client bool) (*Conn, *pipeConn) {
	pc := &pipeConn{Reader: bytes.NewReader(in)}
	return newConn(pc, bufio.NewReader(pc), client), pc
}

func TestMask(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 125, 1000} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		got := append([]byte(nil), p...)
		mask(*testKey, got)
		want := rawFrame(0, p, testKey)[len(rawFrame(0, p, testKey))-n:]
		if !bytes.Equal(got, want) {
			t.Errorf("mask of %d bytes = %x, want %x", n, got, want)
		}
		mask(*testKey, got)
		if !bytes.Equal(got, p) {
			t.Errorf("mask twice of %d bytes is not the identity", n)
		}
	}
}

// TestFrameLengths round-trips every length encoding through the writer and the reader, both
// directions (client frames are masked, server frames are not).
func TestFrameLengths(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 100000} {
		for _, client := range []bool{true, false} {
			p := bytes.Repeat([]byte{0xa5, 0x5a, 0x01}, n/3+1)[:n]
			frame := appendFrame(nil, opBinary, p, client)
			wantHdr := 2
			switch {
			case n > 65535:
				wantHdr += 8
			case n > 125:
				wantHdr += 2
			}
			if client {
				wantHdr += 4
			}
			if len(frame) != wantHdr+n {
				t.Errorf("n=%d client=%v: frame of %d bytes, want %d", n, client, len(frame), wantHdr+n)
			}
			c, _ := reading(frame, !client) // the other side reads it
			c.SetReadLimit(1 << 20)
			typ, got, err := c.Read(nil)
			if err != nil || typ != Binary || !bytes.Equal(got, p) {
				t.Errorf("n=%d client=%v: read %d bytes type %d, %v", n, client, len(got), typ, err)
			}
		}
	}
}

func TestReadMessages(t *testing.T) {
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	k := testKey
	tests := []struct {
		name    string
		in      []byte
		typ     MessageType
		want    string
		wantOut []byte // exactly what the reader must have written (pongs, closes)
	}{
		{"binary", rawFrame(0x82, []byte("hello"), k), Binary, "hello", nil},
		{"text", rawFrame(0x81, []byte("héllo"), k), Text, "héllo", nil},
		{"empty", rawFrame(0x82, nil, k), Binary, "", nil},
		{"fragmented", cat(rawFrame(0x02, []byte("he"), k), rawFrame(0x00, []byte("ll"), k), rawFrame(0x80, []byte("o"), k)), Binary, "hello", nil},
		{"ping between fragments is answered", cat(rawFrame(0x01, []byte("a"), k), rawFrame(0x89, []byte("p1"), k), rawFrame(0x80, []byte("b"), k)),
			Text, "ab", appendFrame(nil, opPong, []byte("p1"), false)},
		{"pong between messages is absorbed", cat(rawFrame(0x8a, []byte("x"), k), rawFrame(0x82, []byte("m"), k)), Binary, "m", nil},
		{"text split inside a character", cat(rawFrame(0x01, []byte("h\xc3"), k), rawFrame(0x80, []byte("\xa9"), k)), Text, "hé", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, pc := reading(tt.in, false)
			typ, got, err := c.Read(make([]byte, 0, 2)) // a small buffer must grow
			if err != nil || typ != tt.typ || string(got) != tt.want {
				t.Fatalf("Read = %d %q %v; want %d %q", typ, got, err, tt.typ, tt.want)
			}
			if out := pc.written(); !bytes.Equal(out, tt.wantOut) {
				t.Errorf("wrote %x, want %x", out, tt.wantOut)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	k := testKey
	closeFrame := func(code StatusCode, reason string) []byte {
		return rawFrame(0x88, append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...), k)
	}
	tests := []struct {
		name      string
		in        []byte
		client    bool       // the reading side is a client
		wantClose StatusCode // status of the close frame the reader sends; 0: none
		check     func(error) bool
	}{
		{"unmasked client frame", rawFrame(0x82, []byte("x"), nil), false, StatusProtocolError, isProtocol},
		{"masked server frame", rawFrame(0x82, []byte("x"), k), true, StatusProtocolError, isProtocol},
		{"rsv1", rawFrame(0xc2, []byte("x"), k), false, StatusProtocolError, isProtocol},
		{"rsv3", rawFrame(0x92, []byte("x"), k), false, StatusProtocolError, isProtocol},
		{"opcode 3", rawFrame(0x83, []byte("x"), k), false, StatusProtocolError, isProtocol},
		{"opcode 11", rawFrame(0x8b, nil, k), false, StatusProtocolError, isProtocol},
		{"continuation first", rawFrame(0x80, []byte("x"), k), false, StatusProtocolError, isProtocol},
		{"new message inside a fragmented one", append(rawFrame(0x02, []byte("x"), k), rawFrame(0x82, []byte("y"), k)...), false, StatusProtocolError, isProtocol},
		{"fragmented ping", rawFrame(0x09, nil, k), false, StatusProtocolError, isProtocol},
		{"ping of 126 bytes", rawFrame(0x89, make([]byte, 126), k), false, StatusProtocolError, isProtocol},
		{"64-bit length with the top bit", append([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, k[:]...), false, StatusProtocolError, isProtocol},
		{"oversize", rawFrame(0x82, make([]byte, 101), k), false, StatusMessageTooBig, isTooBig},
		{"oversize across fragments", append(rawFrame(0x02, make([]byte, 60), k), rawFrame(0x80, make([]byte, 41), k)...), false, StatusMessageTooBig, isTooBig},
		{"text not utf-8", rawFrame(0x81, []byte{0xff, 0xfe}, k), false, StatusInvalidPayload, isProtocol},
		{"close 1000 is echoed", closeFrame(1000, "bye"), false, StatusNormalClosure, func(err error) bool { return CloseStatus(err) == 1000 }},
		{"close 4001 is echoed", closeFrame(4001, ""), false, 4001, func(err error) bool { return CloseStatus(err) == 4001 }},
		{"close without code", rawFrame(0x88, nil, k), false, 0, func(err error) bool { return CloseStatus(err) == StatusNoStatusRcvd }},
		{"close with 1 byte", rawFrame(0x88, []byte{3}, k), false, StatusProtocolError, isProtocol},
		{"close with code 1005", closeFrame(1005, ""), false, StatusProtocolError, isProtocol},
		{"close with code 999", closeFrame(999, ""), false, StatusProtocolError, isProtocol},
		{"truncated payload", rawFrame(0x82, []byte("abc"), k)[:8], false, 0, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"end of stream", nil, false, 0, func(err error) bool { return err == io.EOF }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, pc := reading(tt.in, tt.client)
			c.SetReadLimit(100)
			_, _, err := c.Read(nil)
			if err == nil || !tt.check(err) {
				t.Fatalf("Read error = %v", err)
			}
			if _, _, again := c.Read(nil); again != err {
				t.Errorf("second Read = %v, want the same error", again)
			}
			if got := sentClose(t, pc.written(), tt.client); got != tt.wantClose {
				t.Errorf("sent close status %d, want %d", got, tt.wantClose)
			}
		})
	}
}

func isProtocol(err error) bool { var pe *ProtocolError; return errors.As(err, &pe) }
func isTooBig(err error) bool   { return errors.Is(err, ErrMessageTooBig) }

// sentClose returns the status of the one close frame in out (written by a server, unmasked,
// or a client, masked), 0 for none or an empty one.
func sentClose(t *testing.T, out []byte, client bool) StatusCode {
	t.Helper()
	if len(out) == 0 {
		return 0
	}
	r, _ := reading(out, !client)
	_, _, err := r.Read(nil)
	if ce := (*CloseError)(nil); errors.As(err, &ce) {
		if ce.Code == StatusNoStatusRcvd {
			return 0
		}
		return ce.Code
	}
	t.Fatalf("wrote %x, not a close frame: %v", out, err)
	return 0
}

func TestWriteAfterClose(t *testing.T) {
	c, pc := reading(nil, true)
	if err := c.Write(Binary, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := c.writeClose(StatusGoingAway, strings.Repeat("é", 100)); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(Binary, []byte("b")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after the close frame = %v, want ErrClosed", err)
	}
	r, _ := reading(pc.written(), false)
	if _, m, err := r.Read(nil); err != nil || string(m) != "a" {
		t.Fatalf("first message %q %v", m, err)
	}
	_, _, err := r.Read(nil)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != StatusGoingAway || len(ce.Reason) > 123 {
		t.Errorf("close = %v; want 1001 with a reason cut to 123 bytes", err)
	}
}

// TestOverHTTP runs the handshakes and the close handshake over a real loopback connection.
func TestOverHTTP(t *testing.T) {
	srvErr := make(chan error, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, AcceptOptions{OriginPatterns: []string{"*.example.com"}})
		if err != nil {
			return
		}
		srvErr <- echo(c)
	}))
	srv.Listener = listen127(t)
	srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, "ws://"+srv.Listener.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the handshake's context must not bound the connection
	c.SetReadLimit(1 << 20)
	go func() {
		var buf []byte
		for { // the client's reader: ends with the close handshake
			var err error
			if _, buf, err = c.Read(buf); err != nil {
				return
			}
			if string(buf) == "stop" {
				return
			}
		}
	}()
	for _, m := range []string{"one", strings.Repeat("x", 70000)} {
		if err := c.Write(Binary, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer pcancel()
	if err := c.Ping(pctx); err != nil {
		t.Errorf("ping: %v", err)
	}
	if err := c.Close(StatusNormalClosure, "done"); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := <-srvErr; CloseStatus(err) != StatusNormalClosure {
		t.Errorf("server's read ended with %v, want the close status 1000", err)
	}
}

// echo reads messages and sends them back until the connection ends.
func echo(c *Conn) error {
	c.SetReadLimit(1 << 20)
	var buf []byte
	for {
		typ, m, err := c.Read(buf)
		if err != nil {
			_ = c.CloseNow()
			return err
		}
		buf = m
		if err := c.Write(typ, m); err != nil {
			return err
		}
	}
}

func listen127(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestAcceptRefuses(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := Accept(w, r, AcceptOptions{OriginPatterns: []string{"*.example.com"}}); err == nil {
			_ = c.CloseNow()
		}
	})
	good := func(r *http.Request) {
		r.Header.Set("Connection", "keep-alive, Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	}
	tests := []struct {
		name   string
		method string
		edit   func(r *http.Request)
		status int
	}{
		{"good", "GET", func(*http.Request) {}, http.StatusSwitchingProtocols},
		{"allowed origin", "GET", func(r *http.Request) { r.Header.Set("Origin", "https://a.example.com") }, http.StatusSwitchingProtocols},
		// DNS rebinding: the attacker's name in both Host and Origin, pointed at this server.
		{"same-host origin not in the patterns", "GET", func(r *http.Request) { r.Header.Set("Origin", "http://"+r.Host) }, http.StatusForbidden},
		{"foreign origin", "GET", func(r *http.Request) { r.Header.Set("Origin", "https://evil.test") }, http.StatusForbidden},
		{"POST", "POST", func(*http.Request) {}, http.StatusMethodNotAllowed},
		{"no upgrade", "GET", func(r *http.Request) { r.Header.Del("Upgrade") }, http.StatusUpgradeRequired},
		{"version 8", "GET", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, http.StatusUpgradeRequired},
		{"short key", "GET", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "YWJj") }, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://127.0.0.1:9/", nil)
			good(r)
			tt.edit(r)
			w := &hijackRecorder{ResponseRecorder: httptest.NewRecorder()}
			h.ServeHTTP(w, r)
			status := w.Code
			if w.hijacked != nil {
				status = http.StatusSwitchingProtocols
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(w.hijacked.out.Bytes())), r)
				if err != nil || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
					t.Errorf("101 answer %v, %v; want the RFC 6455 §1.3 accept key", resp, err)
				}
			}
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
		})
	}
}

// hijackRecorder is a ResponseRecorder that can be hijacked, recording what is written.
type hijackRecorder struct {
	*httptest.ResponseRecorder
	hijacked *fakeNetConn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h.hijacked = &fakeNetConn{}
	return h.hijacked, bufio.NewReadWriter(bufio.NewReader(strings.NewReader("")), bufio.NewWriter(h.hijacked)), nil
}

type fakeNetConn struct {
	net.Conn // nil: only what Accept and Close use is implemented
	out      bytes.Buffer
}

func (f *fakeNetConn) Write(b []byte) (int, error)      { return f.out.Write(b) }
func (f *fakeNetConn) Close() error                     { return nil }
func (f *fakeNetConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeNetConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (f *fakeNetConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeNetConn) SetWriteDeadline(time.Time) error { return nil }

func TestDialRefusesBadAnswers(t *testing.T) {
	tests := []struct {
		name   string
		answer func(w http.ResponseWriter, key string)
	}{
		{"200", func(w http.ResponseWriter, _ string) { w.WriteHeader(http.StatusOK) }},
		{"wrong accept", func(w http.ResponseWriter, _ string) {
			w.Header().Set("Upgrade", "websocket")
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Sec-WebSocket-Accept", acceptKey("another"))
			w.WriteHeader(http.StatusSwitchingProtocols)
		}},
		{"an extension", func(w http.ResponseWriter, key string) {
			w.Header().Set("Upgrade", "websocket")
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Sec-WebSocket-Accept", acceptKey(key))
			w.Header().Set("Sec-WebSocket-Extensions", "permessage-deflate")
			w.WriteHeader(http.StatusSwitchingProtocols)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tt.answer(w, r.Header.Get("Sec-WebSocket-Key"))
			}))
			srv.Listener = listen127(t)
			srv.Start()
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if c, err := Dial(ctx, "ws://"+srv.Listener.Addr().String(), nil); err == nil {
				_ = c.CloseNow()
				t.Error("dial succeeded")
			}
		})
	}
}

// stuckRWC is an underlying connection whose writes block until it is closed, like a socket
// whose peer stopped reading; reads block too, until Close.
type stuckRWC struct {
	closed    chan struct{}
	closeOnce sync.Once
}

func newStuckRWC() *stuckRWC { return &stuckRWC{closed: make(chan struct{})} }

func (s *stuckRWC) Read([]byte) (int, error)  { <-s.closed; return 0, net.ErrClosed }
func (s *stuckRWC) Write([]byte) (int, error) { <-s.closed; return 0, net.ErrClosed }
func (s *stuckRWC) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// within fails the test when f does not return in 20 s: a failure bound, not a measure.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not return in 20 s", what)
	}
}

// TestStuckWriterDoesNotWedge: with one writer stuck inside the underlying Write (a peer that
// stopped reading), a write or ping waiting behind it ends at its context, and Close closes
// the connection within its bound although its close frame cannot be written; the stuck
// writer is released by the close.
func TestStuckWriterDoesNotWedge(t *testing.T) {
	rwc := newStuckRWC()
	c := newConn(rwc, bufio.NewReader(rwc), false)
	stuck := make(chan error, 1)
	go func() { stuck <- c.Write(Binary, []byte("first")) }()
	testwait.Eventually(t, "the first writer holds the lock", 4000, func() bool { return len(c.wlock) == 1 })
	for _, tt := range []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"WriteContext", func(ctx context.Context) error { return c.WriteContext(ctx, Binary, []byte("x")) }},
		{"Ping", c.Ping},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			var err error
			within(t, tt.name, func() { err = tt.op(ctx) })
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s behind a stuck writer = %v, want context.DeadlineExceeded", tt.name, err)
			}
		})
	}
	within(t, "Close", func() { _ = c.Close(StatusGoingAway, "bye") })
	select {
	case err := <-stuck:
		if err == nil {
			t.Error("the stuck write succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not release the stuck writer")
	}
	if err := c.Write(Binary, []byte("late")); !errors.Is(err, ErrClosed) && !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v", err)
	}
}

// failingRWC fails every write; it records that it was closed.
type failingRWC struct {
	stuckRWC
}

func (f *failingRWC) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// cancelRWC is a CancelWriter whose buffer is full: a write waits until cancelled, unless
// open is set.
type cancelRWC struct {
	pipeConn
	open bool
}

func (c *cancelRWC) WriteCancel(p []byte, cancel <-chan struct{}) (int, error) {
	if !c.open {
		<-cancel
		return 0, ErrWriteCanceled
	}
	return c.pipeConn.Write(p)
}

// TestWriteOutcomes: a failed write closes the connection (its reader ends), a cancelled one
// leaves it usable.
func TestWriteOutcomes(t *testing.T) {
	t.Run("failed write closes", func(t *testing.T) {
		rwc := &failingRWC{stuckRWC: *newStuckRWC()}
		c := newConn(rwc, bufio.NewReader(rwc), false)
		if err := c.Write(Binary, []byte("x")); err == nil {
			t.Fatal("write succeeded")
		}
		select {
		case <-rwc.closed:
		default:
			t.Fatal("a failed write left the connection open")
		}
		if err := c.Write(Binary, []byte("y")); err == nil {
			t.Error("a write after a failed one succeeded")
		}
	})
	t.Run("cancelled write keeps the connection", func(t *testing.T) {
		rwc := &cancelRWC{pipeConn: pipeConn{Reader: bytes.NewReader(nil)}}
		c := newConn(rwc, bufio.NewReader(rwc), true)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if err := c.WriteContext(ctx, Binary, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cancelled write = %v, want context.DeadlineExceeded", err)
		}
		rwc.open = true
		if err := c.WriteContext(context.Background(), Binary, []byte("y")); err != nil {
			t.Fatalf("write after a cancelled one = %v", err)
		}
		r, _ := reading(rwc.written(), false)
		if _, m, err := r.Read(nil); err != nil || string(m) != "y" {
			t.Errorf("peer read %q, %v; want only the second message", m, err)
		}
	})
}
