package tlsopt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
)

func ptr(s string) *string { return &s }

// clientCert is what cfg presents when a server asks for a certificate.
func clientCert(t *testing.T, cfg *tls.Config) *tls.Certificate {
	t.Helper()
	if cfg.GetClientCertificate == nil {
		return nil
	}
	c, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfig(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	other := testcert.NewCA(t, "other CA")
	client := ca.Client(t, "us")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := signedBy(t, ca, rsaKey)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecCert := signedBy(t, ca, ecKey)
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	// openssl ecparam -genkey writes EC PARAMETERS before the key.
	ecPEM := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...)
	bundle := append(append([]byte("# our authorities\n"), other.PEM...), ca.PEM...)
	caFile := testcert.WriteFile(t, "ca.pem", bundle)
	certFile := testcert.WriteFile(t, "cert.pem", client.CertPEM)
	keyFile := testcert.WriteFile(t, "key.pem", client.KeyPEM)

	for _, tc := range []struct {
		name     string
		o        Options
		roots    []*testcert.CA // nil: the system roots
		leaf     *x509.Certificate
		sni      string
		certsLen int
	}{
		{name: "empty: system roots, no certificate", o: Options{}},
		{name: "ca", o: Options{CA: ptr(string(ca.PEM))}, roots: []*testcert.CA{ca}},
		{name: "ca bundle from a file", o: Options{CAFile: &caFile}, roots: []*testcert.CA{other, ca}},
		{name: "PKCS#8 key", o: Options{Cert: ptr(string(client.CertPEM)), Key: ptr(string(client.KeyPEM))}, leaf: client.Cert, certsLen: 1},
		{name: "files", o: Options{CertFile: &certFile, KeyFile: &keyFile, CA: ptr(string(ca.PEM))}, roots: []*testcert.CA{ca}, leaf: client.Cert, certsLen: 1},
		{name: "PKCS#1 RSA key", o: Options{Cert: ptr(string(rsaCert.CertPEM)),
			Key: ptr(string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})))}, leaf: rsaCert.Cert, certsLen: 1},
		{name: "EC key after EC PARAMETERS", o: Options{Cert: ptr(string(ecCert.CertPEM)), Key: ptr(string(ecPEM))}, leaf: ecCert.Cert, certsLen: 1},
		{name: "chain: leaf then CA", o: Options{Cert: ptr(string(client.CertPEM) + string(ca.PEM)), Key: ptr(string(client.KeyPEM))}, leaf: client.Cert, certsLen: 2},
		{name: "servername", o: Options{ServerName: ptr("btp.peer.example")}, sni: "btp.peer.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.o.Config("tls")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion = %x; want TLS 1.2", cfg.MinVersion)
			}
			if tc.roots == nil {
				if cfg.RootCAs != nil {
					t.Error("RootCAs set; want the system roots")
				}
			} else {
				want := x509.NewCertPool()
				for _, r := range tc.roots {
					want.AddCert(r.Cert)
				}
				if cfg.RootCAs == nil || !cfg.RootCAs.Equal(want) {
					t.Error("RootCAs is not the pool of the given authorities")
				}
			}
			c := clientCert(t, cfg)
			switch {
			case tc.leaf == nil && c != nil:
				t.Error("presents a client certificate; want none")
			case tc.leaf != nil && c == nil:
				t.Error("presents no client certificate")
			case tc.leaf != nil && (!c.Leaf.Equal(tc.leaf) || len(c.Certificate) != tc.certsLen || c.PrivateKey == nil):
				t.Errorf("client certificate %v with %d certificates; want %v with %d", c.Leaf.Subject, len(c.Certificate), tc.leaf.Subject, tc.certsLen)
			}
			if cfg.ServerName != tc.sni {
				t.Errorf("ServerName = %q; want %q", cfg.ServerName, tc.sni)
			}
		})
	}
	if cfg, err := (*Options)(nil).Config("tls"); cfg != nil || err != nil {
		t.Errorf("nil options: %v, %v", cfg, err)
	}
}

