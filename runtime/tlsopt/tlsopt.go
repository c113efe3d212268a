// Package tlsopt reads the `tls` option of links that dial out — ilp-plugin-btp's client
// (`tls`) and ilp-plugin-http's outgoing requests (`outgoing.tls`) — into a *tls.Config: the
// authorities to trust (a private CA), a client certificate (mutual TLS) and the name to check
// the server's certificate against; and that of links that listen (ServerOptions, server.go)
// into a Server, whose certificate can be renewed while it serves. It is an ilpfleet
// extension: the JS plugins take no TLS options (JS users set NODE_EXTRA_CA_CERTS).
//
// Errors name the option (tls.key, outgoing.tls.caFile, …) and never hold the PEM text or key
// material they were given; a file that cannot be read is named by its path.
package tlsopt

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/ilpfleet/ilpfleet/internal/suggest"
	"github.com/ilpfleet/ilpfleet/internal/textcut"
)

// Options is the `tls` object, with Node's tls option names where Node has one. Every field is
// optional; at most one of each PEM option and its file, and a certificate needs its key.
type Options struct {
	// CA is PEM text of one or more CERTIFICATE blocks: the only authorities trusted to sign
	// the server's certificate (not the system roots). Unset: the system roots.
	CA *string `json:"ca"`
	// CAFile is a path to such a file, read when the link is built.
	CAFile *string `json:"caFile"`
	// Cert is the PEM certificate chain of the client certificate (leaf first).
	Cert *string `json:"cert"`
	// CertFile is a path to such a file.
	CertFile *string `json:"certFile"`
	// Key is the PEM private key of Cert: PKCS#1, PKCS#8 or EC, unencrypted.
	Key *string `json:"key"`
	// KeyFile is a path to such a file.
	KeyFile *string `json:"keyFile"`
	// ServerName is checked against the server's certificate instead of the URL's host, and
	// sent as SNI.
	ServerName *string `json:"servername"`
}

// tlsKeys are the keys of the tls object, in the order errors list them (from Options' tags).
var tlsKeys = jsonKeys[Options]()

// jsonKeys are the json keys of the struct T, in field order.
func jsonKeys[T any]() []string {
	t := reflect.TypeFor[T]()
	out := make([]string, t.NumField())
	for i := range out {
		out[i], _, _ = strings.Cut(t.Field(i).Tag.Get("json"), ",")
	}
	return out
}

// unknownKeyError is a key of a tls object that is not one of its known keys: most likely a
// typo. Its message suggests the nearest known key and lists them all.
type unknownKeyError struct {
	At    string // where the tls object is: "tls", "outgoing.tls", "listener.tls"
	Key   string
	Known []string // the keys of that object
}

func (e *unknownKeyError) Error() string {
	return fmt.Sprintf("unknown option %q%s; known options here: %s", e.At+"."+e.Key, suggest.DidYouMean(e.Key, e.Known), strings.Join(e.Known, ", "))
}

// Decode reads the tls object raw strictly: an unknown key is an *unknownKeyError naming the
// nearest known one. null (or nothing) is no object: nil, nil. at is where raw was found
// ("outgoing.tls"), for messages.
func Decode(at string, raw json.RawMessage) (*Options, error) {
	return decodeStrict[Options](at, raw, tlsKeys)
}

// decodeStrict decodes the object raw into a T whose json keys are known, refusing any other
// key with an *unknownKeyError. null (or nothing) is nil, nil.
func decodeStrict[T any](at string, raw json.RawMessage, known []string) (*T, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s must be an object with %s", at, strings.Join(known, ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(known, k) {
			return nil, &unknownKeyError{At: at, Key: k, Known: known}
		}
	}
	var o T
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		// The decoder's message names the field and the JSON type, never the value.
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	return &o, nil
}

// maxFileSize bounds a file read for a PEM option: a bundle of many CAs fits; a path mistakenly
// naming a huge file does not hold the load (readFile refuses FIFOs and devices).
const maxFileSize = 4 << 20

