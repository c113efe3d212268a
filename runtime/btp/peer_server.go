package btp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
	"github.com/ilpfleet/ilpfleet/runtime/btp/internal/ws"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// PeerServerOptions configure a PeerServer; they mirror ilp-plugin-btp's
// `listener: {port, secret}`.
type PeerServerOptions struct {
	Host   string // interface to bind; "" binds every interface like the JS plugin
	Port   int    // JS listener.port; 0 picks a free port (see Addr)
	Secret string // JS listener.secret: the auth_token the peer must send
	// AuthTimeout bounds the wait for the first (auth) frame; 0 means DefaultAuthTimeout.
	AuthTimeout time.Duration
	// MaxPayload (JS wsOpts.maxPayload) bounds one message from the peer, 1 to MaxFrameSize;
	// 0 means MaxFrameSize. A larger message closes the connection with status 1009.
	MaxPayload int
	// Path (JS wsOpts.path), when set, is the only request path upgraded; others get 400,
	// as from ws. "" accepts any path, as in JS.
	Path string
	// TLS (listener.tls, an ilpfleet extension) makes the listener serve wss:// with its
	// certificate, and require client certificates when it has client authorities; nil: ws://.
	TLS *tlsopt.Server
	Common
	// Ignored are JS options given and without effect here, logged when the server is built.
	Ignored []IgnoredOption

	portOption string // see PortOption
}

// PortOption is the option of `options` that set Port, as written there ("listener.port" or
// "listener.wsOpts.port"), and whether one did: ParseOptions sets it, options built otherwise
// have none.
func (o *PeerServerOptions) PortOption() (path string, written bool) {
	return o.portOption, o.portOption != ""
}

// PeerServer is a BTP link that listens for the one peer of an account. The peer must send the
// secret as auth_token (auth_username is ignored, as in ilp-plugin-btp); a newer authenticated
// connection replaces the older one. It implements link.Link.
type PeerServer struct {
	opts     PeerServerOptions
	core     core
	srv      wsServer
	cur      atomic.Pointer[conn]
	replaced replaceWarner
}

// replaceWarnEvery is the least time between two warnings that a connection replaced
// another: two peers with one secret replace each other many times a second.
const replaceWarnEvery = 10 * time.Second

// replaceWarner warns that an authenticated connection replaced another, at most once per
// replaceWarnEvery, counting the replacements it kept quiet about: the next warning gives the
// count, or flush when the PeerServer closes. Each PeerServer serves one account, so this is
// per account.
type replaceWarner struct {
	now func() time.Time // time.Now; tests replace it
	lim warnlimit.Limiter
}

func newReplaceWarner(now func() time.Time) replaceWarner {
	return replaceWarner{now: now, lim: warnlimit.Limiter{Every: replaceWarnEvery}}
}

// replaceKind is the one kind of line replaceWarner limits.
const replaceKind = "replaced"

func (w *replaceWarner) replaced(log *slog.Logger, oldRemote, newRemote string) {
	ok, n := w.lim.Allow(replaceKind, w.now())
	if !ok {
		return
	}
	// WARN, not DEBUG: each replacement loses the answers due on the old connection, and two
	// clients sharing credentials replace each other forever.
	log.Warn("btp: an authenticated connection replaced the account's previous one; if this repeats, two peers use the same credentials",
		"old_remote", oldRemote, "new_remote", newRemote, "suppressed", n)
}

// flush logs the replacements not logged yet, if any, so that the count of a last burst is not
// lost when the server closes.
func (w *replaceWarner) flush(log *slog.Logger) {
	if n := w.lim.Take(replaceKind); n > 0 {
		log.Warn("btp: more authenticated connections replaced the account's previous one since the last warning; if this repeats, two peers use the same credentials",
			"suppressed", n)
	}
}

var _ link.Link = (*PeerServer)(nil)

// NewPeerServer checks the options; it does not listen (see Start).
func NewPeerServer(o PeerServerOptions) (*PeerServer, error) {
	if o.Port < 0 || o.Port > 65535 {
		return nil, errors.New("btp: listener port must be between 0 and 65535")
	}
	limit, err := readLimit(o.MaxPayload)
	if err != nil {
		return nil, err
	}
	if err := checkPath(o.Path); err != nil {
		return nil, err
	}
	s := &PeerServer{opts: o, replaced: newReplaceWarner(time.Now)}
	s.core.init(o.Common)
	warnIgnored(s.core.Logger, PluginBTP, o.Ignored)
	s.srv = wsServer{
		core: &s.core, host: o.Host, port: o.Port, authTimeout: authTimeout(o.AuthTimeout),
		readLimit: limit, path: o.Path, tls: o.TLS,
		admit: s.admit, attach: s.attach, detach: s.detach, now: time.Now,
	}
	if o.TLS != nil {
		o.TLS.SetLogger(s.core.Logger)
	}
	return s, nil
}

// ServerTLS is the listener's TLS (nil: plain ws): a reload changing only its certificate or
// key renews it in place (Renew).
func (s *PeerServer) ServerTLS() *tlsopt.Server { return s.opts.TLS }

func (s *PeerServer) admit(req authRequest) (ilp.Address, error) {
	if !tokenEqual(req.token, s.opts.Secret) {
		return "", errors.New("invalid auth_token")
	}
	return "", nil
}

func (s *PeerServer) attach(cn *conn) {
	if old := s.cur.Swap(cn); old != nil {
		s.replaced.replaced(s.core.Logger, old.remote, cn.remote)
		old.close(errors.New("replaced by a newer connection"), ws.StatusPolicyViolation,
			"replaced by a newer authenticated connection")
	}
}

func (s *PeerServer) detach(cn *conn) { s.cur.CompareAndSwap(cn, nil) }

// Start listens and serves the peer's Prepares with h. It returns once listening; the peer
// connects whenever it likes.
func (s *PeerServer) Start(_ context.Context, h ilp.Handler) error {
	if s.srv.ln != nil {
		return errors.New("btp: peer server already started")
	}
	s.core.handler = h
	return s.srv.listen()
}

// Addr is the address the server listens on, or nil before Start.
func (s *PeerServer) Addr() net.Addr { return s.srv.addr() }

// Send forwards a Prepare to the connected peer.
func (s *PeerServer) Send(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	cn := s.cur.Load()
	if cn == nil {
		return nil, link.ErrNotConnected
	}
	return cn.sendPrepare(ctx, p)
}

// Connected reports whether the peer is connected and authenticated.
func (s *PeerServer) Connected() bool { return s.cur.Load() != nil }

// Close stops listening, closes the peer's connection and waits for the goroutines; then it
// logs the replacements that no warning has counted yet.
func (s *PeerServer) Close() error {
	s.srv.close()
	s.replaced.flush(s.core.Logger)
	return nil
}
