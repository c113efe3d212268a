package btp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/textcut"
	"github.com/ilpfleet/ilpfleet/runtime/ildcp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// DefaultChildPort is ilp-plugin-mini-accounts' port when neither `port` nor `wsOpts` is set.
const DefaultChildPort = 3000

// ChildServerOptions configure a ChildServer; they mirror ilp-plugin-mini-accounts'
// `{wsOpts: {host, port}, allowedOrigins, generateAccount}` plus what the connector supplies.
//
// How a child is named, as in mini-accounts with the store ilp-connector always gives it (an
// empty auth_token is refused, as there):
//   - no auth_username (or an empty one): base64url(sha256(auth_token)), no padding;
//   - an auth_username: that name, and the first token seen for it becomes its token; another
//     token is refused. The binding (the token's sha256, never the token) lives in Tokens, as
//     mini-accounts keeps `<account>:hashed-token` in the connector's store, so it outlives a
//     restart as the child's balance does. An auth_username shaped like a hashed token
//     (43 base64url characters) is refused unless it is the hash of the token given: it could
//     otherwise claim the account of a child that connected without a username.
//
// GenerateAccount narrows this like the JS option: true allows only the hashed token (an
// auth_username must then equal it), false requires auth_username.
type ChildServerOptions struct {
	Host            string   // wsOpts.host; "" binds every interface like the JS plugin
	Port            int      // wsOpts.port (or JS `port`); 0 picks a free port (see Addr)
	AllowedOrigins  []string // browser Origins allowed to connect (path.Match patterns of their host, see ws.AcceptOptions); others are refused
	GenerateAccount *bool
	AuthTimeout     time.Duration // wait for the auth frame; 0 means DefaultAuthTimeout
	MaxPayload      int           // wsOpts.maxPayload: bound of one message, 1 to MaxFrameSize; 0 means MaxFrameSize
	Path            string        // wsOpts.path: the only request path upgraded (others get 400, as from ws); "" any
	// TLS (`tls`, an ilpfleet extension) makes the server serve wss:// with its certificate,
	// and require client certificates when it has client authorities; nil: ws://.
	TLS *tlsopt.Server
	// Tokens keeps the auth_username bindings; the connector keeps them in its store. nil
	// keeps them in this server's memory only, lost when it is closed.
	Tokens TokenStore

	// AccountAddress is the account's address (<connector address>.<account id or
	// ilpAddressSegment>); children are <AccountAddress>.<child>. Required.
	AccountAddress func() ilp.Address
	AssetCode      string // answered to children over IL-DCP
	AssetScale     uint8
	Common         // Common.Address (triggeredBy) defaults to AccountAddress, as in JS
	// Ignored are JS options given and without effect here, logged when the server is built.
	Ignored []IgnoredOption

	portOption string // see PortOption
}

// PortOption is the option of `options` that set Port, as written there ("port" or
// "wsOpts.port"), and whether one did: without it (or on options not from ParseOptions) the
// server listens on the default of JS `port`, DefaultChildPort.
func (o *ChildServerOptions) PortOption() (path string, written bool) {
	if o.portOption == "" {
		return "port", false
	}
	return o.portOption, true
}

// ChildServer is a BTP link for many children behind one account, like
// ilp-plugin-mini-accounts: the connector sees one account, the server answers IL-DCP
// (peer.config) for each child itself and routes outgoing Prepares to the child whose address
// prefixes the destination. It implements link.Link.
type ChildServer struct {
	opts ChildServerOptions
	core core
	srv  wsServer
	user ilp.Handler

	mu       sync.RWMutex
	children map[string][]*conn  // by child name; the newest connection is last and gets the packets
	tokens   map[string][32]byte // cache of opts.Tokens: a binding, once made, never changes
}

var _ link.Link = (*ChildServer)(nil)

type childKey struct{}

// childInfo rides in the context of every handler call of one child connection, built once
// per connection.
type childInfo struct {
	addr  ilp.Address
	ildcp ilp.Handler
}

// ChildFromContext returns the address of the child that sent the Prepare being handled, when
// the handler was called by a ChildServer.
func ChildFromContext(ctx context.Context) (ilp.Address, bool) {
	ci, ok := ctx.Value(childKey{}).(*childInfo)
	if !ok {
		return "", false
	}
	return ci.addr, true
}

