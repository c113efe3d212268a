// Package ws is the small WebSocket (RFC 6455) implementation under BTP links: an HTTP/1.1
// client handshake (Dial) and server handshake (Accept), binary and text messages, fragmented
// messages on read, ping/pong, the close handshake and a read limit. It has what BTP needs
// and no more: no extensions (permessage-deflate is never negotiated), no subprotocols.
//
// It exists for speed. A connection has exactly one reader, which reads whole messages into a
// buffer the caller reuses and takes no lock; writers take one lock and hand each frame to
// the underlying connection in one Write (BTP's coalescing connection batches them into few
// system calls). A general-purpose library pays for a Reader per message and context plumbing
// on every message, about a fifth of a BTP connector's CPU at full load.
//
// A peer that stops reading must not wedge the connection: a writer waiting for the write lock
// gives up when its context ends or the connection is closed, a writer inside the underlying
// Write is released by a CancelWriter's cancel channel or by closing the connection, a failed
// write closes the connection, and Close bounds its whole handshake by closeTimeout.
package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// MessageType is the type of a data message.
type MessageType int

// The data message types (RFC 6455 §5.6): the values are the frame opcodes.
const (
	Text   MessageType = 1
	Binary MessageType = 2
)

// Frame opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0
	opText         = 1
	opBinary       = 2
	opClose        = 8
	opPing         = 9
	opPong         = 10
)

// StatusCode is the status of a close frame (RFC 6455 §7.4).
type StatusCode uint16

// The status codes this package sends or reports.
const (
	StatusNormalClosure   StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusNoStatusRcvd    StatusCode = 1005 // reported for a close frame without a code; never sent
	StatusInvalidPayload  StatusCode = 1007
	StatusPolicyViolation StatusCode = 1008
	StatusMessageTooBig   StatusCode = 1009
)

// CloseError is the error of Read once the peer has sent a close frame.
type CloseError struct {
	Code   StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("ws: peer closed the connection: status %d %q", e.Code, e.Reason)
}

// CloseStatus returns the status code of the peer's close frame in err's chain, or 0.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// ErrMessageTooBig is wrapped by Read's error for a message above the read limit; the
// connection is then failed with status 1009.
var ErrMessageTooBig = errors.New("ws: message larger than the read limit")

// ErrClosed is wrapped by the error of a write after the close frame was sent or the
// connection closed, and of a Read that races Close.
var ErrClosed = errors.New("ws: connection closed")

// ErrWriteCanceled is what a CancelWriter's WriteCancel returns when cancel closed before it
// took any of p.
var ErrWriteCanceled = errors.New("ws: write canceled")

// CancelWriter is an underlying connection whose Write may wait (for buffer space) and can
// give up that wait when cancel is closed, having written nothing: the frame boundaries stay
// intact and the connection usable. WriteContext and Ping use it to end at their context.
type CancelWriter interface {
	WriteCancel(p []byte, cancel <-chan struct{}) (int, error)
}

// ProtocolError is a peer's violation of RFC 6455; the connection is failed with status 1002
// (or 1007 for text that is not UTF-8).
type ProtocolError struct {
	Code StatusCode
	Msg  string
}

func (e *ProtocolError) Error() string { return "ws: protocol error: " + e.Msg }

func protocolErr(format string, args ...any) error {
	return &ProtocolError{Code: StatusProtocolError, Msg: fmt.Sprintf(format, args...)}
}

// DefaultReadLimit is the read limit of a new connection.
const DefaultReadLimit = 32 << 10

const (
	maxControlPayload = 125
	closeTimeout      = 2 * time.Second // how long Close waits for the peer's close frame
	keepWriteBuffer   = 64 << 10        // larger frame buffers are dropped after the write
)

