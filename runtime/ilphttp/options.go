package ilphttp

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// Plugin is the name of the JS plugin this package replaces.
const Plugin = "ilp-plugin-http"

// Defaults of the settings every link shares.
const (
	// DefaultMaxBodySize bounds a POSTed Prepare, as interledger-rs does: the largest Prepare
	// (ilp.MaxPacketSize, 33857 bytes) fits with room to spare.
	DefaultMaxBodySize = 40000
	// maxReplySize bounds a Fulfill or Reject from the peer (a response body, or an async reply
	// POSTed to us). The largest valid Reject does not fit in DefaultMaxBodySize: type (1),
	// length prefix (at most 3, the content being under 64 KiB), code (3), then triggeredBy,
	// message and data, each with a length prefix of at most 3 bytes: 41997 bytes. A peer's
	// valid Reject must pass through, not become our F09.
	maxReplySize = 1 + 3 + 3 + (3 + ilp.MaxAddressSize) + (3 + ilp.MaxMessageSize) + (3 + ilp.MaxDataSize)
	// DefaultJWTExpiry is ilp-plugin-http's jwtExpiry.
	DefaultJWTExpiry = 30 * time.Second
	// DefaultMaxInFlight bounds the Prepares answered asynchronously at once (their handlers run
	// after the 202, outside the HTTP server's own concurrency).
	DefaultMaxInFlight = 8192
	// DefaultMaxHold is the JS connector's default max hold time.
	DefaultMaxHold = 30 * time.Second
)

// Mode is how Prepares and their replies travel.
type Mode string

const (
	// ModeSync: the reply is the body of the HTTP response to the POSTed Prepare. This is what
	// interledger-rs, rafiki, the Java connector and ilp-plugin-http speak.
	ModeSync Mode = "sync"
	// ModeAsync: the current RFC 35. The Prepare is answered with 202 Accepted and its reply is
	// POSTed back to the sender's Callback-Url with the same Request-Id.
	ModeAsync Mode = "async"
)

// Auth is one direction's credentials. A static token is compared (incoming) or sent
// (outgoing) as a bearer token; a JWT secret signs or verifies HS256 JSON web tokens, as
// ilp-plugin-http does with jwtSecret. Incoming accepts either when both are set.
type Auth struct {
	Token     string // staticToken (or the legacy secretToken)
	JWTSecret string // jwtSecret (or the legacy secret)
}

func (a Auth) empty() bool { return a.Token == "" && a.JWTSecret == "" }

// IncomingOptions configure the HTTP server of an account (JS `incoming`).
type IncomingOptions struct {
	Host        string // ilpfleet extension; "" binds every interface like the JS plugin
	Port        int    // 0 picks a free port (see Link.Addr); the JS options require 1-65535
	Auth        Auth
	MaxBodySize int // 0 means DefaultMaxBodySize
	// TLS (`incoming.tls`, an ilpfleet extension, built by runtime/tlsopt) makes the server
	// serve HTTPS (HTTP/2 over ALPN, and HTTP/1.1) with its certificate, and require client
	// certificates when it has client authorities; nil: plain HTTP (and h2c).
	TLS *tlsopt.Server
}

// OutgoingOptions configure the requests to the peer (JS `outgoing`).
type OutgoingOptions struct {
	URL  string // the endpoint every Prepare is POSTed to
	Auth Auth
	// RawAuthorization sends the token without "Bearer ", as ilp-plugin-http does when it is
	// configured with the legacy secret/secretToken (to peer with plugins before 1.6.0).
	RawAuthorization   bool
	JWTExpiry          time.Duration // 0 means DefaultJWTExpiry
	Name               string        // sent in ILP-Peer-Name when set
	SendILPDestination bool          // send the ILP-Destination header
	HTTP2              bool          // HTTP/2 (prior knowledge on http://, ALPN on https://)
	// CallbackURL is where the peer POSTs replies in async mode: this account's own incoming
	// server as the peer reaches it (for example http://connector-a:7769/ilp/callback).
	CallbackURL string
	// TLS configures the TLS of an https:// URL (ilpfleet's `outgoing.tls` option, built by
	// runtime/tlsopt): its authorities, client certificate and server name. nil: the system
	// roots, no client certificate, and the connections pooled with every other account's.
	TLS *tls.Config
}

