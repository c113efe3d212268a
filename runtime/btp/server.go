package btp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/serverlog"
	"github.com/ilpfleet/ilpfleet/internal/textcut"
	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
	"github.com/ilpfleet/ilpfleet/runtime/btp/internal/ws"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// Listener addresses: the JS plugins listen on every interface (ws.Server with only a port), and
// a connector in a pod must too, behind its Service. So an empty Host means every interface,
// as in JS; tests and single-host setups pass "127.0.0.1".

// authRequest is the first frame of a connection once checked: RFC 23 wants a Message whose
// primary entry is `auth`, with an `auth_token` entry (possibly empty: admit decides).
type authRequest struct {
	id       uint32
	token    []byte
	username string // "" when absent or empty, as ilp-plugin-mini-accounts treats it
}

// checkAuth reads the auth request out of a first frame; its error says why the frame is not
// one, and goes back to the peer in an F00 Error.
func checkAuth(f *Frame) (authRequest, error) {
	req := authRequest{id: f.RequestID}
	if f.Type != TypeMessage {
		return req, fmt.Errorf("first frame must be an auth Message, got type %d", f.Type)
	}
	if f.Primary() != ProtocolAuth {
		return req, fmt.Errorf("first sub-protocol must be auth, got %s", quotePeer(f.Primary()))
	}
	tok := f.Protocol(ProtocolAuthToken)
	if tok == nil {
		return req, errors.New("auth_token sub-protocol is required")
	}
	req.token = tok.Data
	if u := f.Protocol(ProtocolAuthUsername); u != nil {
		req.username = string(u.Data)
	}
	return req, nil
}

// maxPeerText bounds what of a string the peer chose (a username, a sub-protocol name) goes
// into an auth error: the error is logged and sent back, and whoever can reach a listener
// chooses the string, up to a whole frame.
const maxPeerText = 64

// quotePeer quotes s for an error message, cut to maxPeerText bytes between characters and
// then saying how long it was.
func quotePeer(s string) string {
	if len(s) <= maxPeerText {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q… (%d bytes)", textcut.Prefix(s, maxPeerText), len(s))
}

// authLogEvery is the least time between two lines of one kind about connections that failed
// to authenticate (INFO; ERROR for a token store that does not answer): anyone who can reach a
// listener can fail as often as it likes. The lines held back go to DEBUG, and the next line
// of the kind counts them.
const authLogEvery = 10 * time.Second

// The kinds of failed authentication, limited each on its own so that a flood of one does not
// hide another: a client that speaks no BTP, one that does and is refused (a peer with a wrong
// secret, say), and a child refused because the token store did not answer (also counted as
// refused, by the line every refusal gets).
const (
	authUnreadable = "unreadable" // no readable frame before the auth timeout
	authRefused    = "refused"    // a frame, and no acceptable auth request in it
	authStore      = "store"      // the child server's token store did not answer (ERROR)
)

// tokenEqual compares secrets in constant time. Hashing first hides the length of the secret,
// which subtle.ConstantTimeCompare alone would leak.
func tokenEqual(got []byte, want string) bool {
	a, b := sha256.Sum256(got), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// wsServer is the WebSocket listener shared by PeerServer and ChildServer: it accepts, reads
// the auth frame within the auth timeout, asks the owner to admit the peer, answers, and serves
// the connection.
type wsServer struct {
	core        *core
	host        string
	port        int
	origins     []string // nil: any Origin (peers authenticate in-band, not with cookies)
	authTimeout time.Duration
	readLimit   int    // bound of one message from the peer (JS wsOpts.maxPayload), ≤ MaxFrameSize
	path        string // the only request path upgraded (JS wsOpts.path); "" any
	// tls, when set, makes the listener serve wss (listener.tls, mini-accounts' tls); nil:
	// plain ws.
	tls *tlsopt.Server
	// admit decides on an auth request: the address of the peer (child) or an error whose text
	// goes to the peer. attach and detach run around the life of an admitted connection.
	admit  func(req authRequest) (ilp.Address, error)
	attach func(cn *conn)
	detach func(cn *conn)

	authLog *warnlimit.Limiter // lines about failed authentication; set by listen
	now     func() time.Time   // the auth log's clock: time.Now; tests replace it before Start

	ln  net.Listener
	srv *http.Server

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{}
}

func (s *wsServer) listen() error {
	ln, err := net.Listen("tcp", net.JoinHostPort(s.host, strconv.Itoa(s.port)))
	if err != nil {
		return fmt.Errorf("btp: listen: %w", err)
	}
	s.ln = ln
	s.conns = make(map[*conn]struct{})
	s.authLog = &warnlimit.Limiter{Every: authLogEvery}
	// ReadHeaderTimeout bounds the TLS handshake too (net/http's tlsHandshakeTimeout): a client
	// that opens a connection and never completes it holds nothing past the auth timeout.
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: s.authTimeout, ErrorLog: serverlog.New(s.core.Logger)}
	var served net.Listener = coalescingListener{ln, s.core.PingInterval}
	if s.tls != nil {
		// TLS over the coalescing connection: the records written coalesce as frames did.
		served = tls.NewListener(served, s.tls.Config("http/1.1"))
		s.srv.ErrorLog = s.tls.HandshakeLog("btp+wss://")
	}
	s.core.wg.Add(1)
	go func() {
		defer s.core.wg.Done()
		if err := s.srv.Serve(served); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.core.Logger.Error("btp: listener stopped", "addr", ln.Addr(), "error", err)
		}
	}()
	return nil
}

