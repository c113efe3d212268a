package btp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
	"github.com/ilpfleet/ilpfleet/runtime/btp/internal/ws"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// Reconnect backoff of the Client when ReconnectInterval is not set: exponential from
// 100 ms, capped at 5 s like ilp-plugin-btp's default intervals, each wait drawn in [d/2, d]
// so that many clients of one restarted server do not come back in lockstep.
const (
	backoffBase = 100 * time.Millisecond
	backoffCap  = 5 * time.Second
)

// ClientOptions configure a Client; they mirror ilp-plugin-btp's `server` mode.
type ClientOptions struct {
	// Server is btp+ws://user:token@host:port/path or btp+wss://… (JS `server`). The user part
	// goes in auth_username and the password part in auth_token, exactly as written in the URL
	// (ilp-plugin-btp does not percent-decode them either).
	Server string
	// Account and Token are auth_username and auth_token when Server carries neither (JS
	// `btpAccount`, `btpToken`); setting them beside credentials in Server is an error, as in JS.
	Account, Token string
	// AuthFlags are more entries of the auth frame (JS `btpAuthFlags`); one named like an
	// entry the client sends replaces its value, as JS's Object.assign does.
	AuthFlags []ProtocolData
	// ReconnectInterval is a fixed wait between attempts (JS `reconnectInterval`); 0 uses a
	// capped exponential backoff with jitter.
	ReconnectInterval time.Duration
	// ReconnectIntervals, when set, replaces both (JS `reconnectIntervals`): the n-th wait in a
	// row is ReconnectIntervals[n], the last repeating; the count starts over once
	// ReconnectClearTryTimeout (JS `reconnectClearTryTimeout`, 0 means the JS default 10 s) has
	// passed without a failure or a lost connection.
	ReconnectIntervals       []time.Duration
	ReconnectClearTryTimeout time.Duration
	// Ignored are JS options given and without effect here, logged when the client is built.
	Ignored []IgnoredOption
	// TLS configures the TLS of a btp+wss:// server (ilpfleet's `tls` option, built by
	// runtime/tlsopt): its authorities, client certificate and server name. nil: the system
	// roots, no client certificate. Only with HTTPClient nil.
	TLS *tls.Config
	// HTTPClient, when set, dials the WebSocket instead: a caller's own transport (a proxy, a
	// test's dialer), whose TLS and timeouts are its own, so it excludes TLS, and writes are
	// bounded only by what it sets. nil (what ParseOptions gives, and the connector uses) dials
	// TCP with coalesced writes and a write timeout of PingInterval (coalesce.go), then TLS
	// for btp+wss:// with TLS.
	HTTPClient *http.Client
	Common
}

// Client is a BTP link that dials its peer, authenticates and reconnects when the connection
// drops. It implements link.Link.
type Client struct {
	opts     ClientOptions
	wsURL    string
	username string
	token    string
	core     core
	hc       *http.Client // dials: opts.HTTPClient, or a coalescing one with write timeout PingInterval

	cur     atomic.Pointer[conn]
	events  chan error // result of each connection attempt, latest only
	started atomic.Bool
	once    sync.Once

	sched reconnectSchedule // used by run only
	// failed counts the connection attempts failed in a row, of which retryLog lets a line
	// through now and then (see logRetry); used by run only.
	failed   int
	retryLog warnlimit.Gate
	// now and sleep are the clock of the reconnect loop; tests replace them to follow the
	// schedule without waiting. sleep reports false when ctx ended first.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) bool
}

var _ link.Link = (*Client)(nil)