// Options configure a Link. Incoming, Outgoing or both must be set.
type Options struct {
	Mode     Mode // "" means ModeSync
	Incoming *IncomingOptions
	Outgoing *OutgoingOptions

	// Filled by the connector.
	Account     string             // the account id, named in Rejects and logs
	Address     func() ilp.Address // this connector's address: triggeredBy of the link's Rejects
	Logger      *slog.Logger       // nil: slog.Default(); the link adds the account
	MaxInFlight int                // 0 means DefaultMaxInFlight
	// CurrentMaxHold is the longest the connector holds a packet (CONNECTOR_MAX_HOLD_TIME; nil,
	// or 0, means DefaultMaxHold): Close waits for the Prepares being answered, and their
	// replies, no longer than that plus closeGrace, whatever expiry a peer gave them. It is the
	// connector's max hold time in force, read each time the link needs it (as Address), so
	// that a reload that changes it reaches a running link, whose Close then waits as long as
	// the connector's drain.
	CurrentMaxHold func() time.Duration
	// Transport replaces the shared HTTP client transport (tests, custom TLS roots).
	Transport http.RoundTripper
	// Now is the clock of JWT issue and expiry checks, and of the rate of WARN lines; nil is
	// time.Now.
	Now func() time.Time
	// RequestIDs are the peer's async Request-Ids already taken, shared by the account's links
	// across reconnects; nil: the link keeps its own.
	RequestIDs *RequestIDs
}

// authJSON is the auth part of `incoming` and `outgoing`, with ilp-plugin-http's names.
type authJSON struct {
	StaticToken *string `json:"staticToken"`
	SecretToken *string `json:"secretToken"` // legacy name of staticToken
	JWTSecret   *string `json:"jwtSecret"`
	Secret      *string `json:"secret"` // legacy name of jwtSecret
}

type incomingJSON struct {
	authJSON
	Host *string `json:"host"` // ilpfleet extension
	Port *int    `json:"port"`
	// TLS is an ilpfleet extension: serve HTTPS with this certificate, and require client
	// certificates when it has clientCa (runtime/tlsopt's ServerOptions).
	TLS json.RawMessage `json:"tls"`
}

type outgoingJSON struct {
	authJSON
	URL                        *string `json:"url"`
	JWTExpiry                  *int64  `json:"jwtExpiry"`   // ms
	TokenExpiry                *int64  `json:"tokenExpiry"` // legacy name of jwtExpiry
	HTTP2                      bool    `json:"http2"`
	HTTP2MaxRequestsPerSession *int    `json:"http2MaxRequestsPerSession"` // accepted; Go manages HTTP/2 streams itself
	Name                       *string `json:"name"`
	SendILPDestination         bool    `json:"sendIlpDestination"`
	CallbackURL                *string `json:"callbackUrl"` // ilpfleet extension (async mode)
	// TLS is an ilpfleet extension for https:// URLs: a private CA, a client certificate
	// (mutual TLS, which RFC 35 recommends), the name to check. Read by runtime/tlsopt, whose
	// unknown-key error suggests the nearest key.
	TLS json.RawMessage `json:"tls"`
}

// optionsJSON is the `options` object of an ilp-plugin-http account.
type optionsJSON struct {
	Multi          bool            `json:"multi"`
	MultiDelimiter *string         `json:"multiDelimiter"`
	ILDCP          json.RawMessage `json:"ildcp"` // accepted; JS uses it only in multi mode
	Incoming       *incomingJSON   `json:"incoming"`
	Outgoing       *outgoingJSON   `json:"outgoing"`
	Mode           *string         `json:"mode"` // ilpfleet extension: "sync" (default) or "async"
}