// signedBy is a client certificate of key signed by ca.
func signedBy(t *testing.T, ca *testcert.CA, key crypto.Signer) *testcert.Pair {
	t.Helper()
	p := ca.Client(t, "us")
	tmpl := *p.Cert
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testcert.Pair{Cert: c, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func TestConfigErrors(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	client := ca.Client(t, "us")
	stranger := ca.Client(t, "someone else")
	missing := filepath.Join(t.TempDir(), "nowhere", "ca.pem")
	dir := t.TempDir()
	garbledKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("0123456789abcdef-not-a-key-but-secret-looking")}))
	encrypted := string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("secret-ciphertext-0123456789")}))
	legacyEncrypted := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte("secret-ciphertext-0123456789")}))
	pubKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}))
	cert, key := ptr(string(client.CertPEM)), ptr(string(client.KeyPEM))
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"ca and caFile", Options{CA: ptr(string(ca.PEM)), CAFile: ptr("/x")}, "outgoing.tls: set ca or caFile, not both"},
		{"cert and certFile", Options{Cert: cert, CertFile: ptr("/x"), Key: key}, "outgoing.tls: set cert or certFile, not both"},
		{"key and keyFile", Options{Cert: cert, Key: key, KeyFile: ptr("/x")}, "outgoing.tls: set key or keyFile, not both"},
		{"cert without key", Options{Cert: cert}, "outgoing.tls.cert is set without a key: set outgoing.tls.key or outgoing.tls.keyFile too"},
		{"keyFile without cert", Options{KeyFile: ptr("/k")}, "outgoing.tls.keyFile is set without a certificate: set outgoing.tls.cert or outgoing.tls.certFile too"},
		{"ca not PEM", Options{CA: ptr("MIIBkTCB+wIJAK")}, "outgoing.tls.ca holds no PEM CERTIFICATE block (it is not PEM text: for a path, use caFile)"},
		{"ca empty", Options{CA: ptr("")}, "outgoing.tls.ca holds no PEM CERTIFICATE block (it is empty)"},
		{"ca is a key", Options{CA: key}, "outgoing.tls.ca holds a PRIVATE KEY block: it takes certificates only"},
		{"ca public key only", Options{CA: &pubKey}, "outgoing.tls.ca holds no PEM CERTIFICATE block (found PUBLIC KEY)"},
		{"ca malformed block", Options{CA: ptr("-----BEGIN CERTIFICATE-----\nAAAA\n")}, "outgoing.tls.ca holds no PEM CERTIFICATE block (a PEM block is malformed"},
		{"ca block not a certificate", Options{CA: ptr(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})))},
			"outgoing.tls.ca certificate 1 (PEM block 1) cannot be parsed"},
		{"caFile missing", Options{CAFile: &missing}, `outgoing.tls.caFile: cannot read "` + missing + `": no such file or directory`},
		{"caFile empty path", Options{CAFile: ptr("")}, "outgoing.tls.caFile is empty: give the path of a PEM file"},
		{"caFile a directory", Options{CAFile: &dir}, `outgoing.tls.caFile: cannot read "` + dir + `": is a directory`},
		{"caFile not PEM", Options{CAFile: ptr(testcert.WriteFile(t, "der", ca.Cert.Raw))}, "outgoing.tls.caFile holds no PEM CERTIFICATE block (the file is not PEM text)"},
		{"certFile missing", Options{CertFile: &missing, Key: key}, `outgoing.tls.certFile: cannot read "` + missing + `"`},
		{"keyFile missing", Options{Cert: cert, KeyFile: &missing}, `outgoing.tls.keyFile: cannot read "` + missing + `"`},
		{"cert is the key", Options{Cert: key, Key: key}, "outgoing.tls.cert holds a PRIVATE KEY block: it takes certificates only (the key goes in key or keyFile)"},
		{"key is a certificate", Options{Cert: cert, Key: cert}, "outgoing.tls.key holds no PEM PRIVATE KEY block (found CERTIFICATE)"},
		{"key not PEM", Options{Cert: cert, Key: ptr("MHcCAQEEIBsecretsecretsecret")}, "outgoing.tls.key holds no PEM PRIVATE KEY block (it is not PEM text: for a path, use keyFile)"},
		{"key garbled", Options{Cert: cert, Key: &garbledKey}, "outgoing.tls.key holds a PEM block of type PRIVATE KEY that cannot be read as a PKCS#1, PKCS#8 or EC private key"},
		{"key encrypted", Options{Cert: cert, Key: &encrypted}, "outgoing.tls.key is encrypted: give the key unencrypted"},
		{"key encrypted, legacy", Options{Cert: cert, Key: &legacyEncrypted}, "outgoing.tls.key is encrypted"},
		{"cert and key do not match", Options{Cert: cert, Key: ptr(string(stranger.KeyPEM))},
			`outgoing.tls.cert and outgoing.tls.key do not match: the key is not the one of the certificate "CN=us" (the first certificate of outgoing.tls.cert)`},
		{"chain in the wrong order", Options{Cert: ptr(string(ca.PEM) + string(client.CertPEM)), Key: key}, "outgoing.tls.cert and outgoing.tls.key do not match"},
		{"servername empty", Options{ServerName: ptr(" ")}, "outgoing.tls.servername is empty"},
		{"servername with spaces around it", Options{ServerName: ptr(" btp.peer.example\n")}, `outgoing.tls.servername " btp.peer.example\n" has spaces around it`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.o.Config("outgoing.tls")
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tc.want)
			}
			assertNoSecret(t, err, client.KeyPEM, stranger.KeyPEM, []byte(garbledKey), []byte(encrypted), []byte(legacyEncrypted))
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q quotes the option's text", err)
			}
		})
	}
}

