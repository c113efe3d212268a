package tlsopt

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/serverlog"
	"github.com/ilpfleet/ilpfleet/internal/textcut"
	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
)

// ServerOptions is the `tls` object of a link that listens — ilp-plugin-btp's `listener.tls`,
// ilp-plugin-mini-accounts' `tls`, ilp-plugin-http's `incoming.tls` — an ilpfleet extension:
// the server's certificate and key, and optionally the authorities client certificates must
// chain to (mutual TLS).
type ServerOptions struct {
	// Cert is the PEM certificate chain the server presents (leaf first). Cert or CertFile is
	// required.
	Cert *string `json:"cert"`
	// CertFile is a path to such a file, re-read when it changes (see Server).
	CertFile *string `json:"certFile"`
	// Key is the PEM private key of Cert: PKCS#1, PKCS#8 or EC, unencrypted. Key or KeyFile is
	// required.
	Key *string `json:"key"`
	// KeyFile is a path to such a file.
	KeyFile *string `json:"keyFile"`
	// ClientCA is PEM text of one or more CERTIFICATE blocks: when set, every client must
	// present a certificate chaining to one of them, else the handshake fails.
	ClientCA *string `json:"clientCa"`
	// ClientCAFile is a path to such a file.
	ClientCAFile *string `json:"clientCaFile"`
	// ClientNames, when set, are the clients accepted among those whose certificate chains to
	// the client CA: the certificate must carry one of them as a DNS name (case-insensitive),
	// URI (exact: a SPIFFE ID) or email address of its subject alternative names, or as its
	// subject Common Name (exact). It ties the port to its peer when peers share a CA. It needs
	// ClientCA or ClientCAFile; at most maxClientNames, none empty.
	ClientNames []string `json:"clientNames"`
}

// maxClientNames bounds clientNames: a port serves one peer (or the children of one
// operator), not a directory.
const maxClientNames = 64

// serverKeys are the keys of the server tls object, in the order errors list them.
var serverKeys = jsonKeys[ServerOptions]()

// DecodeServer reads the server tls object raw strictly, as Decode reads the dialing one.
// null (or nothing) is no object: nil, nil. at is where raw was found ("listener.tls").
func DecodeServer(at string, raw json.RawMessage) (*ServerOptions, error) {
	return decodeStrict[ServerOptions](at, raw, serverKeys)
}

// LoadServer reads the server tls object raw strictly (DecodeServer) and loads its material
// (NewServer): what a listening link's options hold. nil, nil when raw is absent or null. at
// is where raw was found ("listener.tls").
func LoadServer(at string, raw json.RawMessage) (*Server, error) {
	o, err := DecodeServer(at, raw)
	if err != nil || o == nil {
		return nil, err
	}
	return o.NewServer(at)
}

// DefaultCheckEvery is the least time between two reads of a Server's files.
const DefaultCheckEvery = 10 * time.Second

// reloadLogEvery is the least time between two ERROR lines about files that cannot be used,
// and between two about a certificate in force that is out of date.
const reloadLogEvery = time.Minute

// handshakeLogEvery is the least time between two lines of one kind about failed handshakes:
// anyone who can reach the port can fail as often as it likes.
const handshakeLogEvery = 10 * time.Second