// ParseOptions turns the JS `options` of an ilp-plugin-http account into link options. Unknown
// keys are errors, so that a typo or an option this runtime does not implement is reported
// instead of silently ignored. The connector fills Account, Address and Logger.
func ParseOptions(raw json.RawMessage) (*Options, error) {
	var j optionsJSON
	if err := decodeStrict(raw, &j); err != nil {
		return nil, err
	}
	if j.Multi || j.MultiDelimiter != nil {
		return nil, optErr("multi (multilateral) mode is not supported: configure one account per peer")
	}
	o := &Options{Mode: ModeSync}
	if j.Mode != nil {
		o.Mode = Mode(*j.Mode)
	}
	var err error
	if j.Incoming != nil {
		if o.Incoming, err = parseIncoming(j.Incoming); err != nil {
			return nil, err
		}
	}
	if j.Outgoing != nil {
		if o.Outgoing, err = parseOutgoing(j.Outgoing); err != nil {
			return nil, err
		}
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	return o, nil
}

func decodeStrict(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("ilphttp: %s options: %w", Plugin, err)
	}
	if dec.More() {
		return optErr("data after the JSON object")
	}
	return nil
}

func optErr(format string, args ...any) error {
	return fmt.Errorf("ilphttp: %s options: "+format, append([]any{Plugin}, args...)...)
}

// auth picks the new or the legacy name of each credential; setting both is an error.
func (a authJSON) auth(dir string) (Auth, error) {
	pick := func(newName, oldName string, n, o *string) (string, error) {
		if n != nil && o != nil {
			return "", optErr("set %s.%s or its legacy name %s.%s, not both", dir, newName, dir, oldName)
		}
		if n != nil {
			return *n, nil
		}
		if o != nil {
			return *o, nil
		}
		return "", nil
	}
	tok, err := pick("staticToken", "secretToken", a.StaticToken, a.SecretToken)
	if err != nil {
		return Auth{}, err
	}
	jwt, err := pick("jwtSecret", "secret", a.JWTSecret, a.Secret)
	if err != nil {
		return Auth{}, err
	}
	au := Auth{Token: tok, JWTSecret: jwt}
	if au.empty() {
		return Auth{}, optErr("%s needs staticToken (bearer token) or jwtSecret (JWT), as in ilp-plugin-http", dir)
	}
	return au, nil
}

func parseIncoming(j *incomingJSON) (*IncomingOptions, error) {
	au, err := j.auth("incoming")
	if err != nil {
		return nil, err
	}
	if j.Port == nil || *j.Port < 1 || *j.Port > 65535 {
		return nil, optErr("incoming.port must be set to a port between 1 and 65535")
	}
	in := &IncomingOptions{Port: *j.Port, Auth: au}
	if j.Host != nil {
		in.Host = *j.Host
	}
	if in.TLS, err = tlsopt.LoadServer("incoming.tls", j.TLS); err != nil {
		return nil, optErr("%v", err)
	}
	return in, nil
}