// Conn is one WebSocket connection. Read must be called from one goroutine at a time; Write,
// Ping, Close and CloseNow from any.
type Conn struct {
	br        *bufio.Reader
	rwc       io.ReadWriteCloser
	client    bool // masks what it writes, and refuses masked frames
	readLimit int

	// Read side: only the reading goroutine touches these.
	hdr     [14]byte
	ctrl    [maxControlPayload]byte
	readErr error // sticky: every Read after a failure returns it

	// reading is held by Read for the duration of a call, and taken for good by Close when
	// no Read runs, so that Close can wait for the peer's close frame itself.
	reading  atomic.Bool
	readDone chan struct{} // closed once reading has ended (close frame or error)

	// wlock is the write lock, a channel (capacity 1) rather than a mutex so that a writer
	// waiting behind one stuck on a peer that does not read can give up at its context's end
	// or at CloseNow. It guards the fields below.
	wlock     chan struct{}
	cw        CancelWriter // rwc when it is one, else nil
	wbuf      []byte
	closeSent bool
	werr      error

	pong      chan struct{} // buffered 1: a pong arrived
	closed    chan struct{} // closed by CloseNow
	closeOnce sync.Once
}

func newConn(rwc io.ReadWriteCloser, br *bufio.Reader, client bool) *Conn {
	cw, _ := rwc.(CancelWriter)
	return &Conn{
		br: br, rwc: rwc, client: client, readLimit: DefaultReadLimit, wlock: make(chan struct{}, 1), cw: cw,
		readDone: make(chan struct{}), pong: make(chan struct{}, 1), closed: make(chan struct{}),
	}
}

// SetCancelWriter makes writes go to cw, the connection beneath (a client's 101 response body
// wraps the connection its HTTP client dialed, and is no CancelWriter itself), so that a
// writer waiting inside it can give up. Call it before the first write.
func (c *Conn) SetCancelWriter(cw CancelWriter) { c.cw = cw }

// SetReadLimit bounds the size of a message Read accepts. Call it before reading.
func (c *Conn) SetReadLimit(n int) { c.readLimit = n }

// Read reads the next data message into buf[:0] (grown as needed) and returns it. Control
// frames in between are handled: a ping is answered, a pong wakes Ping, a close frame is
// answered and ends reading with a *CloseError.
func (c *Conn) Read(buf []byte) (MessageType, []byte, error) {
	if !c.reading.CompareAndSwap(false, true) {
		return 0, buf[:0], fmt.Errorf("%w: Read called concurrently or after Close", ErrClosed)
	}
	typ, msg, err := c.read(buf[:0])
	c.reading.Store(false)
	return typ, msg, err
}

func (c *Conn) read(msg []byte) (MessageType, []byte, error) {
	if c.readErr != nil {
		return 0, msg, c.readErr
	}
	typ, msg, err := c.readMessage(msg)
	if err != nil {
		c.readErr = err
		close(c.readDone) // once: readErr is sticky, and one Read runs at a time
		c.failOn(err)
	}
	return typ, msg, err
}

// readMessage reads frames until a data message is complete.
func (c *Conn) readMessage(msg []byte) (MessageType, []byte, error) {
	var typ MessageType // 0 until the first frame of a message
	for {
		h, err := c.readHeader()
		if err != nil {
			return 0, msg, err
		}
		if h.opcode >= opClose {
			if err := c.control(h); err != nil {
				return 0, msg, err
			}
			continue
		}
		switch {
		case h.opcode == opContinuation && typ == 0:
			return 0, msg, protocolErr("continuation frame without a message to continue")
		case h.opcode != opContinuation && typ != 0:
			return 0, msg, protocolErr("new data frame before the fragmented message ended")
		case h.opcode != opContinuation:
			typ = MessageType(h.opcode)
		}
		if h.length > uint64(c.readLimit-len(msg)) {
			return 0, msg, fmt.Errorf("%w: more than %d bytes", ErrMessageTooBig, c.readLimit)
		}
		n := len(msg)
		if msg, err = c.readPayload(msg, int(h.length)); err != nil {
			return 0, msg, unexpectedEOF(err)
		}
		if h.masked {
			mask(h.key, msg[n:])
		}
		if !h.fin {
			continue
		}
		if typ == Text && !utf8.Valid(msg) {
			return 0, msg, &ProtocolError{Code: StatusInvalidPayload, Msg: "text message is not UTF-8"}
		}
		return typ, msg, nil
	}
}

