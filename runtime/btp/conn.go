package btp

import (
	"context"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/textcut"
	"github.com/ilpfleet/ilpfleet/runtime/btp/internal/ws"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Defaults of the settings every link shares.
const (
	DefaultResponseTimeout = 35 * time.Second // ilp-plugin-btp DEFAULT_TIMEOUT
	DefaultPingInterval    = 30 * time.Second // interledger-rs
	DefaultAuthTimeout     = 10 * time.Second // interledger-rs
	DefaultMaxInFlight     = 8192             // concurrent incoming requests per connection
)

// MoneyHandler receives the Transfer frames of a peer: amount in the unit agreed out of band
// and the side protocols that came with it. from is the child's address on a ChildServer and ""
// elsewhere. A nil error answers the peer with an empty Response, an error with a BTP Error.
// Without one, a link refuses every Transfer (see errNoMoney).
type MoneyHandler func(ctx context.Context, from ilp.Address, amount uint64, protocols []ProtocolData) error

// Error is a BTP Error frame received from the peer: a transport-level failure, not an ILP Reject.
type Error struct {
	Code        string
	Name        string
	TriggeredAt time.Time
	Data        []byte
}

// Bounds of what of a peer's BTP Error goes into Error(): the text is logged and may become
// the message of an ILP Reject, and the peer chooses it (a name of any length, data of up to
// 8 KiB).
const (
	maxErrorNameText = 64
	maxErrorDataText = 256
)

func (e *Error) Error() string {
	return fmt.Sprintf("btp: peer answered with error %s %s: %s",
		e.Code, cutPeer(e.Name, maxErrorNameText), cutPeer(string(e.Data), maxErrorDataText))
}

// cutPeer cuts s, a text the peer chose, to at most n bytes between characters, saying so
// when it does.
func cutPeer(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s… (cut, %d bytes in all)", textcut.Prefix(s, n), len(s))
}

// ErrTimeout is wrapped by the error of a request the peer did not answer in time.
var ErrTimeout = errors.New("btp: request timed out")

// ErrClosed is wrapped by the error of a request whose connection closed before the answer.
var ErrClosed = errors.New("btp: connection closed")

// Common holds the settings every link shares. Zero values take the defaults above.
type Common struct {
	ResponseTimeout time.Duration      // how long Send waits for an answer (JS responseTimeout)
	PingInterval    time.Duration      // WebSocket ping period; a ping unanswered (or unsent) in one period closes the connection, and so does a socket write without progress on a connection the link dialed or accepted itself (coalescingConn.armDeadline)
	MaxInFlight     int                // concurrent incoming requests per connection before T00 BTP Errors
	Money           MoneyHandler       // Transfer frames; nil refuses them (F00), as ilp-plugin-btp
	Address         func() ilp.Address // this connector's address: triggeredBy of Rejects the link makes
	Logger          *slog.Logger       // nil: slog.Default()
}

// core is the state shared by every connection of one link.
type core struct {
	Common
	handler ilp.Handler
	ctx     context.Context // handlers' context, cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // handler goroutines and connection loops
	tasks   chan task      // unbuffered: idle workers wait on it
}

func (c *core) init(com Common) {
	c.Common = com
	if c.ResponseTimeout <= 0 {
		c.ResponseTimeout = DefaultResponseTimeout
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.tasks = make(chan task)
}

func (c *core) address() ilp.Address {
	if c.Address == nil {
		return ""
	}
	return c.Address()
}

// call is one request waiting for its answer. Calls are pooled with their timer and channel.
type call struct {
	ch    chan []byte
	timer *time.Timer
}

var callPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &call{ch: make(chan []byte, 1), timer: t}
}}