// assertNoSecret fails when err holds a PEM line or any line of the given PEM texts.
func assertNoSecret(t *testing.T, err error, pems ...[]byte) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, "-----BEGIN") || strings.Contains(msg, "-----END") {
		t.Errorf("error %q quotes PEM", msg)
	}
	for _, p := range pems {
		for line := range strings.Lines(string(p)) {
			if line = strings.TrimSpace(line); len(line) >= 8 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line) {
				t.Errorf("error %q holds a line of PEM text %q", msg, line)
			}
		}
	}
}

// TestRedaction: the errors for a key that cannot be used never hold its text, whatever is
// wrong with it.
func TestRedaction(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	client := ca.Client(t, "us")
	keyText := string(client.KeyPEM)
	// The key's own base64, cut short (an incomplete paste), or pasted without its PEM lines.
	lines := strings.Split(strings.TrimSpace(keyText), "\n")
	truncated := strings.Join(lines[:len(lines)-2], "\n") + "\n" + lines[len(lines)-1] + "\n"
	body := strings.Join(lines[1:len(lines)-1], "")
	var corrupt strings.Builder
	corrupt.WriteString(lines[0] + "\n")
	for _, l := range lines[1 : len(lines)-1] {
		corrupt.WriteString(strings.ToUpper(l[:len(l)/2]) + l[len(l)/2:] + "\n")
	}
	corrupt.WriteString(lines[len(lines)-1] + "\n")
	for _, k := range []string{truncated, body, corrupt.String(), keyText + "trailing", strings.Replace(keyText, "PRIVATE KEY", "EC PRIVATE KEY", 2)} {
		o := Options{Cert: ptr(string(ca.Client(t, "x").CertPEM)), Key: &k}
		_, err := o.Config("tls")
		if err == nil {
			continue // the trailing text is ignored, as by crypto/tls; the key does not match
		}
		t.Log(err)
		assertNoSecret(t, err, []byte(k), client.KeyPEM)
		if strings.Contains(err.Error(), body[:16]) {
			t.Errorf("error %q holds the key's base64", err)
		}
	}
	// A key file: the path is named, the contents are not.
	bad := testcert.WriteFile(t, "key.pem", []byte(truncated))
	_, err := (&Options{Cert: ptr(string(client.CertPEM)), KeyFile: &bad}).Config("tls")
	if err == nil || !strings.Contains(err.Error(), "tls.keyFile") {
		t.Fatalf("error %v; want one naming tls.keyFile", err)
	}
	assertNoSecret(t, err, client.KeyPEM)
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // error; "" for none
		nil  bool
	}{
		{``, "", true},
		{`null`, "", true},
		{`{}`, "", false},
		{`{"ca":null,"servername":"x"}`, "", false},
		{`{"servrename":"x"}`, `unknown option "outgoing.tls.servrename" (did you mean "servername"?); known options here: ca, caFile, cert, certFile, key, keyFile, servername`, false},
		{`{"rejectUnauthorized":false}`, `unknown option "outgoing.tls.rejectUnauthorized"; known options here:`, false},
		{`{"CA":"x"}`, `unknown option "outgoing.tls.CA" (did you mean "ca"?)`, false},
		{`"x"`, "outgoing.tls must be an object with ca, caFile, cert, certFile, key, keyFile, servername", false},
		{`{"key":["-----BEGIN PRIVATE KEY-----"]}`, "outgoing.tls: json: cannot unmarshal array", false},
	} {
		o, err := Decode("outgoing.tls", json.RawMessage(tc.raw))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Decode(%s): %v", tc.raw, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Decode(%s) error %v; want it to contain %q", tc.raw, err, tc.want)
		case tc.want == "" && (o == nil) != tc.nil:
			t.Errorf("Decode(%s) = %+v; want nil: %v", tc.raw, o, tc.nil)
		}
		if err != nil && strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("Decode(%s) error %q quotes the value", tc.raw, err)
		}
		var uk *unknownKeyError
		if strings.Contains(tc.want, "unknown option") && !errors.As(err, &uk) {
			t.Errorf("Decode(%s) error %T; want *unknownKeyError", tc.raw, err)
		}
	}
}