// payloadChunk is the least readPayload allocates ahead of the bytes that arrived: the size
// of the server's read buffer (net/http's), which every connection holds anyway.
const payloadChunk = 4 << 10

// payloadGrowth is how many times what a message received so far readPayload allocates ahead
// of it: a large frame arriving in pieces costs two or three allocations (growing by doubling
// would cost five for 32 KiB, twice the time of one), and a peer can make the reader hold
// about eight times the bytes it sent, never more than the read limit.
const payloadGrowth = 7

// readPayload appends n payload bytes to msg. It allocates as the bytes arrive, not by the
// length the header claims: a peer that sends a header claiming 64 KiB and then nothing (say,
// on each of many connections waiting for their auth frame) makes the reader hold 4 KiB (at
// most 8 KiB, for a claim that small), not 64 KiB. A payload already in the read buffer, as a
// small frame usually is, is read with one allocation of its size, as before.
func (c *Conn) readPayload(msg []byte, n int) ([]byte, error) {
	for n > 0 {
		start := len(msg)
		// What is buffered has arrived; past it, allocate ahead only in proportion to what
		// came, and take a short tail at once rather than grow (and copy) again for it.
		step := min(n, max(c.br.Buffered(), payloadGrowth*start, payloadChunk))
		if n-step < payloadChunk {
			step = n
		}
		msg = slices.Grow(msg, step)[:start+step]
		if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
			return msg[:start], err
		}
		n -= step
	}
	return msg, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

type header struct {
	fin    bool
	opcode byte
	masked bool
	key    [4]byte
	length uint64
}

// readHeader reads and checks one frame header (RFC 6455 §5.2, §5.5).
func (c *Conn) readHeader() (header, error) {
	var h header
	b := c.hdr[:2]
	if _, err := io.ReadFull(c.br, b); err != nil {
		return h, err
	}
	h.fin, h.opcode, h.masked = b[0]&0x80 != 0, b[0]&0x0f, b[1]&0x80 != 0
	if b[0]&0x70 != 0 {
		return h, protocolErr("reserved bits set (no extension was negotiated)")
	}
	switch h.opcode {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, protocolErr("unknown opcode %d", h.opcode)
	}
	if h.masked == c.client {
		if c.client {
			return h, protocolErr("masked frame from the server")
		}
		return h, protocolErr("unmasked frame from the client")
	}
	h.length = uint64(b[1] & 0x7f)
	if h.opcode >= opClose && (!h.fin || h.length > maxControlPayload) {
		return h, protocolErr("control frame fragmented or longer than %d bytes", maxControlPayload)
	}
	ext := 0
	switch h.length {
	case 126:
		ext = 2
	case 127:
		ext = 8
	}
	if h.masked {
		ext += 4
	}
	if ext == 0 {
		return h, nil
	}
	e := c.hdr[2 : 2+ext]
	if _, err := io.ReadFull(c.br, e); err != nil {
		return h, unexpectedEOF(err)
	}
	switch h.length {
	case 126:
		h.length, e = uint64(binary.BigEndian.Uint16(e)), e[2:]
	case 127:
		h.length, e = binary.BigEndian.Uint64(e), e[8:]
		if h.length>>63 != 0 {
			return h, protocolErr("64-bit payload length with its most significant bit set")
		}
	}
	if h.masked {
		copy(h.key[:], e)
	}
	return h, nil
}

// control handles a ping, pong or close frame.
func (c *Conn) control(h header) error {
	p := c.ctrl[:h.length]
	if _, err := io.ReadFull(c.br, p); err != nil {
		return unexpectedEOF(err)
	}
	if h.masked {
		mask(h.key, p)
	}
	switch h.opcode {
	case opPing:
		// A failed pong write closes the connection, which the next read reports.
		_ = c.writeFrame(context.Background(), opPong, p)
	case opPong:
		select {
		case c.pong <- struct{}{}:
		default:
		}
	case opClose:
		ce, err := parseClose(p)
		if err != nil {
			return err
		}
		// Echo the code (RFC 6455 §5.5.1) unless our close frame went first.
		_ = c.writeClose(ce.Code, "")
		return ce
	}
	return nil
}