// conn is one authenticated WebSocket connection: it allocates request ids, matches answers to
// requests and serves the peer's requests. One goroutine reads; each request is served by a
// worker goroutine of its own (see core.serve) so that a slow packet does not hold up the others.
type conn struct {
	core     *core
	ws       *ws.Conn
	from     ilp.Address     // child address on a ChildServer
	remote   string          // the peer's host:port on a server; "" on a client
	ctx      context.Context // handlers' context
	inFlight atomic.Int32
	done     chan struct{}
	// ready, when set, is closed once the server has answered the peer's auth: requests wait
	// for it so that nothing reaches the peer before its auth response.
	ready chan struct{}

	mu      sync.Mutex
	pending map[uint32]*call
	nextID  uint32
	closed  bool
	err     error
}

// newConn wraps an authenticated (or being authenticated) WebSocket; readLimit bounds each
// message read from it, at most MaxFrameSize.
func newConn(c *core, wc *ws.Conn, from ilp.Address, readLimit int) *conn {
	wc.SetReadLimit(readLimit)
	return &conn{
		core: c, ws: wc, from: from, ctx: c.ctx, done: make(chan struct{}),
		pending: make(map[uint32]*call), nextID: rand.Uint32(),
	}
}

// serve runs the read loop and the pinger until the connection ends, and returns why.
func (cn *conn) serve() error {
	go cn.pingLoop()
	err := cn.readLoop()
	cn.close(err, 0, "")
	return err
}

// close ends the connection once; requests waiting on it fail with ErrClosed. A code other
// than 0 sends a WebSocket close frame and waits (bounded by package ws) for the peer's echo;
// 0 drops the TCP connection at once, for connections already broken.
func (cn *conn) close(err error, code ws.StatusCode, reason string) {
	cn.mu.Lock()
	if cn.closed {
		cn.mu.Unlock()
		return
	}
	cn.closed, cn.err = true, err
	close(cn.done)
	cn.mu.Unlock()
	if code == 0 {
		_ = cn.ws.CloseNow()
		return
	}
	_ = cn.ws.Close(code, reason)
}

func (cn *conn) isClosed() bool {
	select {
	case <-cn.done:
		return true
	default:
		return false
	}
}

func (cn *conn) pingLoop() {
	t := time.NewTicker(cn.core.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-cn.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), cn.core.PingInterval)
			err := cn.ws.Ping(ctx)
			cancel()
			if err != nil {
				cn.close(fmt.Errorf("btp: ping: %w", err), 0, "")
				return
			}
		}
	}
}

// readLoop reads each message into a buffer of its own, which dispatch keeps: Prepares,
// Fulfills and Rejects alias it and may outlive the next read.
func (cn *conn) readLoop() error {
	for {
		_, msg, err := cn.ws.Read(nil)
		if err != nil {
			if errors.Is(err, ws.ErrMessageTooBig) {
				return fmt.Errorf("%w: %v", ErrFrameTooLarge, err)
			}
			return err
		}
		cn.dispatch(msg)
	}
}

// dispatch routes one frame by its type. Only the envelope header is read here; unreadable and
// unexpected frames get no reply (RFC 23), so that two confused peers cannot loop.
func (cn *conn) dispatch(msg []byte) {
	if len(msg) < 5 {
		cn.core.Logger.Debug("btp: ignoring a frame shorter than its header", "len", len(msg))
		return
	}
	typ, id := msg[0], binary.BigEndian.Uint32(msg[1:5])
	switch typ {
	case TypeResponse, TypeError:
		// Sending under the lock lets release know that, once the entry is gone, the answer is
		// already in the channel (buffered 1; only the remover of the entry sends).
		cn.mu.Lock()
		c := cn.pending[id]
		if c != nil {
			delete(cn.pending, id)
			c.ch <- msg
		}
		cn.mu.Unlock()
		if c == nil {
			cn.core.Logger.Debug("btp: ignoring an answer to no pending request", "type", typ, "requestId", id)
		}
	case TypeMessage, TypeTransfer:
		if int(cn.inFlight.Add(1)) > cn.core.MaxInFlight {
			cn.inFlight.Add(-1)
			cn.replyError(id, "T00", "UnreachableError", "too many requests in flight on this connection")
			return
		}
		cn.core.serve(task{cn: cn, typ: typ, msg: msg})
	default:
		cn.core.Logger.Debug("btp: ignoring a frame of unknown type", "type", typ, "requestId", id)
	}
}

