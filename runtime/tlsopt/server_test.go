package tlsopt

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testclock"
	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

// TestDecodeServer: the server tls object is read strictly; an unknown key names the nearest
// known one and the object's place.
func TestDecodeServer(t *testing.T) {
	for _, tc := range []struct {
		raw, want string
	}{
		{`{"certfile":"/x"}`, `unknown option "listener.tls.certfile" (did you mean "certFile"?); known options here: cert, certFile, key, keyFile, clientCa, clientCaFile`},
		{`{"clientCA":"x"}`, `unknown option "listener.tls.clientCA" (did you mean "clientCa"?)`},
		{`{"ca":"x"}`, `unknown option "listener.tls.ca"`},
		{`"-----BEGIN CERTIFICATE-----"`, "listener.tls must be an object with cert, certFile"},
		{`{"cert":1}`, "listener.tls: json: cannot unmarshal number"},
	} {
		_, err := DecodeServer("listener.tls", json.RawMessage(tc.raw))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeServer(%s) = %v; want an error containing %q", tc.raw, err, tc.want)
		}
		assertNoSecret(t, err, []byte("-----BEGIN"))
	}
	for _, raw := range []string{``, `null`} {
		if o, err := DecodeServer("tls", json.RawMessage(raw)); o != nil || err != nil {
			t.Errorf("DecodeServer(%q) = %+v, %v; want nil, nil", raw, o, err)
		}
	}
	o, err := DecodeServer("tls", json.RawMessage(`{"cert":"c","keyFile":"/k","clientCaFile":"/ca"}`))
	if err != nil || *o.Cert != "c" || *o.KeyFile != "/k" || *o.ClientCAFile != "/ca" || o.Key != nil {
		t.Errorf("DecodeServer = %+v, %v", o, err)
	}
}

// TestServerErrors: every way a server tls object can be wrong is refused with an error naming
// the option (and the path of a file), never PEM text or key material.
func TestServerErrors(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	srv := ca.Server(t, "127.0.0.1")
	other := ca.Server(t, "127.0.0.1")
	cert, key, caPEM := string(srv.CertPEM), string(srv.KeyPEM), string(ca.PEM)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct {
		name string
		o    ServerOptions
		want string
	}{
		{"nothing", ServerOptions{}, "incoming.tls needs the server's certificate: set incoming.tls.cert (PEM chain, leaf first) or incoming.tls.certFile"},
		{"no key", ServerOptions{Cert: &cert}, "incoming.tls needs the certificate's private key: set incoming.tls.key (PEM) or incoming.tls.keyFile"},
		{"cert twice", ServerOptions{Cert: &cert, CertFile: ptr("/c"), Key: &key}, "incoming.tls: set cert or certFile, not both"},
		{"key twice", ServerOptions{Cert: &cert, Key: &key, KeyFile: ptr("/k")}, "incoming.tls: set key or keyFile, not both"},
		{"clientCa twice", ServerOptions{Cert: &cert, Key: &key, ClientCA: &caPEM, ClientCAFile: ptr("/ca")}, "incoming.tls: set clientCa or clientCaFile, not both"},
		{"mismatch", ServerOptions{Cert: &cert, Key: ptr(string(other.KeyPEM))}, "incoming.tls.cert and incoming.tls.key do not match"},
		{"no certificate", ServerOptions{Cert: ptr("/etc/tls/tls.crt"), Key: &key}, "incoming.tls.cert holds no PEM CERTIFICATE block (it is not PEM text: for a path, use certFile)"},
		{"key in cert", ServerOptions{Cert: &key, Key: &key}, "incoming.tls.cert holds a PRIVATE KEY block: it takes certificates only (the key goes in key or keyFile)"},
		{"no usable key", ServerOptions{Cert: &cert, Key: &cert}, "incoming.tls.key holds no PEM PRIVATE KEY block (found CERTIFICATE)"},
		{"bad clientCa", ServerOptions{Cert: &cert, Key: &key, ClientCA: ptr("")}, "incoming.tls.clientCa holds no PEM CERTIFICATE block (it is empty)"},
		{"unreadable certFile", ServerOptions{CertFile: &missing, Key: &key}, `incoming.tls.certFile: cannot read "` + missing + `": no such file or directory`},
		{"unreadable keyFile", ServerOptions{Cert: &cert, KeyFile: &missing}, `incoming.tls.keyFile: cannot read "` + missing + `"`},
		{"unreadable clientCaFile", ServerOptions{Cert: &cert, Key: &key, ClientCAFile: &missing}, `incoming.tls.clientCaFile: cannot read "` + missing + `"`},
		{"empty keyFile", ServerOptions{Cert: &cert, KeyFile: ptr("")}, "incoming.tls.keyFile is empty: give the path of a PEM file"},
		{"clientNames without clientCa", ServerOptions{Cert: &cert, Key: &key, ClientNames: []string{"peer"}}, "incoming.tls.clientNames needs incoming.tls.clientCa or incoming.tls.clientCaFile"},
		{"clientNames empty", ServerOptions{Cert: &cert, Key: &key, ClientCA: &caPEM, ClientNames: []string{}}, "incoming.tls.clientNames is empty"},
		{"clientNames empty name", ServerOptions{Cert: &cert, Key: &key, ClientCA: &caPEM, ClientNames: []string{"peer", ""}}, "incoming.tls.clientNames[1] is empty"},
		{"clientNames spaces", ServerOptions{Cert: &cert, Key: &key, ClientCA: &caPEM, ClientNames: []string{" peer"}}, `incoming.tls.clientNames[0] " peer" has spaces around it`},
		{"clientNames too many", ServerOptions{Cert: &cert, Key: &key, ClientCA: &caPEM, ClientNames: make65()}, "incoming.tls.clientNames holds 65 names, more than 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.o.NewServer("incoming.tls")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewServer = %v, %v; want an error containing %q", s, err, tc.want)
			}
			assertNoSecret(t, err, srv.CertPEM, srv.KeyPEM, other.KeyPEM, ca.PEM)
		})
	}
}