// NewChildServer checks the options; it does not listen (see Start).
func NewChildServer(o ChildServerOptions) (*ChildServer, error) {
	if o.AccountAddress == nil {
		return nil, errors.New("btp: child server needs AccountAddress")
	}
	if o.Port < 0 || o.Port > 65535 {
		return nil, errors.New("btp: wsOpts.port must be between 0 and 65535")
	}
	limit, err := readLimit(o.MaxPayload)
	if err != nil {
		return nil, err
	}
	if err := checkPath(o.Path); err != nil {
		return nil, err
	}
	if o.Tokens == nil {
		o.Tokens = &memoryTokens{m: make(map[string][32]byte)}
	}
	s := &ChildServer{opts: o, children: make(map[string][]*conn), tokens: make(map[string][32]byte)}
	if o.Common.Address == nil {
		o.Common.Address = o.AccountAddress
	}
	s.core.init(o.Common)
	warnIgnored(s.core.Logger, PluginMiniAccounts, o.Ignored)
	s.srv = wsServer{
		core: &s.core, host: o.Host, port: o.Port, origins: o.AllowedOrigins,
		authTimeout: authTimeout(o.AuthTimeout), readLimit: limit, path: o.Path, tls: o.TLS,
		admit: s.admit, attach: s.attach, detach: s.detach, now: time.Now,
	}
	if s.srv.origins == nil {
		s.srv.origins = []string{} // mini-accounts refuses browsers unless their Origin is allowed
	}
	if o.TLS != nil {
		o.TLS.SetLogger(s.core.Logger)
	}
	return s, nil
}

// ServerTLS is the server's TLS (nil: plain ws): a reload changing only its certificate or
// key renews it in place (Renew).
func (s *ChildServer) ServerTLS() *tlsopt.Server { return s.opts.TLS }

// TokenAccount is the child name ilp-plugin-mini-accounts derives from a token:
// base64url(sha256(token)) without padding.
func TokenAccount(token []byte) string {
	sum := sha256.Sum256(token)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func (s *ChildServer) admit(req authRequest) (ilp.Address, error) {
	name, claimed, err := s.childName(req)
	if err != nil {
		return "", err
	}
	acct := s.opts.AccountAddress()
	if acct == "" {
		return "", errors.New("the connector has no ILP address yet")
	}
	addr := acct + "." + ilp.Address(name)
	if err := ilp.ValidateAddress(string(addr)); err != nil {
		return "", fmt.Errorf("account %s does not make a valid ILP address: %v", quotePeer(name), err)
	}
	// Bound only once the name is known to be valid, so no refused name is ever stored.
	if claimed {
		if err := s.checkToken(name, req.token); err != nil {
			return "", err
		}
	}
	return addr, nil
}

// childName applies the account modes of mini-accounts (see ChildServerOptions). claimed says
// that name is an auth_username, whose token checkToken must check.
func (s *ChildServer) childName(req authRequest) (name string, claimed bool, err error) {
	hashed := TokenAccount(req.token)
	gen := s.opts.GenerateAccount
	switch {
	case len(req.token) == 0:
		// As mini-accounts: otherwise every client without credentials would share the one
		// account named by the hash of "", the newest connection taking its packets.
		return "", false, errors.New("auth_token subprotocol is required (empty)")
	case req.username == "" && gen != nil && !*gen:
		return "", false, errors.New("auth_username subprotocol is required")
	case req.username == "" || req.username == hashed:
		return hashed, false, nil
	case gen != nil && *gen:
		return "", false, errors.New("auth_username subprotocol is not available")
	case looksHashed(req.username):
		// Children named by their token's hash are never bound, so the hash shape is what
		// protects them, whatever generateAccount says now (it may have been unset before).
		return "", false, fmt.Errorf("auth_username %s is reserved for the token it is the hash of", quotePeer(req.username))
	}
	if strings.ContainsRune(req.username, '.') {
		return "", false, fmt.Errorf("auth_username %s must be one address segment", quotePeer(req.username))
	}
	return req.username, true, nil
}

// looksHashed reports whether name could be a TokenAccount: 43 base64url characters.
func looksHashed(name string) bool {
	if len(name) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(name)
	return err == nil
}

// logStoreFailure logs that the token store could not check username's token: at ERROR once
// per authLogEvery with the count held back, else at DEBUG — while the store is away, every
// child not seen since the start fails so at each reconnect.
func (s *ChildServer) logStoreFailure(username string, err error) {
	level, n := slog.LevelDebug, 0
	if ok, held := s.srv.authLog.Allow(authStore, s.srv.now()); ok {
		level, n = slog.LevelError, held
	}
	s.core.Logger.Log(s.core.ctx, level, "btp: cannot check a child's token in the store; refusing the child (at most one such ERROR every "+authLogEvery.String()+")",
		"username", textcut.Prefix(username, maxPeerText), "error", err, "suppressed", n)
}

// checkToken binds token to username if it is the first token seen for it (in the cache, else
// in opts.Tokens, which is the truth), and refuses any other token. A store that cannot answer
// refuses the child: without the binding, any token could take the account.
func (s *ChildServer) checkToken(username string, token []byte) error {
	sum := sha256.Sum256(token)
	s.mu.RLock()
	bound, ok := s.tokens[username]
	s.mu.RUnlock()
	if !ok {
		ctx, cancel := context.WithTimeout(s.core.ctx, authTimeout(s.opts.AuthTimeout))
		defer cancel()
		var err error
		if bound, err = s.opts.Tokens.Claim(ctx, username, sum); err != nil {
			s.logStoreFailure(username, err)
			return fmt.Errorf("cannot check the token for account %s now, try again later", quotePeer(username))
		}
		s.mu.Lock()
		s.tokens[username] = bound
		s.mu.Unlock()
	}
	if subtle.ConstantTimeCompare(bound[:], sum[:]) != 1 {
		return fmt.Errorf("incorrect token for account %s", quotePeer(username))
	}
	return nil
}

func (s *ChildServer) attach(cn *conn) {
	name := childName(cn.from)
	ci := &childInfo{addr: cn.from}
	ci.ildcp = ildcp.Handler(func() (ildcp.Info, error) {
		acct := s.opts.AccountAddress()
		if acct == "" {
			return ildcp.Info{}, errors.New("the connector has no ILP address yet")
		}
		return ildcp.Info{Address: acct + "." + ilp.Address(name), AssetScale: s.opts.AssetScale, AssetCode: s.opts.AssetCode}, nil
	}, ildcpOpts(s.core.address())...)
	cn.ctx = context.WithValue(s.core.ctx, childKey{}, ci)
	s.mu.Lock()
	s.children[name] = append(s.children[name], cn)
	s.mu.Unlock()
}

func (s *ChildServer) detach(cn *conn) {
	name := childName(cn.from)
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.children[name]
	for i, c := range list {
		if c == cn {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.children, name)
	} else {
		s.children[name] = list
	}
}

// childName is the last segment of a child address.
func childName(a ilp.Address) string {
	return string(a[strings.LastIndexByte(string(a), '.')+1:])
}

// Start listens and serves the children's Prepares: peer.config is answered here, everything
// else goes to h.
func (s *ChildServer) Start(_ context.Context, h ilp.Handler) error {
	if s.srv.ln != nil {
		return errors.New("btp: child server already started")
	}
	s.user = h
	s.core.handler = s.handle
	return s.srv.listen()
}

func (s *ChildServer) handle(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if p.Destination == ildcp.Destination {
		if ci, ok := ctx.Value(childKey{}).(*childInfo); ok {
			return ci.ildcp(ctx, p)
		}
	}
	if s.user == nil {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, s.core.address(), "link is not started")
	}
	return s.user(ctx, p)
}

