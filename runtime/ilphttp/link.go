package ilphttp

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/serverlog"
	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// Link is the ILP-over-HTTP link of one account: an HTTP server when Incoming is set (one
// server per listening account, on its own port, as each ilp-plugin-http instance has), a
// client of the peer's URL when Outgoing is set. It implements link.Link.
type Link struct {
	opts     Options
	mode     Mode
	log      *slog.Logger
	now      func() time.Time
	verify   *verifier // nil without Incoming
	sign     *signer   // nil without Outgoing
	client   *http.Client
	own      *http.Transport // the link's own transport (Outgoing.TLS), closed with it; nil: shared
	maxBody  int             // a POSTed Prepare
	maxReply int             // a Fulfill or Reject from the peer, never less than maxReplySize
	origin   string          // scheme://host:port of outgoing.url: the only place async replies go

	handler ilp.Handler
	// Handlers and async replies run on contexts of their own, bounded by their Prepare's
	// expiry, never by the link's life: a Fulfill we produced means we paid downstream, so
	// Close must let it reach the peer rather than cancel it.
	wg      sync.WaitGroup // async handlers with their reply delivery, and the server loop
	sem     chan struct{}  // async handlers in flight
	asyncMu sync.Mutex     // orders Start and track's wg.Add before Close's wg.Wait
	seen    *RequestIDs    // Request-Ids of the peer's async Prepares, until they expire
	// idsExpire, when set (tests), is how long after Close every Request-Id the link took has
	// expired; 0: the longest hold keepID capped an id with, plus replyMinWindow.
	idsExpire time.Duration
	longestMu sync.Mutex
	longest   time.Duration // the longest max hold time keepID used: it may change
	syncUntil atomic.Int64  // latest expiry (Unix ns) of a sync Prepare served: Close waits for it
	// giveUp is the parent of the handlers' and replies' contexts, cancelled only when Close
	// has waited for them as long as it may (MaxHold + closeGrace, or CloseContext's ctx): a
	// peer's far expiry must not hold a shutdown.
	giveUp    context.Context
	giveUpNow context.CancelFunc
	holdNow   func() time.Duration // Options.CurrentMaxHold

	srv     *http.Server
	ln      net.Listener
	pending sync.Map // Request-Id → chan []byte, outgoing Prepares awaiting an async reply
	warns   warnlimit.Limiter

	started atomic.Bool
	closed  atomic.Bool
	once    sync.Once
}

var _ link.Link = (*Link)(nil)