// enter counts a handler call unless the server is closing.
func (s *wsServer) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.core.wg.Add(1)
	return true
}

func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		http.Error(w, "closing", http.StatusServiceUnavailable)
		return
	}
	defer s.core.wg.Done()
	if !s.pathAllowed(w, r) {
		return
	}
	wc, err := ws.Accept(w, r, ws.AcceptOptions{
		OriginPatterns: s.origins, InsecureSkipVerify: s.origins == nil,
	})
	if err != nil {
		s.core.Logger.Debug("btp: websocket handshake failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	cn, req, kind, err := s.authenticate(wc)
	if err != nil {
		s.logAuthFailure(kind, r.RemoteAddr, err)
		return
	}
	if !s.track(cn) {
		cn.close(errors.New("server closing"), ws.StatusGoingAway, "closing")
		return
	}
	defer s.untrack(cn)
	cn.remote = r.RemoteAddr
	// Attach before answering auth, so that the peer is reachable as soon as it knows it is
	// connected; cn.ready holds back what others send it until the answer is written.
	cn.ready = make(chan struct{})
	s.attach(cn)
	defer s.detach(cn)
	err = cn.writeFrame(cn.ctx, &Frame{Type: TypeResponse, RequestID: req.id})
	close(cn.ready)
	if err != nil {
		cn.close(err, 0, "")
		return
	}
	err = cn.serve()
	s.core.Logger.Debug("btp: connection ended", "remote", r.RemoteAddr, "peer", cn.from, "error", err)
}

// authenticate reads and checks the first frame. Unreadable frames and timeouts close the
// connection without a reply; a readable frame that fails gets an F00 NotAcceptedError first.
// A failure comes with its kind, for the log.
func (s *wsServer) authenticate(wc *ws.Conn) (*conn, authRequest, string, error) {
	ctx, cancel := context.WithTimeout(s.core.ctx, s.authTimeout)
	defer cancel()
	wc.SetReadLimit(s.readLimit)
	msg, err := readWithin(ctx, wc)
	if err != nil {
		_ = wc.CloseNow()
		return nil, authRequest{}, authUnreadable, fmt.Errorf("read auth: %w", err)
	}
	var f Frame
	if err := ParseFrame(msg, &f); err != nil {
		_ = wc.CloseNow()
		return nil, authRequest{}, authUnreadable, err
	}
	req, err := checkAuth(&f)
	var from ilp.Address
	if err == nil {
		from, err = s.admit(req)
	}
	if err != nil {
		cn := newConn(s.core, wc, "", s.readLimit)
		cn.replyError(f.RequestID, "F00", "NotAcceptedError", err.Error())
		cn.close(err, ws.StatusPolicyViolation, "not authenticated")
		return nil, req, authRefused, err
	}
	return newConn(s.core, wc, from, s.readLimit), req, "", nil
}

// logAuthFailure logs a connection that failed to authenticate: at INFO now and then for each
// kind, with the count of those held back since, and at DEBUG otherwise.
func (s *wsServer) logAuthFailure(kind, remote string, err error) {
	if ok, n := s.authLog.Allow(kind, s.now()); ok {
		s.core.Logger.Info("btp: connection not authenticated (at most one such line per kind every "+authLogEvery.String()+"; the others at DEBUG)",
			"remote", remote, "kind", kind, "error", err, "suppressed", n)
		return
	}
	s.core.Logger.Debug("btp: connection not authenticated", "remote", remote, "kind", kind, "error", err)
}

// flushAuthLog logs the counts of failed authentications not counted by an INFO line yet, so
// that a last burst before the server closes is not lost.
// The store kind is counted as it was logged: at ERROR, as children refused because the token
// store could not answer.
func (s *wsServer) flushAuthLog() {
	for _, kind := range []string{authUnreadable, authRefused} {
		if n := s.authLog.Take(kind); n > 0 {
			s.core.Logger.Info("btp: more connections not authenticated since the last line",
				"kind", kind, "suppressed", n)
		}
	}
	if n := s.authLog.Take(authStore); n > 0 {
		s.core.Logger.Error("btp: more children refused since the last line because the token store could not check their token",
			"suppressed", n)
	}
}

// pathAllowed refuses, as ws does when its path option is set, an upgrade request for
// another path with 400; ws compares the raw path, before any ?query, byte for byte. A request
// that is no upgrade is left to ws.Accept, which refuses it as it always does.
func (s *wsServer) pathAllowed(w http.ResponseWriter, r *http.Request) bool {
	if s.path == "" || r.Header.Get("Upgrade") == "" {
		return true
	}
	if p, _, _ := strings.Cut(r.RequestURI, "?"); p == s.path {
		return true
	}
	s.core.Logger.Debug("btp: websocket upgrade for another path refused", "remote", r.RemoteAddr, "path", r.URL.Path, "want", s.path)
	http.Error(w, http.StatusText(http.StatusBadRequest), http.StatusBadRequest)
	return false
}

// readLimit is the read limit for a MaxPayload option: 0 is MaxFrameSize, the most any
// connection reads.
func readLimit(maxPayload int) (int, error) {
	switch {
	case maxPayload == 0:
		return MaxFrameSize, nil
	case maxPayload < 0 || maxPayload > MaxFrameSize:
		return 0, fmt.Errorf("btp: MaxPayload %d must be 0 (MaxFrameSize) or 1 to %d", maxPayload, MaxFrameSize)
	}
	return maxPayload, nil
}

// validPath reports whether a request can have the path p: ws compares the path of the
// request before its ?query, which starts with /.
func validPath(p string) bool { return strings.HasPrefix(p, "/") && !strings.Contains(p, "?") }

// checkPath refuses a Path no request can have.
func checkPath(p string) error {
	if p != "" && !validPath(p) {
		return fmt.Errorf("btp: Path %q must be empty or start with / and have no ?", p)
	}
	return nil
}

func (s *wsServer) track(cn *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[cn] = struct{}{}
	return true
}

func (s *wsServer) untrack(cn *conn) {
	s.mu.Lock()
	delete(s.conns, cn)
	s.mu.Unlock()
}

// addr is where the server listens, or nil before Start.
func (s *wsServer) addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// close stops accepting, ends every connection and waits for the goroutines.
func (s *wsServer) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for cn := range s.conns {
		conns = append(conns, cn)
	}
	s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
	}
	s.core.cancel()
	var wg sync.WaitGroup
	for _, cn := range conns {
		wg.Go(func() { cn.close(errors.New("link closed"), ws.StatusGoingAway, "closing") })
	}
	wg.Wait()
	s.core.wg.Wait()
	if s.authLog != nil {
		s.flushAuthLog()
	}
	if s.tls != nil {
		s.tls.Flush()
	}
}

func authTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultAuthTimeout
	}
	return d
}

// readWithin reads one message before ctx ends; at ctx's end it closes the connection, which
// is what unblocks the read.
func readWithin(ctx context.Context, wc *ws.Conn) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { _ = wc.CloseNow() })
	_, msg, err := wc.Read(nil)
	if !stop() { // ctx ended: the connection is closed, whatever the read returned
		return nil, fmt.Errorf("%w (%v)", context.Cause(ctx), err)
	}
	return msg, err
}