func parseClose(p []byte) (*CloseError, error) {
	switch {
	case len(p) == 0:
		return &CloseError{Code: StatusNoStatusRcvd}, nil
	case len(p) == 1:
		return nil, protocolErr("close frame with a 1-byte payload")
	}
	code := StatusCode(binary.BigEndian.Uint16(p))
	if !validWireCode(code) {
		return nil, protocolErr("close frame with status %d", code)
	}
	if !utf8.Valid(p[2:]) {
		return nil, &ProtocolError{Code: StatusInvalidPayload, Msg: "close reason is not UTF-8"}
	}
	return &CloseError{Code: code, Reason: string(p[2:])}, nil
}

// validWireCode reports whether a close frame may carry code (RFC 6455 §7.4.1, IANA registry).
func validWireCode(code StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

// failOn sends the close frame a read error calls for (RFC 6455 §7.1.7); the caller closes.
func (c *Conn) failOn(err error) {
	var pe *ProtocolError
	switch {
	case errors.As(err, &pe):
		_ = c.writeClose(pe.Code, pe.Msg)
	case errors.Is(err, ErrMessageTooBig):
		_ = c.writeClose(StatusMessageTooBig, "message too big")
	}
}

// Write sends p as one message of type typ, in one frame. It waits as long as the write
// takes: until the underlying connection takes the frame, fails, or is closed.
func (c *Conn) Write(typ MessageType, p []byte) error {
	return c.WriteContext(context.Background(), typ, p)
}

// WriteContext is Write that gives up when ctx ends before the frame is handed over (waiting
// for the write lock, or inside a CancelWriter): it then returns ctx's error and the
// connection stays usable. Once the frame is handed over it is sent whatever ctx does.
func (c *Conn) WriteContext(ctx context.Context, typ MessageType, p []byte) error {
	if typ != Text && typ != Binary {
		return fmt.Errorf("ws: cannot write a message of type %d", typ)
	}
	return c.writeFrame(ctx, byte(typ), p)
}

// lockWrite takes the write lock, or gives up when ctx ends or the connection is closed.
func (c *Conn) lockWrite(ctx context.Context) error {
	select { // uncontended: no second select, no context touched
	case c.wlock <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.wlock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return fmt.Errorf("%w: closed while waiting to write", ErrClosed)
	}
}

func (c *Conn) unlockWrite() { <-c.wlock }

// writeFrame encodes one whole frame into the connection's buffer and writes it at once.
func (c *Conn) writeFrame(ctx context.Context, opcode byte, p []byte) error {
	if err := c.lockWrite(ctx); err != nil {
		return err
	}
	defer c.unlockWrite()
	return c.writeLocked(ctx, opcode, p)
}

// writeLocked writes one frame under the write lock. A write that fails closes the
// connection: a frame may be cut in two, and a peer that stopped reading (the usual cause,
// through a write deadline of the connection below) must not keep it, its reader and the
// goroutines waiting on it.
func (c *Conn) writeLocked(ctx context.Context, opcode byte, p []byte) error {
	switch {
	case c.werr != nil:
		return c.werr
	case c.closeSent:
		return fmt.Errorf("%w: close frame already sent", ErrClosed)
	}
	b := appendFrame(c.wbuf[:0], opcode, p, c.client)
	var err error
	if done := ctx.Done(); done != nil && c.cw != nil {
		_, err = c.cw.WriteCancel(b, done)
	} else {
		_, err = c.rwc.Write(b)
	}
	if cap(b) <= keepWriteBuffer {
		c.wbuf = b[:0]
	}
	switch {
	case err == nil:
		if opcode == opClose {
			c.closeSent = true
		}
	case errors.Is(err, ErrWriteCanceled): // nothing written: the connection is intact
		return ctx.Err()
	default:
		c.werr = err
		_ = c.CloseNow()
	}
	return err
}

// appendFrame appends a final frame with payload p, masked with a fresh key when mask is set.
func appendFrame(b []byte, opcode byte, p []byte, masked bool) []byte {
	b = append(b, 0x80|opcode)
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch n := len(p); {
	case n <= 125:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, p...)
	}
	// RFC 6455 §5.3 wants keys a proxy cannot predict; math/rand/v2's generator is ChaCha8,
	// seeded from the system's randomness.
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, p...)
	mask(key, b[start:])
	return b
}