// task is one incoming request for a worker.
type task struct {
	cn  *conn
	typ byte
	msg []byte
}

// workerIdle is how long a worker waits for another request before it exits.
const workerIdle = time.Second

// serve hands t to an idle worker of the link, or starts a new one. Workers outlive their
// request for workerIdle, so that a busy link does not pay for a goroutine start and the
// growth of its stack through the whole pipeline on every packet; their number is bounded by
// the requests in flight (MaxInFlight per connection).
func (c *core) serve(t task) {
	select {
	case c.tasks <- t:
	default:
		c.wg.Add(1)
		go c.work(t)
	}
}

func (c *core) work(t task) {
	defer c.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		t.cn.serveRequest(t.typ, t.msg)
		t = task{} // drop the request's memory while idle
		idle.Reset(workerIdle)
		select {
		case t = <-c.tasks:
		case <-idle.C:
			return
		case <-c.ctx.Done():
			return
		}
	}
}

func (cn *conn) serveRequest(typ byte, msg []byte) {
	defer cn.inFlight.Add(-1)
	if typ == TypeMessage { // the packet path: straight to the primary `ilp` entry
		if _, id, contents, err := splitEnvelope(msg); err == nil {
			if data, ok, err := findProtocol(contents, ProtocolILP, true); err == nil && ok {
				cn.serveILP(id, data)
				return
			}
		}
	}
	var f Frame
	if err := ParseFrame(msg, &f); err != nil {
		cn.core.Logger.Debug("btp: ignoring an unreadable frame", "error", err)
		return
	}
	if typ == TypeTransfer {
		cn.serveTransfer(&f)
		return
	}
	if f.Primary() != ProtocolILP {
		cn.replyError(f.RequestID, "F00", "NotAcceptedError", "unsupported primary sub-protocol "+quotePeer(f.Primary()))
		return
	}
	cn.serveILP(f.RequestID, f.Protocols[0].Data)
}

// errNoMoney answers a Transfer on a link without a MoneyHandler, in ilp-plugin-btp's words
// (its _handleMoney, lower-cased as Go errors are): an empty Response would tell the peer that
// it paid while nothing took the amount into account.
var errNoMoney = errors.New("no sendMoney functionality is included in this module")

func (cn *conn) serveTransfer(f *Frame) {
	err := errNoMoney
	if cn.core.Money != nil {
		err = cn.core.Money(cn.ctx, cn.from, f.Amount, f.Protocols)
	}
	if err != nil {
		cn.replyError(f.RequestID, "F00", "NotAcceptedError", err.Error())
		return
	}
	cn.reply(f.RequestID, nil)
}

// serveILP runs the handler on a Prepare and answers with the Fulfill or Reject in a Response.
func (cn *conn) serveILP(id uint32, data []byte) {
	var answer encoding.BinaryAppender
	p, err := ilp.ParsePrepare(data)
	if err != nil {
		answer = ilp.Rejectf(ilp.CodeInvalidPacket, cn.core.address(), "invalid ILP Prepare: %v", err)
	} else {
		answer = cn.handle(p)
	}
	if err := cn.writePacket(cn.ctx, TypeResponse, id, answer); err != nil {
		cn.core.Logger.Debug("btp: cannot send the answer to a Prepare", "requestId", id, "error", err)
	}
}