// NewClient checks the options; it does not connect (see Start).
func NewClient(o ClientOptions) (*Client, error) {
	wsURL, user, token, err := parseServerURL(o.Server)
	if err != nil {
		return nil, err
	}
	if err := credentialsOnce(user, token, o.Account, o.Token, "Account/Token"); err != nil {
		return nil, fmt.Errorf("btp: %w", err)
	}
	if o.TLS != nil {
		if err := tlsNeedsWSS(o.Server); err != nil {
			return nil, fmt.Errorf("btp: %w", err)
		}
		if o.HTTPClient != nil {
			return nil, errors.New("btp: set TLS or HTTPClient, not both")
		}
	}
	if user == "" && token == "" {
		user, token = o.Account, o.Token
	}
	c := &Client{opts: o, wsURL: wsURL, username: user, token: token, events: make(chan error, 1),
		now: time.Now, sleep: sleepCtx, retryLog: warnlimit.Gate{Every: retryLogEvery}}
	c.sched = reconnectSchedule{intervals: o.ReconnectIntervals, clear: o.ReconnectClearTryTimeout}
	c.core.init(o.Common)
	warnIgnored(c.core.Logger, PluginBTP, o.Ignored)
	c.hc = o.HTTPClient
	if c.hc == nil {
		c.hc = newCoalescingHTTPClient(c.core.PingInterval, o.TLS)
	}
	return c, nil
}

// credentialsOnce refuses credentials both in the server URL (user, token) and beside it
// (account, token, in the fields named): as in JS, they come from one or the other. An empty
// account or token is none (JS tests truthiness).
func credentialsOnce(urlUser, urlToken, account, token, fields string) error {
	if (urlUser != "" || urlToken != "") && (account != "" || token != "") {
		return fmt.Errorf("pass the account/token in the server URL or in %s, not both", fields)
	}
	return nil
}

// parseServerURL turns btp+ws://user:token@host/path into ws://host/path and the raw
// credentials.
func parseServerURL(s string) (wsURL, user, token string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", "", fmt.Errorf("btp: server %q is not a URL: %w", redact(s), err)
	}
	if u.Scheme != "btp+ws" && u.Scheme != "btp+wss" {
		return "", "", "", fmt.Errorf("btp: server must start with btp+ws:// or btp+wss://, got %q", redact(s))
	}
	if u.Host == "" {
		return "", "", "", fmt.Errorf("btp: server %q has no host", redact(s))
	}
	// The raw userinfo, as the JS URL class exposes it: between "//" and the last "@" before
	// the path.
	rest := s[len(u.Scheme)+3:]
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, token, _ = strings.Cut(rest[:at], ":")
	}
	u.Scheme = strings.TrimPrefix(u.Scheme, "btp+")
	u.User = nil
	return u.String(), user, token, nil
}

// tlsNeedsWSS refuses the tls option with a btp+ws:// server (a URL that does not parse, or of
// another scheme, is parseServerURL's to report). The one text of that rule, wherever it is
// checked: ParseOptions, CheckTLS, NewClient.
func tlsNeedsWSS(server string) error {
	if u, err := url.Parse(server); err == nil && u.Scheme == "btp+ws" {
		return fmt.Errorf("tls applies to btp+wss:// URLs only; server is %s (a plain WebSocket): use btp+wss:// or remove tls", redact(server))
	}
	return nil
}

// redact hides the token of a BTP URL in error messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if i := strings.LastIndexByte(s, '@'); i >= 0 {
			return "…@" + s[i+1:]
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Start connects and authenticates, serving the peer's Prepares with h. It returns nil once
// the first connection is authenticated; the error of the auth if the server rejects it (BTP
// Error); or ctx's error. In the two error cases the client keeps trying in the background,
// with backoff, until Close: a peer that is down or misconfigured now may be fixed later.
func (c *Client) Start(ctx context.Context, h ilp.Handler) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("btp: client already started")
	}
	c.core.handler = h
	c.core.wg.Add(1)
	go c.run()
	var last error
	for {
		select {
		case err := <-c.events:
			if err == nil {
				return nil
			}
			var be *Error
			if errors.As(err, &be) {
				return err
			}
			last = err
		case <-ctx.Done():
			if last == nil {
				return fmt.Errorf("btp: not connected to %s: %w", redact(c.opts.Server), ctx.Err())
			}
			return fmt.Errorf("btp: not connected to %s: %w (last attempt: %v)", redact(c.opts.Server), ctx.Err(), last)
		}
	}
}