func parseOutgoing(j *outgoingJSON) (*OutgoingOptions, error) {
	au, err := j.auth("outgoing")
	if err != nil {
		return nil, err
	}
	if j.URL == nil {
		return nil, optErr("outgoing.url must be set (the peer's endpoint, e.g. http://peer:7768/accounts/me/ilp)")
	}
	out := &OutgoingOptions{URL: *j.URL, Auth: au, HTTP2: j.HTTP2, SendILPDestination: j.SendILPDestination,
		// ilp-plugin-http 1.6 sends a bare token when configured with the legacy names.
		RawAuthorization: j.Secret != nil || j.SecretToken != nil}
	if j.JWTExpiry != nil && j.TokenExpiry != nil {
		return nil, optErr("set outgoing.jwtExpiry or its legacy name outgoing.tokenExpiry, not both")
	}
	exp := j.JWTExpiry
	if exp == nil {
		exp = j.TokenExpiry
	}
	if exp != nil {
		if *exp < 1000 || *exp > int64(24*time.Hour/time.Millisecond) {
			return nil, optErr("outgoing.jwtExpiry must be between 1000 ms and a day, got %d", *exp)
		}
		out.JWTExpiry = time.Duration(*exp) * time.Millisecond
	}
	if j.Name != nil {
		out.Name = *j.Name
	}
	if j.CallbackURL != nil {
		out.CallbackURL = *j.CallbackURL
	}
	t, err := tlsopt.Decode("outgoing.tls", j.TLS)
	if err != nil {
		return nil, optErr("%v", err)
	}
	if t != nil {
		// Before reading the files and PEM: the URL is the first thing to fix.
		if err := tlsNeedsHTTPS(out.URL); err != nil {
			return nil, err
		}
		if out.TLS, err = t.Config("outgoing.tls"); err != nil {
			return nil, optErr("%v", err)
		}
	}
	return out, nil
}

// tlsNeedsHTTPS refuses outgoing.tls with an http:// outgoing.url (a URL that does not parse,
// or of another scheme, is checkURL's to report).
func tlsNeedsHTTPS(rawURL string) error {
	if u, err := url.Parse(rawURL); err == nil && u.Scheme == "http" {
		return optErr("outgoing.tls applies to https:// URLs only; outgoing.url is http://%s: use https:// or remove outgoing.tls", hostOf(rawURL))
	}
	return nil
}

// check validates options built by hand or parsed.
func (o *Options) check() error {
	if o.Incoming == nil && o.Outgoing == nil {
		return optErr("set incoming ({port, staticToken}) to accept packets, outgoing ({url, staticToken}) to send them, or both")
	}
	switch o.Mode {
	case "", ModeSync:
	case ModeAsync:
		if o.Incoming == nil || o.Outgoing == nil {
			return optErr(`mode "async" needs both incoming (where replies arrive) and outgoing`)
		}
		if o.Outgoing.CallbackURL == "" {
			return optErr(`mode "async" needs outgoing.callbackUrl: the URL of this account's incoming server as the peer reaches it`)
		}
		if err := checkURL("outgoing.callbackUrl", o.Outgoing.CallbackURL); err != nil {
			return err
		}
	default:
		return optErr(`mode must be "sync" or "async", got %q`, o.Mode)
	}
	if in := o.Incoming; in != nil {
		if in.Port < 0 || in.Port > 65535 {
			return optErr("incoming.port %d is not a port", in.Port)
		}
		if in.Auth.empty() {
			return optErr("incoming needs staticToken or jwtSecret")
		}
	}
	if out := o.Outgoing; out != nil {
		if err := checkURL("outgoing.url", out.URL); err != nil {
			return err
		}
		// Async callbacks are compared with this URL's origin, whose host must be ASCII (see
		// originOf).
		if o.Mode == ModeAsync && originOf(out.URL) == "" {
			return optErr(`mode "async" needs the host of outgoing.url in ASCII: write a name such as bücher.example in its punycode form (xn--bcher-kva.example)`)
		}
		if out.Auth.empty() {
			return optErr("outgoing needs staticToken or jwtSecret")
		}
		if out.TLS != nil {
			if err := tlsNeedsHTTPS(out.URL); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkURL(name, s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return optErr("%s %q is not a URL: %v", name, s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return optErr("%s must be an absolute http:// or https:// URL, got %q", name, s)
	}
	if u.User != nil {
		return optErr("%s must not carry credentials in the URL; use staticToken or jwtSecret", name)
	}
	return nil
}

// errNoOptions is returned by New for a nil *Options.
var errNoOptions = errors.New("ilphttp: nil options")