// Addr is the address the server listens on, or nil before Start.
func (s *ChildServer) Addr() net.Addr { return s.srv.addr() }

// Children lists the addresses of the connected children.
func (s *ChildServer) Children() []ilp.Address {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ilp.Address, 0, len(s.children))
	for _, list := range s.children {
		out = append(out, list[len(list)-1].from)
	}
	return out
}

// Send routes a Prepare to the child whose address prefixes its destination (segment-wise), or
// answers F02 when there is none.
func (s *ChildServer) Send(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	acct := s.opts.AccountAddress()
	dest := p.Destination
	if acct == "" || len(dest) <= len(acct) || !dest.HasPrefix(acct) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, s.core.address(),
			"destination %s is not under this account's address %s", dest, acct)
	}
	name, _, _ := strings.Cut(string(dest[len(acct)+1:]), ".")
	s.mu.RLock()
	var cn *conn
	if list := s.children[name]; len(list) > 0 {
		cn = list[len(list)-1]
	}
	s.mu.RUnlock()
	if cn == nil {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, s.core.address(), "no child %s.%s is connected", acct, name)
	}
	return cn.sendPrepare(ctx, p)
}

// Connected reports whether at least one child is connected.
func (s *ChildServer) Connected() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.children) > 0
}

// Close stops listening, closes every child's connection and waits for the goroutines.
func (s *ChildServer) Close() error {
	s.srv.close()
	return nil
}

func ildcpOpts(self ilp.Address) []ildcp.HandlerOption {
	if self == "" {
		return nil
	}
	return []ildcp.HandlerOption{ildcp.WithAddress(self)}
}

// TokenStore keeps which token owns each auth_username of one ChildServer.
type TokenStore interface {
	// Claim binds sum (the sha256 of a token) to username unless a hash is bound to it already,
	// and returns the hash bound when it returns: sum if this call made the binding, else the
	// earlier one. The first claim must win: the binding is durable, and seen by every server
	// sharing the storage, before Claim returns it.
	Claim(ctx context.Context, username string, sum [32]byte) ([32]byte, error)
}

// memoryTokens is the TokenStore of a ChildServer given none.
type memoryTokens struct {
	mu sync.Mutex
	m  map[string][32]byte
}

func (t *memoryTokens) Claim(_ context.Context, username string, sum [32]byte) ([32]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if bound, ok := t.m[username]; ok {
		return bound, nil
	}
	t.m[username] = sum
	return sum, nil
}