// run keeps one authenticated connection up until Close.
func (c *Client) run() {
	defer c.core.wg.Done()
	for attempt := 0; ; attempt++ { // ends when the core's context does
		cn, err := c.connect(c.core.ctx)
		var up time.Time
		if err == nil {
			up = c.now()
			c.cur.Store(cn)              // before report: Start's caller may Send at once
			if c.core.ctx.Err() != nil { // Close ran between connect and Store
				cn.close(errors.New("link closed"), 0, "")
				return
			}
		}
		c.report(err)
		wasUp := err == nil
		if wasUp {
			c.logConnected()
			err = cn.serve()
			c.cur.CompareAndSwap(cn, nil)
			if c.now().Sub(up) >= stableConnection {
				attempt = 0 // a connection that held: reconnect at once
			}
			// Else lost as soon as made — a peer that drops us, or another client with our
			// credentials replacing us and being replaced in turn: the waits grow as after
			// failed attempts instead of a reconnect every 100 ms.
		}
		if c.core.ctx.Err() != nil {
			return
		}
		wait := c.backoff(attempt)
		c.logRetry(wasUp, err, wait)
		if !c.sleep(c.core.ctx, wait) {
			return
		}
	}
}

// stableConnection is how long a connection must have held for its loss to reset the backoff.
const stableConnection = 10 * time.Second

// retryLogEvery is how often the reconnect loop logs that a peer is still unreachable.
const retryLogEvery = 5 * time.Minute

// logRetry logs why the reconnect loop waits: a lost connection every time (it was up), a
// failed attempt the first time in a row, again when the failure changes (a peer that came up
// but now refuses our credentials must be seen at once), and otherwise once every
// retryLogEvery with the count — an unreachable peer, retried every few seconds, wrote a line
// per attempt for as long as it stayed down.
func (c *Client) logRetry(wasUp bool, err error, wait time.Duration) {
	server := redact(c.opts.Server)
	if wasUp {
		c.core.Logger.Info("btp: connection to peer lost, reconnecting", "server", server, "error", err, "in", wait)
		return
	}
	c.failed++
	if ok, _ := c.retryLog.Pass(failureKind(err), c.now()); !ok {
		return
	}
	args := []any{"server", server, "error", err, "in", wait, "failedAttempts", c.failed}
	if h := tlsopt.Hint(err, "tls", c.opts.TLS); h != "" {
		args = append(args, "hint", h)
	}
	c.core.Logger.Warn("btp: cannot connect to peer, retrying (logged again when the failure changes, else every "+retryLogEvery.String()+")", args...)
}

// failureKind is what makes two failed attempts the same failure for the log. Every network
// failure (refused, reset, closed during the handshake, timed out — one peer down can give
// any of these, attempt after attempt) is one kind; a peer's BTP refusal is told apart by its
// code and name, an invalid certificate by its reason (its text names the current time), a
// TLS alert from the peer (our client certificate refused or missing, which crypto/tls reports
// as a *net.OpError) by its text, and other failures, such as a handshake the peer answers
// with an HTTP error or a certificate of an unknown authority, by their innermost error's text.
func failureKind(err error) string {
	var op *net.OpError
	var be *Error
	var cert x509.CertificateInvalidError
	if alert, ok := tlsopt.RemoteAlert(err); ok {
		return "tls remote error: " + alert
	}
	switch {
	case err == nil, errors.As(err, &op), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ErrTimeout):
		return "network"
	case errors.As(err, &be):
		return "btp " + be.Code + " " + be.Name
	case errors.As(err, &cert):
		return fmt.Sprintf("x509: invalid certificate, reason %d", cert.Reason)
	}
	for inner := errors.Unwrap(err); inner != nil; inner = errors.Unwrap(err) {
		err = inner
	}
	if err.Error() == errServerClosedIdle {
		return "network"
	}
	return err.Error()
}

// errServerClosedIdle is the text of net/http's (unexported) error for a connection the peer
// closed before answering the request: what a peer that closes every connection at once gives
// about one time in three, the others being EOF. It is no error type to match.
const errServerClosedIdle = "http: server closed idle connection"