// Server is the TLS of one listening link: its certificate, key and client authorities,
// swapped atomically. Config is the listener's tls.Config: every new handshake reads the
// material in force then (GetConfigForClient), so Renew and a rotated file reach new
// connections while the open ones go on untouched.
//
// Files (certFile, keyFile, clientCaFile) are read again when a handshake comes at least
// CheckEvery after the previous read, all three together (a rotation that swaps the certificate
// and its key is read as one); no goroutine watches them. New content that cannot be used (a
// certificate and a key that do not match yet, bad PEM) keeps the previous material, with a
// rate-limited ERROR naming the file; usable content is put in force with an INFO line.
type Server struct {
	at string
	// CheckEvery is the least time between two reads of the files; 0 is DefaultCheckEvery.
	// Tests shorten it. Set it before the first handshake.
	CheckEvery time.Duration
	// Now is the clock of CheckEvery, of validity checks and of the log's rate; nil: time.Now.
	Now func() time.Time

	cur  atomic.Pointer[material]
	logp atomic.Pointer[slog.Logger]

	checkMu   sync.Mutex // one reader of the files at a time, and Renew against it
	nextCheck atomic.Int64
	fileLog   warnlimit.Limiter
	shakeLog  warnlimit.Limiter
	// certLog rates the ERROR about a certificate in force that is not valid now, checked on
	// every handshake: one that expires while the link runs is reported, at most once per
	// reloadLogEvery.
	certLog warnlimit.Limiter
}

// material is one version of a Server's options, what its files held, and the config built
// from them.
type material struct {
	opts  ServerOptions
	files [3][]byte // the content of certFile, keyFile and clientCaFile, as read (nil: inline)
	leaf  *x509.Certificate
	cfg   *tls.Config // without NextProtos, which Config's caller gives
}