// TestFileTooLarge: a path naming something huge is refused without reading it all.
func TestFileTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.pem")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = (&Options{CAFile: &p}).Config("tls")
	if err == nil || !strings.Contains(err.Error(), `tls.caFile: cannot read "`+p+`": larger than 4 MiB`) {
		t.Errorf("error %v", err)
	}
}

// TestPathOptionErrors: a path option (caFile, certFile, keyFile, clientCaFile, of dialing and
// listening tls objects) given PEM text is refused without quoting it, pointing at the inline
// option; a path that cannot be read is quoted cut to maxPathInMessage bytes, and not at all
// when it holds control characters.
func TestPathOptionErrors(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	srv := ca.Server(t, "127.0.0.1")
	cert, key, caPEM := string(srv.CertPEM), string(srv.KeyPEM), string(ca.PEM)
	// A key's base64 without its BEGIN line, as a paste cut short: still not a path.
	body := strings.Join(strings.Split(strings.TrimSpace(key), "\n")[1:3], "\n")
	long := "/" + strings.Repeat("d/", 200) + "tls.crt"
	ctl := "/etc/tls/\x1b[2Jtls.crt"
	// config builds the dialing (dial true) or listening tls object at "x.tls" and returns
	// its error.
	config := func(dial bool, f func(o *ServerOptions)) error {
		o := ServerOptions{Cert: &cert, Key: &key}
		f(&o)
		if !dial {
			_, err := o.NewServer("x.tls")
			return err
		}
		_, err := (&Options{CA: o.ClientCA, CAFile: o.ClientCAFile, Cert: o.Cert, CertFile: o.CertFile, Key: o.Key, KeyFile: o.KeyFile}).Config("x.tls")
		return err
	}
	for _, tc := range []struct {
		name string
		dial bool // a dialing tls object (clientCa stands for its ca)
		set  func(o *ServerOptions)
		want string
		not  string // what the error must not hold
	}{
		{"keyFile PEM, listening", false, func(o *ServerOptions) { o.Key, o.KeyFile = nil, &key }, "x.tls.keyFile holds PEM text, not a path: put it in x.tls.key", "PRIVATE KEY"},
		{"keyFile base64, listening", false, func(o *ServerOptions) { o.Key, o.KeyFile = nil, &body }, "x.tls.keyFile holds PEM text, not a path: put it in x.tls.key", body[:20]},
		{"certFile PEM, listening", false, func(o *ServerOptions) { o.Cert, o.CertFile = nil, &cert }, "x.tls.certFile holds PEM text, not a path: put it in x.tls.cert", "CERTIFICATE"},
		{"clientCaFile PEM, listening", false, func(o *ServerOptions) { o.ClientCAFile = &caPEM }, "x.tls.clientCaFile holds PEM text, not a path: put it in x.tls.clientCa", "CERTIFICATE"},
		{"keyFile PEM, dialing", true, func(o *ServerOptions) { o.Key, o.KeyFile = nil, &key }, "x.tls.keyFile holds PEM text, not a path: put it in x.tls.key", "PRIVATE KEY"},
		{"certFile PEM, dialing", true, func(o *ServerOptions) { o.Cert, o.CertFile = nil, &cert }, "x.tls.certFile holds PEM text, not a path: put it in x.tls.cert", "CERTIFICATE"},
		{"caFile PEM, dialing", true, func(o *ServerOptions) { o.ClientCAFile = &caPEM }, "x.tls.caFile holds PEM text, not a path: put it in x.tls.ca", "CERTIFICATE"},
		{"long path", false, func(o *ServerOptions) { o.Cert, o.CertFile = nil, &long }, `x.tls.certFile: cannot read "` + long[:maxPathInMessage-len("…")] + `…": no such file`, long},
		{"control characters", true, func(o *ServerOptions) { o.ClientCAFile = &ctl }, "x.tls.caFile: cannot read the file (its path holds control characters): no such file", "tls.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := config(tc.dial, tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.not) {
				t.Errorf("error %q holds %q", err, tc.not)
			}
			assertNoSecret(t, err, srv.KeyPEM, srv.CertPEM, ca.PEM)
		})
	}
}