// New checks the options and builds the link; it neither listens nor connects (see Start).
func New(o *Options) (*Link, error) {
	if o == nil {
		return nil, errNoOptions
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	l := &Link{opts: *o, mode: o.Mode, warns: warnlimit.Limiter{Every: warnEvery}, log: cmp.Or(o.Logger, slog.Default()).With("account", o.Account), now: o.Now, maxBody: DefaultMaxBodySize, maxReply: maxReplySize,
		holdNow: o.CurrentMaxHold}
	l.giveUp, l.giveUpNow = context.WithCancel(context.Background())
	if l.seen = o.RequestIDs; l.seen == nil {
		l.seen = &RequestIDs{}
	}
	if l.mode == "" {
		l.mode = ModeSync
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.opts.Address == nil {
		l.opts.Address = func() ilp.Address { return "" }
	}
	n := o.MaxInFlight
	if n <= 0 {
		n = DefaultMaxInFlight
	}
	l.sem = make(chan struct{}, n)
	if in := o.Incoming; in != nil {
		if in.TLS != nil {
			in.TLS.SetLogger(l.log)
		}
		l.verify = newVerifier(in.Auth, l.now)
		if in.MaxBodySize > 0 {
			l.maxBody = in.MaxBodySize
			l.maxReply = max(maxReplySize, in.MaxBodySize)
		}
	}
	if out := o.Outgoing; out != nil {
		l.sign = newSigner(out, l.now)
		l.origin = originOf(out.URL) // check validated the URL
	}
	rt := o.Transport
	switch {
	case o.Outgoing != nil && o.Outgoing.TLS != nil && rt != nil:
		return nil, errors.New("ilphttp: set Transport or Outgoing.TLS, not both")
	case o.Outgoing != nil && o.Outgoing.TLS != nil:
		// Its own pool: connections made with this account's authorities and client
		// certificate must not serve another account's requests to the same host.
		l.own = newTransport(o.Outgoing.HTTP2)
		l.own.TLSClientConfig = o.Outgoing.TLS.Clone()
		rt = l.own
	case rt == nil:
		rt = sharedTransport(o.Outgoing != nil && o.Outgoing.HTTP2)
	}
	// Redirects are not followed: a Prepare is POSTed to the configured URL only.
	l.client = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return l, nil
}

// Start listens when the account has Incoming options and serves the peer's Prepares with h.
// It fails only when the server cannot listen; an HTTP client has nothing to connect.
func (l *Link) Start(_ context.Context, h ilp.Handler) error {
	// Under asyncMu, as Close marks the link closed: Start either finishes first (Close then
	// shuts its server down) or sees the link closed.
	l.asyncMu.Lock()
	defer l.asyncMu.Unlock()
	if l.closed.Load() {
		return errors.New("ilphttp: link closed")
	}
	if !l.started.CompareAndSwap(false, true) {
		return errors.New("ilphttp: link already started")
	}
	l.handler = h
	in := l.opts.Incoming
	if in == nil {
		return nil
	}
	addr := net.JoinHostPort(in.Host, strconv.Itoa(in.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		l.started.Store(false)
		return fmt.Errorf("ilphttp: account %s: cannot listen on %s: %w", l.opts.Account, addr, err)
	}
	l.ln = ln
	l.srv = l.newServer()
	served := ln
	if t := in.TLS; t != nil {
		served = tls.NewListener(ln, t.Config("h2", "http/1.1"))
		l.srv.ErrorLog = t.HandshakeLog("https://")
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := l.srv.Serve(served); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("ILP-over-HTTP server stopped", "error", err)
		}
	}()
	return nil
}

// newServer is the account's HTTP server: HTTP/1.1 and HTTP/2 with prior knowledge (h2c), as
// ilp-plugin-http's http2 option and interledger-rs clients may use, or over TLS (incoming.tls)
// HTTP/1.1 and HTTP/2 by ALPN. Requests' contexts do not derive from the link's life (see
// Close). ReadHeaderTimeout bounds a TLS handshake too.
func (l *Link) newServer() *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP2(true)
	return &http.Server{
		Handler:           l,
		Protocols:         &p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          serverlog.New(l.log), // over TLS, HandshakeLog (Start)
	}
}

// ServerTLS is the TLS of the incoming server (nil: plain HTTP, or no Incoming): a reload
// changing only its certificate or key renews it in place (Renew).
func (l *Link) ServerTLS() *tlsopt.Server {
	if l.opts.Incoming == nil {
		return nil
	}
	return l.opts.Incoming.TLS
}

// Addr is the address the server listens on, or nil without Incoming or before Start.
func (l *Link) Addr() net.Addr {
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// MaxHold is the max hold time the link uses now: Options.CurrentMaxHold's value, or
// DefaultMaxHold when that is nil or 0.
func (l *Link) MaxHold() time.Duration {
	if l.holdNow != nil {
		return cmp.Or(l.holdNow(), DefaultMaxHold)
	}
	return DefaultMaxHold
}

// longestHold is the longest max hold time keepID has used.
func (l *Link) longestHold() time.Duration {
	l.longestMu.Lock()
	defer l.longestMu.Unlock()
	return l.longest
}

// Connected reports whether the link can send: started, not closed, with an outgoing URL.
// HTTP keeps no session, so a peer that is down shows in Send's Rejects (T01), not here.
func (l *Link) Connected() bool {
	return l.sign != nil && l.started.Load() && !l.closed.Load()
}

// Close stops accepting requests and returns once the Prepares being handled are answered:
// a sync Prepare's response is written (Close waits until its expiry at most), an async
// Prepare's reply is delivered or given up (at most until its expiry or replyMinWindow after
// its answer, see runAsync). Cancelling them instead would drop a Fulfill of a packet we
// already paid for downstream. Whatever the expiries, Close cancels what remains after
// MaxHold + closeGrace.
func (l *Link) Close() error { return l.CloseContext(context.Background()) }

// CloseContext is Close that also gives up on what remains once ctx ends: the connector's own
// shutdown deadline, which must not be outlasted by a peer whose callback hangs.
func (l *Link) CloseContext(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		l.asyncMu.Lock()
		l.closed.Store(true)
		l.asyncMu.Unlock()
		// One bound for all: the caller's ctx, and MaxHold + closeGrace at most.
		ctx, cancel := context.WithDeadline(ctx, time.Now().Add(l.MaxHold()+closeGrace))
		defer cancel()
		defer context.AfterFunc(ctx, l.giveUpNow)()
		if l.srv != nil {
			err = l.shutdown(ctx)
		}
		l.wg.Wait()
		if in := l.opts.Incoming; in != nil && in.TLS != nil {
			in.TLS.Flush()
		}
		l.giveUpNow()
		if l.own != nil {
			l.own.CloseIdleConnections()
		}
		// The Request-Ids may outlive the link (Options.RequestIDs): once every id it took has
		// expired, drop them, so that an account removed, or no longer on ILP-over-HTTP,
		// keeps none.
		// The timer holds only what the sweep needs, not the closed link (its server and
		// buffers) for that long.
		expire := cmp.Or(l.idsExpire, l.longestHold()+replyMinWindow)
		seen, now := l.seen, l.now
		time.AfterFunc(expire, func() { seen.sweepAt(now()) })
	})
	return err
}