// logConnected says that a connection came up after failed attempts (logRetry logged them).
func (c *Client) logConnected() {
	if c.failed > 0 {
		c.core.Logger.Info("btp: connected to peer", "server", redact(c.opts.Server), "afterFailedAttempts", c.failed)
		c.failed = 0
		c.retryLog.Reset()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (c *Client) report(err error) {
	select { // keep only the latest result; run is the only sender
	case <-c.events:
	default:
	}
	c.events <- err
}

// backoff is the wait after the attempt-th failure in a row (0 after a lost connection).
func (c *Client) backoff(attempt int) time.Duration {
	if c.sched.intervals != nil {
		return c.sched.next(c.now())
	}
	if c.opts.ReconnectInterval > 0 {
		return c.opts.ReconnectInterval
	}
	d := backoffCap
	if attempt < 16 {
		d = min(backoffCap, backoffBase<<attempt)
	}
	return d/2 + rand.N(d/2+1)
}

// connect dials and authenticates one connection.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.core.ResponseTimeout)
	defer cancel()
	dctx, dialed := withDialed(ctx)
	wc, err := ws.Dial(dctx, c.wsURL, c.hc)
	if err != nil {
		return nil, fmt.Errorf("btp: dial %s: %w", c.wsURL, err)
	}
	// Over plain TCP the WebSocket's writes go straight to the coalescing connection we dialed,
	// so a writer waiting for it can give up at its context's end, as on the server side. Over
	// TLS they go through the TLS layer, which only our connection's write deadline under it
	// bounds; through a caller's HTTPClient, only what that client sets.
	if dialed.conn != nil && strings.HasPrefix(c.wsURL, "ws://") {
		wc.SetCancelWriter(dialed.conn)
	}
	cn := newConn(&c.core, wc, "", MaxFrameSize) // JS's client passes ws no maxPayload: no option to honour
	if err := c.auth(ctx, cn); err != nil {
		cn.close(err, 0, "")
		return nil, err
	}
	return cn, nil
}

// auth sends [auth, auth_username, auth_token] like ilp-plugin-btp and reads the answer before
// the read loop starts.
func (c *Client) auth(ctx context.Context, cn *conn) error {
	f := Frame{Type: TypeMessage, RequestID: rand.Uint32(), Protocols: c.authProtocols()}
	if err := cn.writeFrame(ctx, &f); err != nil {
		return fmt.Errorf("btp: send auth: %w", err)
	}
	msg, err := readWithin(ctx, cn.ws)
	if err != nil {
		return fmt.Errorf("btp: read auth answer: %w", err)
	}
	var ans Frame
	if err := ParseFrame(msg, &ans); err != nil {
		return fmt.Errorf("btp: auth answer: %w", err)
	}
	switch {
	case ans.RequestID != f.RequestID:
		return fmt.Errorf("btp: auth answer has request id %d, want %d", ans.RequestID, f.RequestID)
	case ans.Type == TypeError:
		return fmt.Errorf("btp: %s rejected the auth: %w", redact(c.opts.Server), frameError(&ans))
	case ans.Type != TypeResponse:
		return fmt.Errorf("btp: auth answer has type %d, want a Response", ans.Type)
	}
	return nil
}

// authProtocols are the entries of the auth frame: auth, auth_username, auth_token, then the
// AuthFlags, each replacing the value of an entry of its name as in JS.
func (c *Client) authProtocols() []ProtocolData {
	ps := []ProtocolData{
		{Name: ProtocolAuth, ContentType: ContentOctetStream, Data: []byte{}},
		{Name: ProtocolAuthUsername, ContentType: ContentText, Data: []byte(c.username)},
		{Name: ProtocolAuthToken, ContentType: ContentText, Data: []byte(c.token)},
	}
	for _, f := range c.opts.AuthFlags {
		i := slices.IndexFunc(ps, func(p ProtocolData) bool { return p.Name == f.Name })
		if i < 0 {
			ps = append(ps, f)
		} else {
			ps[i] = f
		}
	}
	return ps
}

// Send forwards a Prepare on the current connection.
func (c *Client) Send(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	cn := c.cur.Load()
	if cn == nil {
		return nil, link.ErrNotConnected
	}
	return cn.sendPrepare(ctx, p)
}

// Connected reports whether an authenticated connection is up.
func (c *Client) Connected() bool { return c.cur.Load() != nil }

// Close ends the connection, stops reconnecting and waits for the link's goroutines, among
// them handlers still running (they see their context cancelled).
func (c *Client) Close() error {
	c.once.Do(func() {
		c.core.cancel()
		if cn := c.cur.Load(); cn != nil {
			cn.close(errors.New("link closed"), ws.StatusGoingAway, "closing")
		}
		c.core.wg.Wait()
	})
	return nil
}