func (cn *conn) handle(p *ilp.Prepare) encoding.BinaryAppender {
	h := cn.core.handler
	if h == nil {
		return ilp.Rejectf(ilp.CodeUnreachable, cn.core.address(), "link is not started")
	}
	ful, err := h(cn.ctx, p)
	if err == nil && ful != nil {
		return ful
	}
	var rej *ilp.Reject
	if errors.As(err, &rej) {
		if rej.TriggeredBy == "" {
			fixed := *rej
			fixed.TriggeredBy = cn.core.address()
			rej = &fixed
		}
		return rej
	}
	if err == nil {
		err = errors.New("handler returned neither a Fulfill nor an error")
	}
	return ilp.Rejectf(ilp.CodeInternalError, cn.core.address(), "%v", err)
}

// reply sends a Response with the given entries.
func (cn *conn) reply(id uint32, ps []ProtocolData) {
	f := Frame{Type: TypeResponse, RequestID: id, Protocols: ps}
	if err := cn.writeFrame(cn.ctx, &f); err != nil {
		cn.core.Logger.Debug("btp: cannot send a response", "requestId", id, "error", err)
	}
}

func (cn *conn) replyError(id uint32, code, name, data string) {
	f := Frame{Type: TypeError, RequestID: id, Code: code, Name: name, TriggeredAt: time.Now(), ErrorData: []byte(data)}
	if err := cn.writeFrame(cn.ctx, &f); err != nil {
		cn.core.Logger.Debug("btp: cannot send an error", "requestId", id, "error", err)
	}
}

// Buffers for encoding frames; a written buffer is free again once Write returns.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= MaxFrameSize {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

func (cn *conn) writeFrame(ctx context.Context, f *Frame) error {
	bp := getBuf()
	defer putBuf(bp)
	b, err := AppendFrame((*bp)[:0], f)
	*bp = b[:0]
	if err != nil {
		return err
	}
	return cn.write(ctx, b)
}

// writePacket sends an ILP packet as the only `ilp` entry of a frame.
func (cn *conn) writePacket(ctx context.Context, typ byte, id uint32, pkt encoding.BinaryAppender) error {
	bp := getBuf()
	defer putBuf(bp)
	b, err := appendILPFrame((*bp)[:0], typ, id, pkt)
	*bp = b[:0]
	if err != nil {
		return err
	}
	return cn.write(ctx, b)
}

// write sends one frame, or gives up when ctx ends first (a peer that stops reading fills the
// buffers below and makes writes wait): a Send ends at its packet's expiry, an answer at the
// link's Close. The connection itself is dropped by the socket's write deadline (coalesce.go)
// or the pinger, whichever comes first.
func (cn *conn) write(ctx context.Context, b []byte) error {
	if cn.isClosed() {
		return cn.closedErr()
	}
	return cn.ws.WriteContext(ctx, ws.Binary, b)
}

func (cn *conn) closedErr() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err == nil {
		return ErrClosed
	}
	return fmt.Errorf("%w: %v", ErrClosed, cn.err)
}

// ilpHeadroom is the most bytes a frame carrying one `ilp` entry needs before the packet: type,
// request id, contents length, entry count, "ilp", content type, packet length.
const ilpHeadroom = 1 + 4 + 3 + 2 + 4 + 1 + 3

// appendILPFrame encodes pkt first, then writes the frame header just before it, so that the
// packet is encoded once and never copied. The result starts inside b's headroom.
func appendILPFrame(b []byte, typ byte, id uint32, pkt encoding.BinaryAppender) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, ilpHeadroom)...)
	b, err := pkt.AppendBinary(b)
	if err != nil {
		return b[:start], err
	}
	n := len(b) - start - ilpHeadroom
	contents := 2 + 4 + 1 + ilp.LengthSize(n) + n
	hdr := 1 + 4 + ilp.LengthSize(contents) + contents - n
	if hdr+n > MaxFrameSize {
		return b[:start], ErrFrameTooLarge
	}
	at := start + ilpHeadroom - hdr
	h := b[at:at]
	h = append(h, typ)
	h = ilp.AppendUint32(h, id)
	h = ilp.AppendLength(h, contents)
	h = append(h, 1, 1) // VarUInt entry count 1
	h = ilp.AppendVarString(h, ProtocolILP)
	h = append(h, byte(ContentOctetStream))
	_ = ilp.AppendLength(h, n)
	return b[at:], nil
}