// shutdown closes the listener and waits for the requests being served, until the latest
// expiry of the sync Prepares served (at least closeGrace, at most ctx's deadline); then it
// closes what remains. Only ctx's deadline bounds the wait, not its cancellation.
func (l *Link) shutdown(ctx context.Context) error {
	limit, _ := ctx.Deadline() // CloseContext's ctx always has one
	deadline := time.Now().Add(closeGrace)
	if until := time.Unix(0, l.syncUntil.Load()); until.After(deadline) {
		deadline = until
	}
	if deadline.After(limit) {
		deadline = limit
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		return l.srv.Close()
	}
	return nil
}

// closeGrace is how long Close waits for requests other than Prepares (replies to our own
// Prepares, health checks) to finish.
const closeGrace = 5 * time.Second

// holdUntil records that a sync Prepare expiring at t is being served, so that Close waits
// for its response.
func (l *Link) holdUntil(t time.Time) {
	ns := t.UnixNano()
	for {
		cur := l.syncUntil.Load()
		if ns <= cur || l.syncUntil.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// self is this connector's address, triggeredBy of the link's Rejects.
func (l *Link) self() ilp.Address { return l.opts.Address() }

// Shared client transports: one per protocol choice for the whole process, so that every
// account reuses kept-alive connections and the pool is bounded once.
var (
	transportOnce sync.Once
	h1Transport   *http.Transport
	h2Transport   *http.Transport
)

func sharedTransport(h2 bool) *http.Transport {
	transportOnce.Do(func() {
		h1Transport, h2Transport = newTransport(false), newTransport(true)
	})
	if h2 {
		return h2Transport
	}
	return h1Transport
}

// idleConnTimeout closes an idle connection to a peer before the peer does. Node's HTTP server
// (ilp-plugin-http, rafiki) closes a keep-alive connection after 5 s idle (keepAliveTimeout);
// a Prepare written to a connection the server is closing just then fails, and the transport
// does not resend a POST, so the packet would be rejected T01 for nothing.
const idleConnTimeout = 4 * time.Second

// newTransport builds a client transport. h2 speaks HTTP/2 only: with prior knowledge on
// http:// (like node's http2.connect) and through ALPN on https://. Otherwise HTTP/1.1 with
// keep-alive, and HTTP/2 when a TLS peer offers it. HTTPS_PROXY, HTTP_PROXY and NO_PROXY are
// honoured as by Go's default transport (and the BTP client).
func newTransport(h2 bool) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    256,
		MaxConnsPerHost:        1024, // beyond this, requests wait for a connection (bounded by the Prepare's expiry)
		IdleConnTimeout:        idleConnTimeout,
		TLSHandshakeTimeout:    10 * time.Second,
		DisableCompression:     true, // ILP packets are binary and small
		MaxResponseHeaderBytes: 64 << 10,
	}
	if h2 {
		var p http.Protocols
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
		t.Protocols = &p
	}
	return t
}