// mask XORs b with the masking key (RFC 6455 §5.3), eight bytes at a time.
func mask(key [4]byte, b []byte) {
	if len(b) >= 8 {
		k := uint64(binary.LittleEndian.Uint32(key[:]))
		k |= k << 32
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
			b = b[8:]
		}
	}
	// Whole words consumed a multiple of 4 bytes, so the key is aligned again.
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// writeClose sends a close frame once; later calls do nothing. Code 0 or 1005 sends none.
func (c *Conn) writeClose(code StatusCode, reason string) error {
	var p []byte
	if code != 0 && code != StatusNoStatusRcvd {
		if len(reason) > maxControlPayload-2 {
			reason = reason[:maxControlPayload-2]
			for !utf8.ValidString(reason) { // do not cut a character in two; ends at len 0
				reason = reason[:len(reason)-1]
			}
		}
		p = binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
		p = append(p, reason...)
	}
	if err := c.lockWrite(context.Background()); err != nil {
		return err // closed while a writer held the lock: no close frame any more
	}
	defer c.unlockWrite()
	if c.closeSent { // another goroutine's close frame went first
		return nil
	}
	return c.writeLocked(context.Background(), opClose, p)
}

// Ping sends a ping and waits for a pong, ctx, or the end of the connection; ctx also bounds
// the wait to write the ping. It relies on a goroutine calling Read, which sees the pong. One
// Ping at a time: any pong answers it.
func (c *Conn) Ping(ctx context.Context) error {
	select { // a stale pong from an earlier ping must not answer this one
	case <-c.pong:
	default:
	}
	if err := c.writeFrame(ctx, opPing, nil); err != nil {
		return err
	}
	select {
	case <-c.pong:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.readDone:
		return fmt.Errorf("%w: reading ended before the pong", ErrClosed)
	case <-c.closed:
		return ErrClosed
	}
}

// Close runs the close handshake: it sends a close frame with code and reason, waits for the
// peer's close frame, and closes the connection, all within closeTimeout: past it the
// connection is closed without more ado, also when the close frame could not even be written
// (a writer stuck on a peer that does not read). When no Read is in progress, Close reads (and
// drops) what comes until the peer's close frame itself, so that it never closes under unread
// data the peer is still sending.
func (c *Conn) Close(code StatusCode, reason string) error {
	t := time.AfterFunc(closeTimeout, func() { _ = c.CloseNow() })
	defer t.Stop()
	err := c.writeClose(code, reason)
	if err == nil {
		if c.reading.CompareAndSwap(false, true) { // no reader: be the reader, for good
			for range maxDrainMessages {
				if _, _, err := c.read(nil); err != nil {
					break
				}
			}
		}
		select {
		case <-c.readDone:
		case <-c.closed:
		}
	}
	if cerr := c.CloseNow(); err == nil {
		err = cerr
	}
	return err
}

// maxDrainMessages bounds the messages Close reads while waiting for the peer's close frame
// (the timer bounds the time).
const maxDrainMessages = 1 << 16

// CloseNow closes the connection without a close frame; a blocked Read returns an error, and
// so does a blocked write once the underlying connection's Close releases it.
func (c *Conn) CloseNow() error {
	var err error // nil when already closed
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.rwc.Close()
	})
	return err
}