// request sends a frame (an ILP packet when pkt is set, f otherwise) with a fresh request id
// and waits for the raw answer, ctx, the response timeout or the end of the connection.
func (cn *conn) request(ctx context.Context, typ byte, pkt encoding.BinaryAppender, f *Frame) ([]byte, error) {
	if cn.ready != nil {
		select {
		case <-cn.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-cn.done:
			return nil, cn.closedErr()
		}
	}
	c := callPool.Get().(*call)
	id, err := cn.register(c)
	if err != nil {
		callPool.Put(c)
		return nil, err
	}
	if pkt != nil {
		err = cn.writePacket(ctx, typ, id, pkt)
	} else {
		f.RequestID = id
		err = cn.writeFrame(ctx, f)
	}
	if err != nil {
		cn.release(id, c)
		return nil, err
	}
	// A context that ends before the response timeout (the expire middleware's, for every
	// forwarded packet) bounds the wait by itself: no timer of our own to arm and stop then.
	var timeout <-chan time.Time
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) >= cn.core.ResponseTimeout {
		c.timer.Reset(cn.core.ResponseTimeout)
		timeout = c.timer.C
	}
	select {
	case msg := <-c.ch:
		if timeout != nil {
			c.timer.Stop()
		}
		callPool.Put(c)
		return msg, nil
	case <-timeout:
		err = fmt.Errorf("%w: request %d got no answer within %s", ErrTimeout, id, cn.core.ResponseTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	case <-cn.done:
		err = cn.closedErr()
	}
	cn.release(id, c)
	return nil, err
}

// register allocates a request id that is not in flight.
func (cn *conn) register(c *call) (uint32, error) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.closed {
		return 0, fmt.Errorf("%w: %v", ErrClosed, cn.err)
	}
	for range len(cn.pending) + 1 { // at most len(pending) ids can be taken
		cn.nextID++
		if _, taken := cn.pending[cn.nextID]; !taken {
			cn.pending[cn.nextID] = c
			return cn.nextID, nil
		}
	}
	return 0, errors.New("btp: no free request id") // unreachable
}

// release forgets a request that ends without an answer, and recycles its call once no answer
// can arrive any more.
func (cn *conn) release(id uint32, c *call) {
	c.timer.Stop()
	cn.mu.Lock()
	if cn.pending[id] == c {
		delete(cn.pending, id)
	}
	cn.mu.Unlock()
	select { // an answer that won the race is dropped
	case <-c.ch:
	default:
	}
	callPool.Put(c)
}

// sendPrepare forwards a Prepare and decodes the answer.
func (cn *conn) sendPrepare(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	msg, err := cn.request(ctx, TypeMessage, p, nil)
	if err != nil {
		return nil, err
	}
	return parseILPAnswer(msg)
}

func parseILPAnswer(msg []byte) (*ilp.Fulfill, error) {
	typ, _, contents, err := splitEnvelope(msg)
	if err != nil {
		return nil, err
	}
	if typ == TypeError {
		var f Frame
		if err := ParseFrame(msg, &f); err != nil {
			return nil, err
		}
		return nil, frameError(&f)
	}
	data, ok, err := findProtocol(contents, ProtocolILP, false)
	if err != nil {
		return nil, err
	}
	if !ok || len(data) == 0 {
		return nil, errors.New("btp: the peer's response carries no ilp packet")
	}
	ful, rej, err := ilp.ParseResponse(data)
	if err != nil {
		return nil, fmt.Errorf("btp: the peer's ILP answer: %w", err)
	}
	if rej != nil {
		return nil, rej
	}
	return ful, nil
}

func frameError(f *Frame) *Error {
	return &Error{Code: f.Code, Name: f.Name, TriggeredAt: f.TriggeredAt, Data: f.ErrorData}
}