// TestIncompletePEMBlock: a chain or CA bundle whose last PEM block has no END line (a file read
// half written, a paste cut short) is refused, inline or in a file, dialing or listening,
// rather than taken without its last certificate.
func TestIncompletePEMBlock(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	other := testcert.NewCA(t, "other CA")
	srv, client := ca.Server(t, "127.0.0.1"), ca.Client(t, "us")
	half := func(first, second []byte) string { return string(first) + string(second[:len(second)/2]) }
	chain, bundle := half(srv.CertPEM, ca.PEM), half(ca.PEM, other.PEM)
	clientChain := half(client.CertPEM, ca.PEM)
	chainFile, bundleFile := testcert.WriteFile(t, "tls.crt", []byte(chain)), testcert.WriteFile(t, "ca.crt", []byte(bundle))
	key, clientKey := string(srv.KeyPEM), string(client.KeyPEM)
	for _, tc := range []struct {
		name string
		load func() error
		want string
	}{
		{"listening cert", func() error { _, err := (&ServerOptions{Cert: &chain, Key: &key}).NewServer("x.tls"); return err },
			"x.tls.cert ends in an incomplete block: PEM block 2 is incomplete (no END line)"},
		{"listening certFile", func() error {
			_, err := (&ServerOptions{CertFile: &chainFile, Key: &key}).NewServer("x.tls")
			return err
		},
			"x.tls.certFile ends in an incomplete block: PEM block 2 is incomplete (no END line)"},
		{"listening clientCaFile", func() error {
			_, err := (&ServerOptions{Cert: ptr(string(srv.CertPEM)), Key: &key, ClientCAFile: &bundleFile}).NewServer("x.tls")
			return err
		}, "x.tls.clientCaFile ends in an incomplete block: PEM block 2 is incomplete (no END line)"},
		{"dialing ca", func() error { _, err := (&Options{CA: &bundle}).Config("x.tls"); return err },
			"x.tls.ca ends in an incomplete block: PEM block 2 is incomplete (no END line)"},
		{"dialing caFile", func() error { _, err := (&Options{CAFile: &bundleFile}).Config("x.tls"); return err },
			"x.tls.caFile ends in an incomplete block: PEM block 2 is incomplete (no END line)"},
		{"dialing cert", func() error { _, err := (&Options{Cert: &clientChain, Key: &clientKey}).Config("x.tls"); return err },
			"x.tls.cert ends in an incomplete block: PEM block 2 is incomplete (no END line)"},
		{"ParseCAs", func() error { _, err := ParseCAs([]byte(bundle)); return err },
			"ends in an incomplete block: PEM block 2 is incomplete (no END line)"},
		{"ParseKeyPair", func() error { _, err := ParseKeyPair([]byte(chain), srv.KeyPEM, "tls.crt", "tls.key"); return err },
			"tls.crt ends in an incomplete block: PEM block 2 is incomplete (no END line)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.load()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, tc.want)
			}
			assertNoSecret(t, err, srv.KeyPEM, client.KeyPEM, ca.PEM, other.PEM)
		})
	}
}