// validity is what is wrong with leaf's dates at now, "" when nothing. A certificate out of
// date is served all the same, with an ERROR (Server.reportValidity): refusing it would leave
// the port down.
func validity(leaf *x509.Certificate, now time.Time) string {
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Sprintf("the server's certificate %q expired at %s: clients refuse it; renew it", leaf.Subject.String(), leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Sprintf("the server's certificate %q is not valid before %s: clients refuse it until then (or this host's clock is wrong)", leaf.Subject.String(), leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return ""
}

// reportValidity logs at ERROR what is wrong with the dates of m's certificate now, if
// anything: at once when fresh (m was just put in force), else at most once per
// reloadLogEvery (on handshakes).
func (s *Server) reportValidity(m *material, fresh bool) {
	now := s.now()
	v := validity(m.leaf, now)
	if v == "" {
		return
	}
	if fresh {
		s.certLog.Forget("validity")
	}
	if ok, n := s.certLog.Allow("validity", now); ok {
		s.logger().Error("tls: "+v, "option", s.at+"."+pick(m.opts.Cert, "cert", "certFile"), "suppressed", n)
	}
}

// NewServer checks o and reads its PEM text and files: the server's material, which a
// listener then serves with Server.Config. at is where o was found ("listener.tls"), for
// messages; errors name the option (listener.tls.keyFile) and never hold PEM text or key
// material.
func (o *ServerOptions) NewServer(at string) (*Server, error) {
	s := &Server{at: at, fileLog: warnlimit.Limiter{Every: reloadLogEvery}, shakeLog: warnlimit.Limiter{Every: handshakeLogEvery},
		certLog: warnlimit.Limiter{Every: reloadLogEvery}}
	m, err := o.load(at, nil, s.now())
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	return s, nil
}

func (s *Server) now() time.Time {
	if s == nil || s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// Leaf is the certificate the server presents now.
func (s *Server) Leaf() *x509.Certificate { return s.cur.Load().leaf }

// SetLogger is where the server logs: a certificate that is not valid now (ERROR, at once and
// then on handshakes at most once a minute), the files it reads again, failed handshakes. The
// link calls it when it is built.
func (s *Server) SetLogger(l *slog.Logger) {
	s.logp.Store(l)
	s.reportValidity(s.cur.Load(), true)
}

func (s *Server) logger() *slog.Logger {
	if l := s.logp.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// Renew puts the material of next (the same link's tls option in a new config, checked by
// NewServer) in force for the new handshakes; open connections are untouched. The connector
// renews a new certificate or key this way; a new client CA or clientNames reconnects the link
// instead (config.AccountChange.RenewTLS), so that it holds for the connected peers too.
func (s *Server) Renew(next *Server) {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	s.nextCheck.Store(s.now().Add(s.checkEvery()).UnixNano())
	s.putInForce(next.cur.Load(), "tls: new certificate in force for new connections (open ones go on)")
}

// putInForce makes m the material of new handshakes and says so: msg at INFO with the
// certificate's subject, serial and NotAfter, and an ERROR at once if it is out of date.
// checkMu is held.
func (s *Server) putInForce(m *material, msg string) {
	s.cur.Store(m)
	s.logger().Info(msg, "option", s.at,
		"subject", m.leaf.Subject.String(), "serial", m.leaf.SerialNumber.String(), "not_after", m.leaf.NotAfter)
	s.reportValidity(m, true)
}

func (s *Server) checkEvery() time.Duration {
	if s.CheckEvery > 0 {
		return s.CheckEvery
	}
	return DefaultCheckEvery
}

// Config is the listener's TLS config, offering nextProtos over ALPN: every handshake gets
// the material in force (reading the files again when due), and checks its certificate's
// dates (reportValidity: a certificate that expired while the link runs is logged).
func (s *Server) Config(nextProtos ...string) *tls.Config {
	protos := append([]string(nil), nextProtos...)
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s.maybeReload()
			m := s.cur.Load()
			s.reportValidity(m, false)
			cfg := m.cfg.Clone()
			cfg.NextProtos = protos
			return cfg, nil
		},
	}
}

// maybeReload reads the files again when CheckEvery has passed since the last read, unless
// another handshake is at it.
func (s *Server) maybeReload() {
	m := s.cur.Load()
	if !m.fromFiles() {
		return
	}
	now := s.now()
	if now.UnixNano() < s.nextCheck.Load() || !s.checkMu.TryLock() {
		return
	}
	defer s.checkMu.Unlock()
	s.nextCheck.Store(now.Add(s.checkEvery()).UnixNano())
	m = s.cur.Load() // Renew may have run meanwhile
	next, err := m.opts.load(s.at, m, now)
	switch {
	case err != nil:
		if ok, n := s.fileLog.Allow("file", now); ok {
			s.logger().Error("tls: a file changed and cannot be used; the previous certificate stays in force",
				"error", err, "suppressed", n)
		}
	case next != m:
		s.putInForce(next, "tls: files changed; the new certificate is in force for new connections")
	}
}

// load checks o, reads its PEM text and files, and builds the material. prev, when set, is the
// material in force: if the files hold what they held then, load returns prev itself.
func (o *ServerOptions) load(at string, prev *material, now time.Time) (*material, error) {
	switch {
	case o.Cert != nil && o.CertFile != nil:
		return nil, fmt.Errorf("%s: set cert or certFile, not both", at)
	case o.Key != nil && o.KeyFile != nil:
		return nil, fmt.Errorf("%s: set key or keyFile, not both", at)
	case o.ClientCA != nil && o.ClientCAFile != nil:
		return nil, fmt.Errorf("%s: set clientCa or clientCaFile, not both", at)
	case o.Cert == nil && o.CertFile == nil:
		return nil, fmt.Errorf("%s needs the server's certificate: set %s.cert (PEM chain, leaf first) or %s.certFile", at, at, at)
	case o.Key == nil && o.KeyFile == nil:
		return nil, fmt.Errorf("%s needs the certificate's private key: set %s.key (PEM) or %s.keyFile", at, at, at)
	}
	if err := CheckClientNames(at, o.ClientNames, o.ClientCA != nil || o.ClientCAFile != nil); err != nil {
		return nil, err
	}
	m := &material{opts: *o}
	certPEM, err := pemOption(at, "cert", o.Cert, "certFile", o.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := pemOption(at, "key", o.Key, "keyFile", o.KeyFile)
	if err != nil {
		return nil, err
	}
	var caPEM *pemData
	if o.ClientCA != nil || o.ClientCAFile != nil {
		if caPEM, err = pemOption(at, "clientCa", o.ClientCA, "clientCaFile", o.ClientCAFile); err != nil {
			return nil, err
		}
	}
	for i, p := range []*pemData{certPEM, keyPEM, caPEM} {
		if p != nil && strings.HasSuffix(p.name, "File") {
			m.files[i] = p.data
		}
	}
	if prev != nil && sameFiles(prev.files, m.files) {
		return prev, nil
	}
	cert, err := keyPair(certPEM, keyPEM, at+"."+certPEM.name, at+"."+keyPEM.name, " (the key goes in key or keyFile)")
	if err != nil {
		return nil, err
	}
	m.leaf = cert.Leaf
	m.cfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
	if caPEM != nil {
		pool, err := certPool(at, caPEM)
		if err != nil {
			return nil, err
		}
		caOption := at + "." + caPEM.name
		// As tls.RequireAndVerifyClientCert, with the same check (the client's chain to pool,
		// for client authentication), done here so that a refusal can name the certificate's
		// issuer in the log (handshakeLog); it runs on resumed sessions too, with the
		// authorities in force then. ClientCAs is what the server's request lists.
		m.cfg.ClientCAs = pool
		m.cfg.ClientAuth = tls.RequireAnyClientCert
		names, namesOption := o.ClientNames, at+".clientNames"
		m.cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyClient(cs, pool, caOption, names, namesOption)
		}
	}
	return m, nil
}

// CheckClientNames refuses the clientNames of the tls object at (hasCA: it sets clientCa or
// clientCaFile) that cannot work: without a client CA (no client certificate is asked for),
// empty (null is unset), too long, or holding an empty name or one with spaces around it,
// which no certificate carries. NewServer makes this check; the Kubernetes source makes it
// too, naming the Account's field, to leave that Account out rather than have the whole
// config refused.
func CheckClientNames(at string, names []string, hasCA bool) error {
	if names == nil {
		return nil
	}
	opt := at + ".clientNames"
	switch {
	case !hasCA:
		return fmt.Errorf("%s needs %s.clientCa or %s.clientCaFile: the names are checked on client certificates, which are asked for only with the authorities they must chain to; set one, or remove %s", opt, at, at, opt)
	case len(names) == 0:
		return fmt.Errorf("%s is empty: list the names a client certificate may carry, or remove it to accept any certificate from the client CA", opt)
	case len(names) > maxClientNames:
		return fmt.Errorf("%s holds %d names, more than %d: give each peer its own listener, or a name its certificates share", opt, len(names), maxClientNames)
	}
	for i, n := range names {
		switch {
		case n == "":
			return fmt.Errorf("%s[%d] is empty: give a DNS name, a URI (spiffe://…), an email address or a Common Name", opt, i)
		case strings.TrimSpace(n) != n:
			return fmt.Errorf("%s[%d] %q has spaces around it, which no certificate's name has: remove them", opt, i, n)
		}
	}
	return nil
}

// fromFiles reports whether some of m was read from a file.
func (m *material) fromFiles() bool {
	return m.files[0] != nil || m.files[1] != nil || m.files[2] != nil
}

func sameFiles(a, b [3][]byte) bool {
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// errNoClientCert is the refusal of a client that presented no certificate.
var errNoClientCert = errors.New("tls: client didn't provide a certificate")

// untrustedClient is the refusal of a client certificate that does not chain to clientCa.
const untrustedClient = "client certificate not accepted by "

// unlistedClient is the refusal of a client certificate that chains to clientCa but carries
// none of clientNames.
const unlistedClient = "client certificate not in "

// verifyClient checks the client's chain against pool as crypto/tls does for
// RequireAndVerifyClientCert, then, when names is set, that the verified leaf carries one of
// them (clientNameMatch).
func verifyClient(cs tls.ConnectionState, pool *x509.CertPool, caOption string, names []string, namesOption string) error {
	if len(cs.PeerCertificates) == 0 {
		return errNoClientCert
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return fmt.Errorf("%s%s: certificate %q issued by %q: %w", untrustedClient, caOption, leaf.Subject.String(), leaf.Issuer.String(), err)
	}
	if len(names) > 0 && !clientNameMatch(leaf, names) {
		return fmt.Errorf("%s%s: certificate %q issued by %q carries %s, none of them listed; add the peer's name to %s if it is meant to connect here",
			unlistedClient, namesOption, leaf.Subject.String(), leaf.Issuer.String(), certNames(leaf), namesOption)
	}
	return nil
}

// clientNameMatch reports whether leaf carries one of names: as a DNS SAN (case-insensitive),
// a URI SAN (the exact string), an email SAN (exact) or its subject Common Name (exact).
func clientNameMatch(leaf *x509.Certificate, names []string) bool {
	for _, n := range names {
		if n == leaf.Subject.CommonName && n != "" {
			return true
		}
		for _, d := range leaf.DNSNames {
			if strings.EqualFold(n, d) {
				return true
			}
		}
		for _, u := range leaf.URIs {
			if n == u.String() {
				return true
			}
		}
		if slices.Contains(leaf.EmailAddresses, n) {
			return true
		}
	}
	return false
}

// maxNamesText bounds the list of a certificate's names in a refusal: a certificate may carry
// thousands, and the line goes to the log.
const maxNamesText = 300

// certNames lists the names of leaf that clientNames can match, for a refusal: "no name"
// when it has none, cut after maxNamesText bytes with the count of the rest.
func certNames(leaf *x509.Certificate) string {
	var all []string
	if leaf.Subject.CommonName != "" {
		all = append(all, "CN="+strconv.Quote(leaf.Subject.CommonName))
	}
	for _, d := range leaf.DNSNames {
		all = append(all, "DNS:"+strconv.Quote(d))
	}
	for _, u := range leaf.URIs {
		all = append(all, "URI:"+strconv.Quote(u.String()))
	}
	for _, e := range leaf.EmailAddresses {
		all = append(all, "email:"+strconv.Quote(e))
	}
	if len(all) == 0 {
		return "no name (no Common Name, DNS, URI or email SAN)"
	}
	var b strings.Builder
	for i, n := range all {
		if i > 0 && b.Len()+len(n) > maxNamesText {
			fmt.Fprintf(&b, " … (%d more)", len(all)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(n) > maxNamesText {
			n = textcut.Prefix(n, maxNamesText) + textcut.Ellipsis
		}
		b.WriteString(n)
	}
	return b.String()
}

// The kinds of failed handshakes, each logged at most once per handshakeLogEvery.
const (
	shakePlain     = "plain"          // the client spoke plain HTTP or WebSocket
	shakeNoCert    = "no-client-cert" // clientCa set, no certificate presented
	shakeUntrusted = "client-cert"    // a certificate not chaining to clientCa
	shakeUnlisted  = "client-name"    // a certificate from clientCa carrying none of clientNames
	shakeOutOfDate = "server-cert"    // the client refused our certificate, which is out of date
	shakeOther     = "other"          // anything else: the client's alert, a timeout, …
)

// HandshakeLog is the ErrorLog for the http.Server of a TLS listener: its lines about failed
// handshakes are classed, logged at WARN at most once per kind every 10 s (the others at DEBUG,
// counted by the next line) with what an operator can do; a connection closed before its hello
// goes to DEBUG; its other lines as on a plain listener (internal/serverlog).
// scheme is what a client must dial ("btp+wss://", "https://"), for the hint.
func (s *Server) HandshakeLog(scheme string) *log.Logger {
	return log.New(handshakeWriter{s: s, scheme: scheme}, "", 0)
}

type handshakeWriter struct {
	s      *Server
	scheme string
}

func (w handshakeWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	const prefix = "http: TLS handshake error from "
	rest, ok := strings.CutPrefix(line, prefix)
	if !ok {
		// As on a plain listener: a handler's panic at ERROR, an Accept error at WARN, the
		// rest, which anyone who completes a handshake can repeat, at DEBUG.
		serverlog.Line(w.s.logger().With("option", w.s.at), line)
		return len(p), nil
	}
	remote, reason, _ := strings.Cut(rest, ": ")
	if reason == "EOF" {
		// Closed before its hello: a TCP health check (a load balancer's, a kubelet's probe),
		// no failed client. At WARN it would be logged every 10 s forever.
		w.s.logger().Debug("tls: connection closed before its TLS hello (a TCP health check?)", "option", w.s.at, "remote", remote)
		return len(p), nil
	}
	kind, hint := w.classify(reason)
	if ok, n := w.s.shakeLog.Allow(kind, w.s.now()); ok {
		w.s.logger().Warn("tls: handshake failed (at most one such line per kind every "+handshakeLogEvery.String()+"; the others at DEBUG)",
			"option", w.s.at, "remote", remote, "kind", kind, "error", reason, "hint", hint, "suppressed", n)
	} else {
		w.s.logger().Debug("tls: handshake failed", "option", w.s.at, "remote", remote, "kind", kind, "error", reason)
	}
	return len(p), nil
}

func (w handshakeWriter) classify(reason string) (kind, hint string) {
	at := w.s.at
	// A client's alert about our certificate ("bad certificate" from Go, "certificate expired"
	// from OpenSSL): when the one in force is out of date, that is why.
	outOfDate := ""
	if strings.Contains(reason, "remote error") && strings.Contains(reason, "certificate") {
		outOfDate = validity(w.s.Leaf(), w.s.now())
	}
	switch {
	case strings.Contains(reason, "client sent an HTTP request to an HTTPS server"):
		return shakePlain, fmt.Sprintf("the client spoke plain HTTP (ws:// or http://) to this TLS port: it must dial %s", w.scheme)
	case strings.Contains(reason, errNoClientCert.Error()):
		return shakeNoCert, fmt.Sprintf("the client presented no certificate and %s.clientCa/clientCaFile requires one: the peer must configure its client certificate (in ilpfleet, cert and key of its dialing tls option)", at)
	case strings.Contains(reason, unlistedClient):
		return shakeUnlisted, fmt.Sprintf("the client's certificate chains to %s.clientCa/clientCaFile but carries none of %s.clientNames (the error lists the names it holds): if this peer is meant to connect on this port, add one of them to %s.clientNames; else it dialed the wrong port or presents another link's certificate", at, at, at)
	case strings.Contains(reason, untrustedClient):
		return shakeUntrusted, fmt.Sprintf("the client's certificate does not chain to %s.clientCa/clientCaFile (the error names its issuer): add that issuer's CA there, or have the peer use a certificate from one listed", at)
	case outOfDate != "":
		return shakeOutOfDate, fmt.Sprintf("%s (%s.cert/certFile)", outOfDate, at)
	case strings.Contains(reason, "unknown certificate authority"), strings.Contains(reason, "bad certificate"), strings.Contains(reason, "certificate unknown"):
		return shakeOther, fmt.Sprintf("the client does not trust this listener's certificate (%s.cert/certFile): give the client the CA that signed it (ilpfleet: the ca of its tls option; Node: NODE_EXTRA_CA_CERTS), or serve a certificate valid for the name it dials", at)
	}
	return shakeOther, "the client broke off the handshake or speaks no TLS the listener accepts (TLS 1.2 at least)"
}

// Flush logs the counts of failed handshakes held back since the last line of their kind,
// so that a last burst is not lost when the listener closes.
func (s *Server) Flush() {
	for _, kind := range []string{shakePlain, shakeNoCert, shakeUntrusted, shakeUnlisted, shakeOutOfDate, shakeOther} {
		if n := s.shakeLog.Take(kind); n > 0 {
			s.logger().Warn("tls: more handshakes failed since the last line", "option", s.at, "kind", kind, "suppressed", n)
		}
	}
}