// tlsHandshake makes one TLS connection from a client with cfg to a listener served by s on
// 127.0.0.1, and returns the certificate the server presented and the server's handshake error.
func tlsHandshake(t *testing.T, s *Server, cfg *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		errc <- tls.Server(c, s.Config("http/1.1")).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, cfg)
	var served *x509.Certificate
	if tc.Handshake() == nil {
		served = tc.ConnectionState().PeerCertificates[0]
	}
	_ = c.Close() // a client that gave up before sending ends the server's handshake now
	return served, <-errc
}

// TestServerClientAuth: with clientCa, a client with a certificate from that CA is accepted;
// none, or one from another CA, fails the handshake, the second naming its issuer. Without
// clientCa no certificate is asked for.
func TestServerClientAuth(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	stranger := testcert.NewCA(t, "stranger CA")
	srv := ca.Server(t, "127.0.0.1")
	o := ServerOptions{Cert: ptr(string(srv.CertPEM)), Key: ptr(string(srv.KeyPEM)), ClientCA: ptr(string(ca.PEM))}
	s, err := o.NewServer("listener.tls")
	if err != nil {
		t.Fatal(err)
	}
	client := func(p *testcert.Pair) *tls.Config {
		c := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
		if p != nil {
			// Always presented, as Node and our dialing tls do (crypto/tls would send none
			// when the server's list of authorities does not name its issuer).
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &p.TLS, nil }
		}
		return c
	}
	for _, tc := range []struct {
		name string
		cert *testcert.Pair
		want string // "" accepted
	}{
		{"trusted client", ca.Client(t, "peer"), ""},
		{"no certificate", nil, "client didn't provide a certificate"},
		{"other CA", stranger.Client(t, "intruder"), `client certificate not accepted by listener.tls.clientCa: certificate "CN=intruder" issued by "CN=stranger CA"`},
		{"server certificate as client", ca.Server(t, "127.0.0.1"), "client certificate not accepted by listener.tls.clientCa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsHandshake(t, s, client(tc.cert))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("handshake: %v; want it accepted", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("handshake error %v; want one containing %q", err, tc.want)
			}
		})
	}
	o.ClientCA = nil
	open, err := o.NewServer("listener.tls")
	if err != nil {
		t.Fatal(err)
	}
	if served, err := tlsHandshake(t, open, client(nil)); err != nil || served.SerialNumber.Cmp(srv.Cert.SerialNumber) != 0 {
		t.Fatalf("without clientCa: %v, %v; want the server certificate and no client certificate needed", served, err)
	}
	// TLS 1.2 at least, in the listener's config and in the one each handshake gets.
	base := open.Config("h2")
	perConn, err := base.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil || base.MinVersion != tls.VersionTLS12 || perConn.MinVersion != tls.VersionTLS12 || perConn.NextProtos[0] != "h2" {
		t.Errorf("configs %v / %v (%v); want MinVersion TLS 1.2 and the listener's ALPN", base.MinVersion, perConn.MinVersion, err)
	}
}