// Config checks o and builds the client's TLS config: TLS 1.2 at least, o's authorities (or
// the system roots), o's client certificate, always presented when the server asks, and o's
// server name. Files are read now. at is where o was found ("tls", "outgoing.tls"), for
// messages. A nil o gives nil, nil.
func (o *Options) Config(at string) (*tls.Config, error) {
	if o == nil {
		return nil, nil
	}
	// What is set, before reading anything: the fix for a missing key is not in a file.
	switch {
	case o.CA != nil && o.CAFile != nil:
		return nil, fmt.Errorf("%s: set ca or caFile, not both", at)
	case o.Cert != nil && o.CertFile != nil:
		return nil, fmt.Errorf("%s: set cert or certFile, not both", at)
	case o.Key != nil && o.KeyFile != nil:
		return nil, fmt.Errorf("%s: set key or keyFile, not both", at)
	case o.hasClientCert() && o.Key == nil && o.KeyFile == nil:
		return nil, fmt.Errorf("%s.%s is set without a key: set %s.key or %s.keyFile too", at, pick(o.Cert, "cert", "certFile"), at, at)
	case !o.hasClientCert() && (o.Key != nil || o.KeyFile != nil):
		return nil, fmt.Errorf("%s.%s is set without a certificate: set %s.cert or %s.certFile too", at, pick(o.Key, "key", "keyFile"), at, at)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.hasCA() {
		ca, err := pemOption(at, "ca", o.CA, "caFile", o.CAFile)
		if err != nil {
			return nil, err
		}
		if cfg.RootCAs, err = certPool(at, ca); err != nil {
			return nil, err
		}
	}
	if o.hasClientCert() {
		certPEM, err := pemOption(at, "cert", o.Cert, "certFile", o.CertFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := pemOption(at, "key", o.Key, "keyFile", o.KeyFile)
		if err != nil {
			return nil, err
		}
		cert, err := keyPair(certPEM, keyPEM, at+"."+certPEM.name, at+"."+keyPEM.name, " (the key goes in key or keyFile)")
		if err != nil {
			return nil, err
		}
		// Always present the certificate when the server asks for one, as Node does: crypto/tls
		// would send none when the server's list of acceptable CAs does not name its issuer,
		// which leaves the server's refusal as the only clue.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	if o.ServerName != nil {
		switch name := *o.ServerName; {
		case strings.TrimSpace(name) == "":
			return nil, fmt.Errorf("%s.servername is empty: leave it out to check the URL's host, or give the name the server's certificate holds", at)
		case strings.TrimSpace(name) != name:
			// No certificate holds such a name: every handshake would fail on it.
			return nil, fmt.Errorf("%s.servername %q has spaces around it: give the name alone", at, name)
		}
		cfg.ServerName = *o.ServerName
	}
	return cfg, nil
}

// hasClientCert reports whether o presents a client certificate.
func (o *Options) hasClientCert() bool {
	return o != nil && (o.Cert != nil || o.CertFile != nil)
}

// hasCA reports whether o replaces the system roots.
func (o *Options) hasCA() bool {
	return o != nil && (o.CA != nil || o.CAFile != nil)
}

// certPool is the pool of the authorities p holds (ca, clientCa: every CERTIFICATE block, as
// certificates parses them). Its errors name the option at.<p.name>.
func certPool(at string, p *pemData) (*x509.CertPool, error) {
	certs, err := certificates(p, "")
	if err != nil {
		return nil, fmt.Errorf("%s.%s %w", at, p.name, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// pick is inline when the inline option is set, else file.
func pick(text *string, inline, file string) string {
	if text != nil {
		return inline
	}
	return file
}

// pemData is the PEM text of one option and the option it came from ("ca" or "caFile").
type pemData struct {
	name string
	data []byte
}

// pemOption reads the inline option or the file one (Config has checked that one is set).
func pemOption(at, inline string, text *string, file string, path *string) (*pemData, error) {
	switch {
	case text != nil:
		return &pemData{name: inline, data: []byte(*text)}, nil
	case path != nil:
		if *path == "" {
			return nil, fmt.Errorf("%s.%s is empty: give the path of a PEM file", at, file)
		}
		if strings.Contains(*path, "-----BEGIN") || strings.ContainsAny(*path, "\r\n") {
			// PEM text pasted where a path goes: quoting it would put a key in the logs.
			return nil, fmt.Errorf("%s.%s holds PEM text, not a path: put it in %s.%s", at, file, at, inline)
		}
		b, err := readFile(*path)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: cannot read %s: %w", at, file, quotePath(*path), err)
		}
		return &pemData{name: file, data: b}, nil
	}
	return nil, nil
}

// maxPathInMessage bounds the part of a path an error quotes.
const maxPathInMessage = 100

// quotePath is path as an error names it: quoted, cut to maxPathInMessage bytes; a path
// holding control characters is not quoted at all (it is no path anyone meant, and could be
// text that belongs in no log).
func quotePath(path string) string {
	if strings.ContainsFunc(path, unicode.IsControl) {
		return "the file (its path holds control characters)"
	}
	return strconv.Quote(textcut.Cut(path, maxPathInMessage))
}

// readFile reads at most maxFileSize bytes of path. Its errors leave out the path, which the
// caller names.
// Anything but a regular file (a directory, a FIFO, a device) is refused, once opened without
// blocking (openFlags), before any read.
func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, openFlags, 0)
	if err != nil {
		return nil, withoutPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, withoutPath(err)
	}
	switch mode := fi.Mode(); {
	case mode.IsDir():
		return nil, errors.New("is a directory, not a regular file: give the path of a PEM file")
	case !mode.IsRegular():
		return nil, fmt.Errorf("is not a regular file (%s): give the path of a PEM file", fileKind(mode))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, withoutPath(err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d MiB: not a PEM file", maxFileSize>>20)
	}
	return b, nil
}

// fileKind names the type of a file that is not a regular one.
func fileKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// withoutPath is err without the path an *fs.PathError names.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ParseCAs parses a bundle of authorities to trust, PEM text, as the ca option is parsed: every
// CERTIFICATE block must parse (crypto/x509's CertPool.AppendCertsFromPEM skips one that does
// not), at least one must be there, and a private key is refused. Other blocks are skipped.
// Its errors read after the name of what holds the bundle ("key \"ca.crt\" of Secret \"x\""
// holds no PEM CERTIFICATE block) and never quote it.
func ParseCAs(pemText []byte) ([]*x509.Certificate, error) {
	return certificates(&pemData{data: pemText}, "")
}

// ParseKeyPair parses a client certificate chain (leaf first) and its private key, PEM text,
// as the cert and key options are parsed: every CERTIFICATE block of the chain must parse, the
// chain holds no private key, and the key is the leaf's. certName and keyName say where each
// came from; its errors start with one of them ("key \"tls.crt\" of Secret \"x\" holds …")
// and never quote key material.
func ParseKeyPair(certPEM, keyPEM []byte, certName, keyName string) (*tls.Certificate, error) {
	return keyPair(&pemData{data: certPEM}, &pemData{data: keyPEM}, certName, keyName, "")
}

// certificates parses every CERTIFICATE block of p; other blocks are skipped, except a private
// key, which has no place beside certificates (keyHint says where it goes, for a message), and
// a last block without its END line. Its errors read after the option's name.
func certificates(p *pemData, keyHint string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := p.data
	var others []string
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("holds a %s block: it takes certificates only%s", b.Type, keyHint)
			}
			others = append(others, b.Type)
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d (PEM block %d) cannot be parsed: %v", len(out)+1, len(out)+len(others)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("holds no PEM CERTIFICATE block%s", noPEMHint(p, others))
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		// A chain or bundle cut short (a file read while being written): taking the blocks
		// before it would put a chain without its intermediate, or a bundle short of a CA, in
		// force.
		return nil, fmt.Errorf("ends in an incomplete block: PEM block %d is incomplete (no END line)", len(out)+len(others)+1)
	}
	return out, nil
}

// noPEMHint says what was found instead of the block expected, without quoting any of it.
func noPEMHint(p *pemData, others []string) string {
	switch {
	case len(others) > 0:
		return fmt.Sprintf(" (found %s)", strings.Join(others, ", "))
	case len(bytes.TrimSpace(p.data)) == 0:
		return " (it is empty)"
	case !bytes.Contains(p.data, []byte("-----BEGIN")) && p.name != "" && !strings.HasSuffix(p.name, "File"):
		return fmt.Sprintf(" (it is not PEM text: for a path, use %sFile)", p.name)
	case !bytes.Contains(p.data, []byte("-----BEGIN")) && p.name != "":
		return " (the file is not PEM text)"
	case !bytes.Contains(p.data, []byte("-----BEGIN")):
		return " (it is not PEM text)"
	}
	return " (a PEM block is malformed: check its BEGIN and END lines)"
}

// keyPair parses the client certificate chain and its key and checks that they match.
// certName and keyName start its errors; keyHint is certificates'.
func keyPair(certPEM, keyPEM *pemData, certName, keyName, keyHint string) (*tls.Certificate, error) {
	chain, err := certificates(certPEM, keyHint)
	if err != nil {
		return nil, fmt.Errorf("%s %w", certName, err)
	}
	key, err := privateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s %w", keyName, err)
	}
	leaf := chain[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%s and %s do not match: the key is not the one of the certificate %q (the first certificate of %s)",
			certName, keyName, leaf.Subject.String(), certName)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// privateKey reads the first private key block of p. Its errors read after the option's name
// and never hold the key's text or the parser's own message (which could quote bytes).
func privateKey(p *pemData) (crypto.Signer, error) {
	rest := p.data
	var others []string
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] != "" && strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED"):
			return nil, errors.New("is encrypted: give the key unencrypted (for example `openssl pkey -in key.pem -out plain.pem`), and keep it in a Secret or a file only the connector reads")
		case !strings.HasSuffix(b.Type, "PRIVATE KEY"):
			others = append(others, b.Type)
			continue
		}
		k, err := parseKey(b)
		if err != nil {
			return nil, fmt.Errorf("holds a PEM block of type %s that cannot be read as a %s", b.Type, err)
		}
		return k, nil
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("holds no PEM PRIVATE KEY block (found %s)", strings.Join(others, ", "))
	}
	return nil, fmt.Errorf("holds no PEM PRIVATE KEY block%s", noPEMHint(p, nil))
}

// parseKey reads a key block as its type says (PKCS#1 RSA, SEC 1 EC, PKCS#8), and else tries
// each. Its error is what was expected, never the parser's.
func parseKey(b *pem.Block) (crypto.Signer, error) {
	var k any
	var err error
	switch b.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		if k, err = x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
			if k, err = x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
				k, err = x509.ParseECPrivateKey(b.Bytes)
			}
		}
	}
	if err != nil {
		return nil, errors.New("PKCS#1, PKCS#8 or EC private key (is it complete, and not a certificate or a public key?)")
	}
	switch k := k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("private key usable in TLS: it is a %T key; TLS certificates take RSA, ECDSA or Ed25519 keys", k)
}