// make65 is a clientNames one name too long.
func make65() []string {
	names := make([]string, 65)
	for i := range names {
		names[i] = "peer" + strconv.Itoa(i)
	}
	return names
}

// TestServerClientNames: with clientNames, a client whose certificate chains to clientCa is
// accepted only if it carries one of the names: as a DNS SAN (any case), a URI SAN (exact), an
// email SAN or its Common Name; else the handshake fails naming the certificate's subject and
// the names it holds, and the option to change. A certificate from another CA carrying a
// listed name is still refused by the chain check.
func TestServerClientNames(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	stranger := testcert.NewCA(t, "stranger CA")
	srv := ca.Server(t, "127.0.0.1")
	o := ServerOptions{Cert: ptr(string(srv.CertPEM)), Key: ptr(string(srv.KeyPEM)), ClientCA: ptr(string(ca.PEM)),
		ClientNames: []string{"alice.peers.example", "spiffe://peers.example/bob", "carol@peers.example", "dave"}}
	s, err := o.NewServer("listener.tls")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert *testcert.Pair
		want []string // nil: accepted; else all in the server's error
	}{
		{"DNS SAN", ca.ClientNamed(t, "", "other.example", "alice.peers.example"), nil},
		{"DNS SAN in other case", ca.ClientNamed(t, "x", "Alice.Peers.Example"), nil},
		{"URI SAN", ca.ClientNamed(t, "", "spiffe://peers.example/bob"), nil},
		{"email SAN", ca.ClientNamed(t, "", "carol@peers.example"), nil},
		{"Common Name", ca.Client(t, "dave"), nil},
		{"another peer of the same CA", ca.ClientNamed(t, "mallory", "mallory.peers.example", "spiffe://peers.example/mallory", "m@peers.example"),
			[]string{`client certificate not in listener.tls.clientNames: certificate "CN=mallory" issued by "CN=peering CA" carries CN="mallory", DNS:"mallory.peers.example", URI:"spiffe://peers.example/mallory", email:"m@peers.example", none of them listed; add the peer's name to listener.tls.clientNames`}},
		{"URI differs in case", ca.ClientNamed(t, "", "spiffe://peers.example/Bob"), []string{`URI:"spiffe://peers.example/Bob", none of them listed`}},
		{"Common Name differs in case", ca.Client(t, "Dave"), []string{`CN="Dave", none of them listed`}},
		{"listed name as a DNS SAN's suffix", ca.ClientNamed(t, "", "x.alice.peers.example"), []string{"none of them listed"}},
		{"no name at all", ca.ClientNamed(t, ""), []string{`certificate "" issued by "CN=peering CA" carries no name`}},
		{"listed name, other CA", stranger.ClientNamed(t, "dave", "alice.peers.example"), []string{`client certificate not accepted by listener.tls.clientCa: certificate "CN=dave" issued by "CN=stranger CA"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1",
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tc.cert.TLS, nil }}
			_, err := tlsHandshake(t, s, cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("handshake: %v; want it accepted", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("handshake accepted; want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("handshake error %v; want one containing %q", err, w)
				}
			}
			assertNoSecret(t, err, tc.cert.KeyPEM, srv.KeyPEM)
		})
	}
}

// TestCertNamesCut: the names a refused certificate holds are listed up to maxNamesText
// bytes, then counted; one name longer than that is cut on a rune's boundary.
func TestCertNamesCut(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	var many []string
	for i := range 100 {
		many = append(many, "peer"+strconv.Itoa(i)+".peers.example")
	}
	got := certNames(ca.ClientNamed(t, "", many...).Cert)
	if !strings.HasPrefix(got, `DNS:"peer0.peers.example", DNS:"peer1.peers.example"`) || !strings.HasSuffix(got, " more)") || len(got) > maxNamesText+40 {
		t.Errorf("certNames = %q (%d bytes); want the first names, cut near %d bytes with a count of the rest", got, len(got), maxNamesText)
	}
	long := certNames(ca.Client(t, "a"+strings.Repeat("é", maxNamesText)).Cert)
	if !utf8.ValidString(long) || !strings.HasSuffix(long, "…") || len(long) > maxNamesText+len("…") {
		t.Errorf("certNames of a long Common Name = %q; want it cut to %d bytes of valid UTF-8", long, maxNamesText)
	}
}

// TestServerValidity: a certificate expired, or not valid yet, is accepted (refusing it would
// leave the port down) and logged at ERROR naming the option and the date.
func TestServerValidity(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	now := time.Now()
	for _, tc := range []struct {
		name     string
		from, to time.Time
		want     string
	}{
		{"expired", now.Add(-48 * time.Hour), now.Add(-time.Hour), "expired at " + now.Add(-time.Hour).UTC().Format(time.RFC3339)},
		{"not yet valid", now.Add(time.Hour), now.Add(48 * time.Hour), "is not valid before " + now.Add(time.Hour).UTC().Format(time.RFC3339)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ca.ServerValid(t, tc.from, tc.to, "127.0.0.1")
			file := testcert.WriteFile(t, "tls.crt", p.CertPEM)
			s, err := (&ServerOptions{CertFile: &file, Key: ptr(string(p.KeyPEM))}).NewServer("tls")
			if err != nil {
				t.Fatalf("NewServer: %v; want the certificate accepted", err)
			}
			var buf testlog.Buffer
			s.SetLogger(slog.New(slog.NewTextHandler(&buf, nil)))
			if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, tc.want) || !strings.Contains(out, "option=tls.certFile") {
				t.Errorf("log %q; want an ERROR with %q naming tls.certFile", out, tc.want)
			}
		})
	}
	var buf testlog.Buffer
	p := ca.Server(t, "127.0.0.1")
	s, err := (&ServerOptions{Cert: ptr(string(p.CertPEM)), Key: ptr(string(p.KeyPEM))}).NewServer("tls")
	if err != nil {
		t.Fatal(err)
	}
	s.SetLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	if buf.String() != "" {
		t.Errorf("a valid certificate logged %q", buf.String())
	}
}

// clockedServer is the Server of o at "listener.tls" on a fake clock, reading its files at most
// every `every`, logging (DEBUG and up) to the returned buffer.
func clockedServer(t *testing.T, o ServerOptions, every time.Duration) (*Server, *testclock.Clock, *testlog.Buffer) {
	t.Helper()
	s, err := o.NewServer("listener.tls")
	if err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(time.Now())
	s.Now, s.CheckEvery = clock.Now, every
	buf := &testlog.Buffer{}
	s.SetLogger(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	return s, clock, buf
}

// TestServerFileRotation: rewritten files are read on the first handshake CheckEvery after the
// last read, the new certificate then served (INFO); a bad new file keeps the previous
// certificate (ERROR naming it); files fixed are read again; Renew swaps at once.
func TestServerFileRotation(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	first, second, third := ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(p *testcert.Pair) {
		t.Helper()
		// As kubelet and certbot do: a new file renamed over the old one.
		for _, f := range []struct {
			path string
			data []byte
		}{{certFile, p.CertPEM}, {keyFile, p.KeyPEM}} {
			if err := os.WriteFile(f.path+".new", f.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(f.path+".new", f.path); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(first)
	s, clock, buf := clockedServer(t, ServerOptions{CertFile: &certFile, KeyFile: &keyFile}, time.Minute)
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	serves := func(want *testcert.Pair, when string) {
		t.Helper()
		got, err := tlsHandshake(t, s, client)
		if err != nil {
			t.Fatalf("%s: handshake: %v", when, err)
		}
		if got.SerialNumber.Cmp(want.Cert.SerialNumber) != 0 {
			t.Fatalf("%s: served certificate serial %v; want %v", when, got.SerialNumber, want.Cert.SerialNumber)
		}
	}
	serves(first, "first handshake") // reads the files (unchanged): the next read is due in a minute
	write(second)
	serves(first, "before CheckEvery")
	clock.Add(time.Minute)
	serves(second, "after CheckEvery")
	if out := buf.String(); strings.Count(out, "files changed; the new certificate is in force") != 1 || !strings.Contains(out, "serial="+second.Cert.SerialNumber.String()) {
		t.Errorf("log %q; want one INFO naming the new serial", out)
	}

	// A certificate without its key yet (a rotation half done): the previous one stays.
	if err := os.WriteFile(certFile, third.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	serves(second, "cert rewritten, key not yet")
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "listener.tls.certFile and listener.tls.keyFile do not match") {
		t.Errorf("log %q; want an ERROR saying the files do not match", out)
	}
	// Garbage: still the previous one, and the ERROR (rate-limited) names the file.
	if err := os.WriteFile(certFile, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	serves(second, "bad cert file")
	clock.Add(time.Minute)
	write(third)
	serves(third, "files fixed")

	// Renew puts another server's material in force at once, whatever the clock.
	p := ca.Server(t, "127.0.0.1")
	next, err := (&ServerOptions{Cert: ptr(string(p.CertPEM)), Key: ptr(string(p.KeyPEM))}).NewServer("listener.tls")
	if err != nil {
		t.Fatal(err)
	}
	s.Renew(next)
	serves(p, "after Renew")
	if s.Leaf().SerialNumber.Cmp(p.Cert.SerialNumber) != 0 {
		t.Error("Leaf is not the renewed certificate")
	}
}

// TestServerHalfWrittenChain: a chain file rewritten in place and read half written (the leaf
// whole, the intermediate cut short) keeps the whole previous chain in force, with an ERROR,
// instead of serving the leaf alone; once written out, the new chain is taken.
func TestServerHalfWrittenChain(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	p := ca.Server(t, "127.0.0.1")
	full := append(append([]byte{}, p.CertPEM...), ca.PEM...)
	certFile := testcert.WriteFile(t, "tls.crt", full)
	s, clock, buf := clockedServer(t, ServerOptions{CertFile: &certFile, Key: ptr(string(p.KeyPEM))}, time.Second)
	chainLen := func() int {
		t.Helper()
		cfg, err := s.Config("http/1.1").GetConfigForClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(cfg.Certificates[0].Certificate)
	}
	for _, step := range []struct {
		write []byte
		want  int
	}{
		{append(append([]byte{}, p.CertPEM...), ca.PEM[:len(ca.PEM)/2]...), 2}, // half written: the previous chain stays
		{full, 2},      // written out
		{p.CertPEM, 1}, // a leaf-only chain, written whole: taken
	} {
		if err := os.WriteFile(certFile, step.write, 0o600); err != nil {
			t.Fatal(err)
		}
		clock.Add(time.Minute)
		if n := chainLen(); n != step.want {
			t.Errorf("after writing %d bytes: the chain in force has %d certificate(s); want %d", len(step.write), n, step.want)
		}
	}
	if out := buf.String(); strings.Count(out, "level=ERROR") != 1 || !strings.Contains(out, "listener.tls.certFile ends in an incomplete block: PEM block 2 is incomplete (no END line)") {
		t.Errorf("log %q; want one ERROR naming the incomplete block", out)
	}
}

// TestServerFileErrorRateLimited: a file that stays bad is logged once per minute, not at
// every check.
func TestServerFileErrorRateLimited(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	p := ca.Server(t, "127.0.0.1")
	certFile := testcert.WriteFile(t, "tls.crt", p.CertPEM)
	s, clock, buf := clockedServer(t, ServerOptions{CertFile: &certFile, Key: ptr(string(p.KeyPEM))}, time.Second)
	if err := os.WriteFile(certFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		clock.Add(time.Second)
		s.maybeReload()
	}
	if n := strings.Count(buf.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines for 5 checks within a minute; want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), `tls.certFile holds no PEM CERTIFICATE block (it is empty)`) {
		t.Errorf("log %q does not name the file's option", buf.String())
	}
	if s.Leaf().SerialNumber.Cmp(p.Cert.SerialNumber) != 0 {
		t.Error("the bad file replaced the certificate")
	}
}

// TestHandshakeLog: the lines net/http writes about failed handshakes are classed with a hint
// and limited per kind (the others of a kind at DEBUG, counted by the next line and by Flush);
// a connection closed before its hello goes to DEBUG, net/http's other lines to WARN and a
// handler's panic to ERROR.
// TestServerExpiresWhileRunning: a certificate valid at load that expires while the link runs is
// reported at ERROR by the handshakes after its NotAfter, at most once a minute (the others
// counted), and never while it is valid.
func TestServerExpiresWhileRunning(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	now := time.Now()
	p := ca.ServerValid(t, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1")
	s, clock, buf := clockedServer(t, ServerOptions{Cert: ptr(string(p.CertPEM)), Key: ptr(string(p.KeyPEM))}, 0)
	clock.Set(now)
	cfg := s.Config("http/1.1")
	expired := "expired at " + p.Cert.NotAfter.UTC().Format(time.RFC3339) + ": clients refuse it; renew it"
	for _, step := range []struct {
		advance time.Duration
		want    string // the ERROR the handshake logs; "" for none
	}{
		{0, ""},
		{59 * time.Minute, ""},
		{2 * time.Minute, expired}, // past NotAfter
		{30 * time.Second, ""},     // within a minute of the last line
		{20 * time.Second, ""},
		{15 * time.Second, "suppressed=2"}, // a minute after the first: counts the two held back
	} {
		clock.Add(step.advance)
		from := len(buf.String())
		if _, err := cfg.GetConfigForClient(nil); err != nil {
			t.Fatal(err)
		}
		out := buf.String()[from:]
		switch {
		case step.want == "" && out != "":
			t.Errorf("at %v: logged %q; want nothing", clock.Now().Sub(now), out)
		case step.want != "" && (!strings.Contains(out, "level=ERROR") || !strings.Contains(out, step.want) || !strings.Contains(out, "option=listener.tls.cert")):
			t.Errorf("at %v: logged %q; want an ERROR with %q", clock.Now().Sub(now), out, step.want)
		}
	}
}

// TestHandshakeHintServerCertOutOfDate: a client's alert about the listener's certificate is
// explained by its dates when the certificate in force is out of date, and as a missing CA
// when it is valid.
func TestHandshakeHintServerCertOutOfDate(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	now := time.Now()
	p := ca.ServerValid(t, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1")
	for _, tc := range []struct {
		name     string
		at       time.Duration // the clock, from now
		reason   string
		kind     string
		hint     string
		noneHint string // what the hint must not say
	}{
		{"valid, bad certificate", 0, "remote error: tls: bad certificate", shakeOther, "give the client the CA that signed it", "expired"},
		{"expired, bad certificate (Go)", 2 * time.Hour, "remote error: tls: bad certificate", shakeOutOfDate,
			"expired at " + p.Cert.NotAfter.UTC().Format(time.RFC3339) + ": clients refuse it; renew it (listener.tls.cert/certFile)", "give the client the CA"},
		{"expired, certificate expired (OpenSSL)", 2 * time.Hour, "remote error: tls: certificate expired", shakeOutOfDate, "renew it", "speaks no TLS"},
		{"not yet valid, unknown authority", -2 * time.Hour, "remote error: tls: unknown certificate authority", shakeOutOfDate, "is not valid before", "give the client the CA"},
		{"expired, reset", 2 * time.Hour, "read tcp: connection reset by peer", shakeOther, "broke off the handshake", "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, clock, buf := clockedServer(t, ServerOptions{Cert: ptr(string(p.CertPEM)), Key: ptr(string(p.KeyPEM))}, 0)
			clock.Set(now.Add(tc.at))
			from := len(buf.String())
			s.HandshakeLog("https://").Printf("http: TLS handshake error from 127.0.0.1:4242: %s", tc.reason)
			out := buf.String()[from:]
			if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "kind="+tc.kind) || !strings.Contains(out, tc.hint) {
				t.Errorf("log %q; want WARN kind=%s with hint %q", out, tc.kind, tc.hint)
			}
			if strings.Contains(out, tc.noneHint) {
				t.Errorf("log %q says %q", out, tc.noneHint)
			}
		})
	}
}

func TestHandshakeLog(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	p := ca.Server(t, "127.0.0.1")
	s, err := (&ServerOptions{Cert: ptr(string(p.CertPEM)), Key: ptr(string(p.KeyPEM))}).NewServer("incoming.tls")
	if err != nil {
		t.Fatal(err)
	}
	clock := testclock.New(time.Now())
	s.Now = clock.Now
	var buf testlog.Buffer
	s.SetLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l := s.HandshakeLog("https://")
	for _, tc := range []struct {
		reason, kind, hint string
	}{
		{"client sent an HTTP request to an HTTPS server", shakePlain, "it must dial https://"},
		{"tls: client didn't provide a certificate", shakeNoCert, "incoming.tls.clientCa/clientCaFile requires one"},
		{`client certificate not accepted by incoming.tls.clientCa: certificate "CN=x" issued by "CN=y": x509: certificate signed by unknown authority`, shakeUntrusted, "add that issuer's CA there"},
		{`client certificate not in incoming.tls.clientNames: certificate "CN=x" issued by "CN=y" carries CN="x", none of them listed`, shakeUnlisted, "add one of them to incoming.tls.clientNames"},
		{"remote error: tls: unknown certificate authority", shakeOther, "the client does not trust this listener's certificate"},
		{"remote error: tls: bad certificate", shakeOther, ""}, // a second of its kind within 10 s
	} {
		from := len(buf.String())
		l.Printf("http: TLS handshake error from 127.0.0.1:4242: %s", tc.reason)
		out := buf.String()[from:]
		if tc.hint == "" {
			if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "kind="+tc.kind) {
				t.Errorf("%q: log %q; want DEBUG (a second %s within 10 s)", tc.reason, out, tc.kind)
			}
			continue
		}
		if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "kind="+tc.kind) || !strings.Contains(out, tc.hint) || !strings.Contains(out, "remote=127.0.0.1:4242") {
			t.Errorf("%q: log %q; want WARN kind=%s with hint %q", tc.reason, out, tc.kind, tc.hint)
		}
	}
	from := len(buf.String())
	clock.Add(handshakeLogEvery)
	l.Printf("http: TLS handshake error from 127.0.0.1:4242: read tcp: connection reset by peer")
	if out := buf.String()[from:]; !strings.Contains(out, "level=WARN") || !strings.Contains(out, "suppressed=1") {
		t.Errorf("log %q; want WARN counting the one held back", out)
	}
	from = len(buf.String())
	l.Printf("http: TLS handshake error from 127.0.0.1:4242: read tcp: connection reset by peer")
	s.Flush()
	if out := buf.String()[from:]; !strings.Contains(out, "more handshakes failed") || !strings.Contains(out, "suppressed=1") {
		t.Errorf("Flush logged %q; want the count held back", out)
	}
	// A connection closed before its hello (a TCP health check): DEBUG only. net/http's other
	// lines as on a plain listener: an Accept error WARN, a handler's panic ERROR, whole and
	// never held back; the rest, which a peer can repeat at will, DEBUG.
	for _, tc := range []struct{ line, level string }{
		{"http: TLS handshake error from 127.0.0.1:4242: EOF", "DEBUG"},
		{"http: Accept error: accept tcp 127.0.0.1:443: accept4: too many open files; retrying in 5ms", "WARN"},
		{"http: Accept error: accept tcp 127.0.0.1:443: accept4: too many open files; retrying in 10ms", "WARN"},
		{"http: panic serving 127.0.0.1:4242: runtime error: index out of range [1] with length 1", "ERROR"},
		{"http: superfluous response.WriteHeader call from x.y (z.go:1)", "DEBUG"},
		{"http2: server: error reading preface from client 127.0.0.1:4242: bogus greeting", "DEBUG"},
	} {
		from = len(buf.String())
		l.Print(tc.line)
		out := buf.String()[from:]
		if strings.Count(out, "level=") != 1 || !strings.Contains(out, "level="+tc.level) {
			t.Errorf("%q logged %q; want one line at %s", tc.line, out, tc.level)
		}
		if tc.level != "DEBUG" && (!strings.Contains(out, strings.TrimPrefix(tc.line, "http: ")) || !strings.Contains(out, "option=incoming.tls")) {
			t.Errorf("%q logged %q; want the whole line and the option", tc.line, out)
		}
	}
}
