package kube

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testport"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
)

// tlsBTPClient is a parent Account dialling bob over btp+wss:// with tls.
func tlsBTPClient(name string, created int, t *ilpv1.ClientTLS) ilpv1.Account {
	return account(name, created, func(s *ilpv1.AccountSpec) {
		s.Relation = ilpv1.RelationParent
		s.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+wss://bob.example/btp", TokenSecretRef: ilpv1.SecretKeyRef{Name: "tok", Key: "t"}, TLS: t}}
	})
}

// tlsHTTPOut is a peer Account sending to bob over https:// with tls.
func tlsHTTPOut(name string, created int, t *ilpv1.ClientTLS) ilpv1.Account {
	return httpAccount(name, created, &ilpv1.HTTPLink{Outgoing: &ilpv1.HTTPOutgoing{URL: "https://bob.example/ilp", TokenSecretRef: ref("tok"), TLS: t}})
}

// tlsOf is the tls object of a link's options: top-level for btp, outgoing's for http.
func tlsOf(t *testing.T, a config.Account) map[string]any {
	t.Helper()
	o := options(t, a)
	if out, ok := o["outgoing"].(map[string]any); ok {
		o = out
	}
	m, _ := o["tls"].(map[string]any)
	return m
}

// TestBuildTLS: a link's tls is rendered as the runtime's tls option, with the PEM text of the
// Secrets (the CA's key, the certificate Secret's tls.crt and tls.key) and the server name,
// which the runtime's option parsing takes; a Secret that cannot serve is the Account's
// problem naming the field, the Secret and the key, and never quoting a key.
func TestBuildTLS(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	alice := ca.Client(t, "alice")
	other := ca.Client(t, "mallory")
	unparseable := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	sec := secrets(map[string]map[string]string{
		"tok":        {"t": "s3cret"},
		"peering-ca": {"ca.crt": string(ca.PEM)},
		"alice-tls":  {corev1.TLSCertKey: string(alice.CertPEM), corev1.TLSPrivateKeyKey: string(alice.KeyPEM)},
		"no-key":     {corev1.TLSCertKey: string(alice.CertPEM)},
		"mismatch":   {corev1.TLSCertKey: string(alice.CertPEM), corev1.TLSPrivateKeyKey: string(other.KeyPEM)},
		"not-pem":    {"ca.crt": "not a certificate"},
		"empty":      {"ca.crt": " \n"},
		// What crypto/x509 and crypto/tls let through but the runtime refuses: a bundle with
		// one certificate that does not parse (CertPool.AppendCertsFromPEM skips it), a tls.crt
		// holding the key too and a chain whose intermediate does not parse (tls.X509KeyPair
		// skips the key and parses the leaf only).
		"bad-bundle":       {"ca.crt": string(ca.PEM) + string(unparseable)},
		"cert-with-key":    {corev1.TLSCertKey: string(alice.CertPEM) + string(alice.KeyPEM), corev1.TLSPrivateKeyKey: string(alice.KeyPEM)},
		"bad-intermediate": {corev1.TLSCertKey: string(alice.CertPEM) + string(unparseable), corev1.TLSPrivateKeyKey: string(alice.KeyPEM)},
	})
	caRef := &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}
	cert := &ilpv1.TLSSecretRef{Name: "alice-tls"}
	tests := []struct {
		name    string
		acct    ilpv1.Account
		want    map[string]any // the tls object, when configured
		problem string         // substring of the problem; "" means configured
	}{
		{"btp client, every field", tlsBTPClient("btp", 1, &ilpv1.ClientTLS{CASecretRef: caRef, CertificateSecretRef: cert, ServerName: "bob.internal"}),
			map[string]any{"ca": string(ca.PEM), "cert": string(alice.CertPEM), "key": string(alice.KeyPEM), "servername": "bob.internal"}, ""},
		{"btp client, CA only", tlsBTPClient("btpca", 2, &ilpv1.ClientTLS{CASecretRef: caRef}), map[string]any{"ca": string(ca.PEM)}, ""},
		{"http outgoing, client certificate only", tlsHTTPOut("http", 3, &ilpv1.ClientTLS{CertificateSecretRef: cert}),
			map[string]any{"cert": string(alice.CertPEM), "key": string(alice.KeyPEM)}, ""},
		{"http outgoing, server name only", tlsHTTPOut("httpsn", 4, &ilpv1.ClientTLS{ServerName: "bob.internal"}), map[string]any{"servername": "bob.internal"}, ""},
		{"CA Secret missing", tlsBTPClient("noca", 5, &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "gone", Key: "ca.crt"}}), nil,
			`link.btpClient.tls.caSecretRef: Secret "gone" does not exist`},
		{"CA key missing", tlsHTTPOut("nocakey", 6, &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "tls.crt"}}), nil,
			`link.http.outgoing.tls.caSecretRef: Secret "peering-ca" has no key "tls.crt"`},
		{"CA not PEM", tlsBTPClient("notpem", 7, &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "not-pem", Key: "ca.crt"}}), nil,
			`link.btpClient.tls.caSecretRef: key "ca.crt" of Secret "not-pem" holds no PEM CERTIFICATE block (it is not PEM text)`},
		{"CA bundle with a certificate that does not parse", tlsHTTPOut("badbundle", 12, &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "bad-bundle", Key: "ca.crt"}}), nil,
			`link.http.outgoing.tls.caSecretRef: key "ca.crt" of Secret "bad-bundle" certificate 2 (PEM block 2) cannot be parsed`},
		{"CA empty", tlsBTPClient("emptyca", 8, &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "empty", Key: "ca.crt"}}), nil,
			`link.btpClient.tls.caSecretRef: key "ca.crt" of Secret "empty" is empty`},
		{"certificate Secret without tls.key", tlsHTTPOut("nokey", 9, &ilpv1.ClientTLS{CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "no-key"}}), nil,
			`link.http.outgoing.tls.certificateSecretRef: Secret "no-key" has no key "tls.key"`},
		{"certificate Secret missing", tlsBTPClient("nocert", 10, &ilpv1.ClientTLS{CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "gone"}}), nil,
			`link.btpClient.tls.certificateSecretRef: Secret "gone" does not exist`},
		{"certificate and key of two pairs", tlsBTPClient("mismatch", 11, &ilpv1.ClientTLS{CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "mismatch"}}), nil,
			`link.btpClient.tls.certificateSecretRef: key "tls.crt" of Secret "mismatch" and key "tls.key" of Secret "mismatch" do not match`},
		{"tls.crt holding the key too", tlsBTPClient("certkey", 13, &ilpv1.ClientTLS{CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "cert-with-key"}}), nil,
			`link.btpClient.tls.certificateSecretRef: key "tls.crt" of Secret "cert-with-key" holds a PRIVATE KEY block: it takes certificates only`},
		{"tls.crt chain whose intermediate does not parse", tlsHTTPOut("badchain", 14, &ilpv1.ClientTLS{CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "bad-intermediate"}}), nil,
			`link.http.outgoing.tls.certificateSecretRef: key "tls.crt" of Secret "bad-intermediate" certificate 2 (PEM block 2) cannot be parsed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{tt.acct}, Secret: sec})
			if err != nil {
				t.Fatal(err)
			}
			a, configured := cfg.Accounts[tt.acct.Name]
			if tt.problem != "" {
				wantLeftOut(t, configured, problems, tt.problem, alice.KeyPEM, other.KeyPEM)
				return
			}
			if !configured || len(problems) > 0 {
				t.Fatalf("configured %v, problems %v", configured, problems)
			}
			got := tlsOf(t, a)
			gotJSON, _ := json.Marshal(got)
			wantJSON, _ := json.Marshal(tt.want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("tls = %s, want %s", gotJSON, wantJSON)
			}
			// The runtime's option parsing takes what was rendered, and builds its TLS from it.
			switch a.Plugin {
			case config.PluginHTTP:
				o, err := ilphttp.ParseOptions(a.Options)
				if err != nil || o.Outgoing == nil || o.Outgoing.TLS == nil {
					t.Fatalf("ilphttp.ParseOptions: %+v, %v; want an outgoing TLS config", o, err)
				}
			default:
				o, err := btp.ParseOptions(a.Plugin, a.Options)
				if c, ok := o.(*btp.ClientOptions); err != nil || !ok || c.TLS == nil {
					t.Fatalf("btp.ParseOptions: %T, %v; want client options with a TLS config", o, err)
				}
			}
		})
	}
}

// TestBuildKeepsRunningTLSAccountOnABadRenewal: a running Account whose renewed CA or
// certificate Secret cannot serve (the key of another pair, tls.key gone, a CA bundle or a
// chain with a certificate that does not parse, a tls.crt holding the key) keeps its running
// version and its link, with a problem naming the API field, rather than losing the link (an
// ILP-over-HTTP Account) or passing on options the runtime refuses (a BTP one): on the dialing
// links' tls and on the listening links' (the server certificate, the client CA).
func TestBuildKeepsRunningTLSAccountOnABadRenewal(t *testing.T) {
	ca, next := testcert.NewCA(t, "peering CA"), testcert.NewCA(t, "peering CA 2")
	alice, other := ca.Client(t, "alice"), ca.Client(t, "mallory")
	unparseable := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}))
	goodCA := map[string]string{"ca.crt": string(ca.PEM)}
	goodCert := map[string]string{corev1.TLSCertKey: string(alice.CertPEM), corev1.TLSPrivateKeyKey: string(alice.KeyPEM)}
	tlsRef := &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}, CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "alice-tls"}}
	serverRef := &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "alice-tls"}, ClientCASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}}
	tests := []struct {
		name     string
		ca, cert map[string]string // the renewed Secrets
		caField  bool              // the problem names the CA's field, not certificateSecretRef
	}{
		{"key of another pair", goodCA, map[string]string{corev1.TLSCertKey: string(alice.CertPEM), corev1.TLSPrivateKeyKey: string(other.KeyPEM)}, false},
		{"tls.key gone", goodCA, map[string]string{corev1.TLSCertKey: string(alice.CertPEM)}, false},
		{"tls.crt holding the key too", goodCA, map[string]string{corev1.TLSCertKey: string(alice.CertPEM) + string(alice.KeyPEM), corev1.TLSPrivateKeyKey: string(alice.KeyPEM)}, false},
		{"tls.crt chain with an intermediate that does not parse", goodCA, map[string]string{corev1.TLSCertKey: string(alice.CertPEM) + unparseable, corev1.TLSPrivateKeyKey: string(alice.KeyPEM)}, false},
		// A CA rotation with overlap whose bundle carries a certificate that does not parse.
		{"CA bundle with a certificate that does not parse", map[string]string{"ca.crt": string(ca.PEM) + string(next.PEM) + unparseable}, goodCert, true},
	}
	type tlsAccount struct {
		acct           ilpv1.Account
		field, caField string // the tls field's name with its dot, and its CA field's
	}
	accounts := []tlsAccount{
		{tlsBTPClient("btp", 1, tlsRef), "link.btpClient.tls.", "caSecretRef"},
		{tlsHTTPOut("http", 2, tlsRef), "link.http.outgoing.tls.", "caSecretRef"},
	}
	for i, link := range serverLinks {
		accounts = append(accounts, tlsAccount{link.acct(fmt.Sprintf("server%d", i), 3+i, serverRef), link.field + ".", "clientCASecretRef"})
	}
	for _, ac := range accounts {
		acct, field := ac.acct, ac.field
		good := secrets(map[string]map[string]string{"tok": {"t": "s3cret"}, "peering-ca": goodCA, "alice-tls": goodCert})
		prev, _, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{acct}, Secret: good})
		if err != nil || prev.Accounts[acct.Name].Options == nil {
			t.Fatalf("first build: %v", err)
		}
		for _, tt := range tests {
			t.Run(acct.Name+"/"+tt.name, func(t *testing.T) {
				bad := secrets(map[string]map[string]string{"tok": {"t": "s3cret"}, "peering-ca": tt.ca, "alice-tls": tt.cert})
				cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{acct}, Secret: bad, Previous: prev})
				if err != nil {
					t.Fatal(err)
				}
				if got, ok := cfg.Accounts[acct.Name]; !ok || string(got.Options) != string(prev.Accounts[acct.Name].Options) {
					t.Errorf("configured %v, problems %v; want the previous options", ok, problems)
				}
				wantField := field + "certificateSecretRef"
				if tt.caField {
					wantField = field + ac.caField
				}
				if len(problems) != 1 || !strings.Contains(problems[0].Message, wantField+": ") ||
					!strings.Contains(problems[0].Message, "keeps running this account's previous version") {
					t.Errorf("problems %v; want one naming %s", problems, wantField)
				}
			})
		}
	}
}

// TestSyncBadCARenewalDoesNotBlockOtherAccounts: through the source and a real connector, a
// btpClient Account's CA Secret renewed into a bundle the runtime refuses keeps its link, and
// an Account created meanwhile comes into force: the bad bundle is that Account's problem, not
// a config the connector refuses whole.
func TestSyncBadCARenewalDoesNotBlockOtherAccounts(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	unparseable := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	conn := testConnector()
	conn.Spec.ILPAddress = "test.alice"
	conn.Status.SecretVersions = map[string]string{"tok": "1", "peering-ca": "1"}
	bob := tlsBTPClient("bob", 1, &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}})
	bob.Spec.Link.BTPClient.URL = "btp+wss://127.0.0.1:1/btp" // nothing listens: the client retries in the background
	bob.Spec.Relation = ilpv1.RelationPeer
	mk := func(name string, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: data}
	}
	caSecret := mk("peering-ca", map[string][]byte{"ca.crt": ca.PEM})
	f := newSyncFixture(t, 0, conn, &bob, mk("tok", map[string][]byte{"t": []byte("s3cret")}), caSecret)
	f.src.opts.Start = func(ctx context.Context, cfg *config.Config) (Runtime, error) {
		cfg.InitialConnectTimeout = time.Millisecond // not the 10 s wait for bob, who cannot connect
		return f.start(ctx, cfg)
	}
	if res := f.sync(); res.Err != nil || !f.inForce("bob") {
		t.Fatalf("first sync: %+v", res)
	}
	// The CA Secret is rewritten, the operator records its version, and an Account is created.
	caSecret.Data = map[string][]byte{"ca.crt": append(append([]byte{}, ca.PEM...), unparseable...)}
	if err := f.cl.Update(f.ctx, caSecret); err != nil {
		t.Fatal(err)
	}
	if err := f.cl.Get(f.ctx, client.ObjectKeyFromObject(conn), conn); err != nil {
		t.Fatal(err)
	}
	conn.Status.SecretVersions["peering-ca"] = "2"
	if err := f.cl.Status().Update(f.ctx, conn); err != nil {
		t.Fatal(err)
	}
	carol := childOn("carol", 2, testport.Get(t))
	if err := f.cl.Create(f.ctx, carol); err != nil {
		t.Fatal(err)
	}
	res := f.sync()
	if !f.inForce("carol") {
		t.Errorf("carol is not in force (sync error %v, problems %v)", res.Err, res.Problems)
	}
	if !f.inForce("bob") {
		t.Errorf("bob lost its link (problems %v)", res.Problems)
	}
}

// TestSyncRendersRenewedCertificate: when cert-manager renews the client certificate (the
// Secret rewritten, and the operator records its new resourceVersion in the Connector's
// status.secretVersions), the next sync puts the new certificate in the running config, so
// the runtime reconnects the link with it; until the version moves the cached copy stands.
func TestSyncRendersRenewedCertificate(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	v1, v2 := ca.Client(t, "alice"), ca.Client(t, "alice")
	conn := testConnector()
	conn.Status.SecretVersions = map[string]string{"tok": "1", "peering-ca": "1", "alice-tls": "1"}
	acct := tlsHTTPOut("bob", 1, &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"},
		CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "alice-tls"}})
	acct.UID, acct.Generation = types.UID("uid-bob"), 1
	secret := func(name string, data map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	certSecret := secret("alice-tls", map[string]string{corev1.TLSCertKey: string(v1.CertPEM), corev1.TLSPrivateKeyKey: string(v1.KeyPEM)})
	certSecret.Type = corev1.SecretTypeTLS
	f := newSyncFixture(t, 0, conn, &acct, secret("tok", map[string]string{"t": "s3cret"}), secret("peering-ca", map[string]string{"ca.crt": string(ca.PEM)}), certSecret)

	inForceCert := func() string {
		t.Helper()
		if f.conn == nil {
			t.Fatal("no connector running")
		}
		a, ok := f.conn.Config().Accounts["bob"]
		if !ok {
			t.Fatal("bob is not in force")
		}
		cert, _ := tlsOf(t, a)["cert"].(string)
		return cert
	}
	if res := f.sync(); res.Err != nil || len(res.Problems) > 0 {
		t.Fatalf("first sync: %+v", res)
	}
	if got := inForceCert(); got != string(v1.CertPEM) {
		t.Fatalf("cert in force is not the Secret's:\n%s", got)
	}

	// cert-manager renews: the Secret is rewritten with a new certificate and key.
	if err := f.cl.Get(f.ctx, client.ObjectKeyFromObject(certSecret), certSecret); err != nil {
		t.Fatal(err)
	}
	certSecret.Data = map[string][]byte{corev1.TLSCertKey: v2.CertPEM, corev1.TLSPrivateKeyKey: v2.KeyPEM}
	if err := f.cl.Update(f.ctx, certSecret); err != nil {
		t.Fatal(err)
	}
	if res := f.sync(); res.Err != nil || inForceCert() != string(v1.CertPEM) {
		t.Fatalf("sync before the operator records the new version: %+v; want the cached certificate kept", res)
	}
	// The operator records the Secret's new version.
	if err := f.cl.Get(f.ctx, client.ObjectKeyFromObject(conn), conn); err != nil {
		t.Fatal(err)
	}
	conn.Status.SecretVersions["alice-tls"] = "2"
	if err := f.cl.Status().Update(f.ctx, conn); err != nil {
		t.Fatal(err)
	}
	if res := f.sync(); res.Err != nil || len(res.Problems) > 0 {
		t.Fatalf("sync after the renewal: %+v", res)
	}
	if got := inForceCert(); got != string(v2.CertPEM) {
		t.Fatalf("cert in force after the renewal is not the renewed one:\n%s", got)
	}
	if key, _ := tlsOf(t, f.conn.Config().Accounts["bob"])["key"].(string); key != string(v2.KeyPEM) {
		t.Error("key in force after the renewal is not the renewed one")
	}
	if f.starts != 1 {
		t.Errorf("the connector started %d times: a renewal reloads the config, it does not restart", f.starts)
	}
}

// TestBuildTLSAwaitsTheGrant: a new Account whose CA or certificate Secret the pod may not read
// yet (the operator adds it to the Role once it sees the Account) is left out as awaiting the
// grant, as one whose token Secret is not granted: not reported until grantWait has passed.
func TestBuildTLSAwaitsTheGrant(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	alice := ca.Client(t, "alice")
	data := map[string]map[string]string{"tok": {"t": "s3cret"}, "peering-ca": {"ca.crt": string(ca.PEM)},
		"alice-tls": {corev1.TLSCertKey: string(alice.CertPEM), corev1.TLSPrivateKeyKey: string(alice.KeyPEM)}}
	for _, refused := range []string{"peering-ca", "alice-tls"} {
		t.Run(refused, func(t *testing.T) {
			all := secrets(data)
			sec := func(name, key string) ([]byte, error) {
				if name == refused {
					return nil, notGrantedError{name, errors.New("the Role does not name it")}
				}
				return all(name, key)
			}
			acct := tlsBTPClient("up", 1, &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"},
				CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "alice-tls"}})
			cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{acct}, Secret: sec})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := cfg.Accounts["up"]; ok || len(problems) != 1 || !problems[0].Awaiting || !strings.Contains(problems[0].Message, refused) {
				t.Fatalf("configured %v, problems %+v; want it left out awaiting the grant of %s", ok, problems, refused)
			}
		})
	}
}

// The listening links with tls: a btpListener peer, a btpChildServer, an http.incoming peer.
func tlsListener(name string, created int, t *ilpv1.ServerTLS) ilpv1.Account {
	return account(name, created, func(s *ilpv1.AccountSpec) {
		s.Relation = ilpv1.RelationPeer
		s.Link = ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: 7000 + int32(created), SecretRef: ilpv1.SecretKeyRef{Name: "tok", Key: "t"}, TLS: t}}
	})
}

func tlsChildServer(name string, created int, t *ilpv1.ServerTLS) ilpv1.Account {
	return account(name, created, func(s *ilpv1.AccountSpec) { s.Link.BTPChildServer.TLS = t })
}

func tlsHTTPIn(name string, created int, t *ilpv1.ServerTLS) ilpv1.Account {
	return httpAccount(name, created, &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7000 + int32(created), TokenSecretRef: ref("tok"), TLS: t}})
}

// serverLinks are the three listening links, each with its tls field's name.
var serverLinks = []struct {
	field string
	acct  func(name string, created int, t *ilpv1.ServerTLS) ilpv1.Account
}{
	{"link.btpListener.tls", tlsListener},
	{"link.btpChildServer.tls", tlsChildServer},
	{"link.http.incoming.tls", tlsHTTPIn},
}

// serverTLSOf is the tls object of a listening link's options: listener's for ilp-plugin-btp,
// top-level for ilp-plugin-mini-accounts, incoming's for ilp-plugin-http.
func serverTLSOf(t *testing.T, a config.Account) map[string]any {
	t.Helper()
	o := options(t, a)
	switch a.Plugin {
	case config.PluginHTTP:
		o, _ = o["incoming"].(map[string]any)
	case config.PluginBTP:
		o, _ = o["listener"].(map[string]any)
	}
	m, _ := o["tls"].(map[string]any)
	return m
}

// TestBuildServerTLS: a listening link's tls is rendered as the runtime's server tls option at
// its place (listener.tls, mini-accounts' tls, incoming.tls) with the PEM text of the
// certificate Secret's tls.crt and tls.key and of the client CA's key; a Secret that cannot
// serve is the Account's problem naming the field, the Secret and the key, never quoting a key.
func TestBuildServerTLS(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	server, other := ca.Server(t, "alice.example"), ca.Server(t, "mallory.example")
	unparseable := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	sec := secrets(map[string]map[string]string{
		"tok":        {"t": "s3cret"},
		"client-ca":  {"ca.crt": string(ca.PEM)},
		"server":     {corev1.TLSCertKey: string(server.CertPEM), corev1.TLSPrivateKeyKey: string(server.KeyPEM)},
		"no-key":     {corev1.TLSCertKey: string(server.CertPEM)},
		"mismatch":   {corev1.TLSCertKey: string(server.CertPEM), corev1.TLSPrivateKeyKey: string(other.KeyPEM)},
		"bad-chain":  {corev1.TLSCertKey: string(server.CertPEM) + string(unparseable), corev1.TLSPrivateKeyKey: string(server.KeyPEM)},
		"not-pem":    {"ca.crt": "not a certificate"},
		"bad-bundle": {"ca.crt": string(ca.PEM) + string(unparseable)},
	})
	withCA := func(cert, caSecret, caKey string) *ilpv1.ServerTLS {
		return &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: cert}, ClientCASecretRef: &ilpv1.SecretKeyRef{Name: caSecret, Key: caKey}}
	}
	withNames := func(t *ilpv1.ServerTLS, names ...string) *ilpv1.ServerTLS {
		t.ClientNames = names
		return t
	}
	tests := []struct {
		name    string
		tls     *ilpv1.ServerTLS
		want    map[string]any // the tls object, when configured
		problem string         // substring of the problem after the field; "" means configured
	}{
		{"certificate and client CA", withCA("server", "client-ca", "ca.crt"),
			map[string]any{"cert": string(server.CertPEM), "key": string(server.KeyPEM), "clientCa": string(ca.PEM)}, ""},
		{"certificate, client CA and client names", withNames(withCA("server", "client-ca", "ca.crt"), "bob.peering.example", "spiffe://peering.example/bob"),
			map[string]any{"cert": string(server.CertPEM), "key": string(server.KeyPEM), "clientCa": string(ca.PEM),
				"clientNames": []string{"bob.peering.example", "spiffe://peering.example/bob"}}, ""},
		{"client names padded with a space", withNames(withCA("server", "client-ca", "ca.crt"), "bob.peering.example "), nil,
			`.clientNames[0] "bob.peering.example " has spaces around it`},
		{"certificate only", &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "server"}},
			map[string]any{"cert": string(server.CertPEM), "key": string(server.KeyPEM)}, ""},
		{"certificate Secret missing", withCA("gone", "client-ca", "ca.crt"), nil, `.certificateSecretRef: Secret "gone" does not exist`},
		{"certificate Secret without tls.key", withCA("no-key", "client-ca", "ca.crt"), nil, `.certificateSecretRef: Secret "no-key" has no key "tls.key"`},
		{"certificate and key of two pairs", withCA("mismatch", "client-ca", "ca.crt"), nil,
			`.certificateSecretRef: key "tls.crt" of Secret "mismatch" and key "tls.key" of Secret "mismatch" do not match`},
		{"chain whose intermediate does not parse", withCA("bad-chain", "client-ca", "ca.crt"), nil,
			`.certificateSecretRef: key "tls.crt" of Secret "bad-chain" certificate 2 (PEM block 2) cannot be parsed`},
		{"client CA key missing", withCA("server", "client-ca", "tls.crt"), nil, `.clientCASecretRef: Secret "client-ca" has no key "tls.crt"`},
		{"client CA not PEM", withCA("server", "not-pem", "ca.crt"), nil,
			`.clientCASecretRef: key "ca.crt" of Secret "not-pem" holds no PEM CERTIFICATE block (it is not PEM text)`},
		{"client CA bundle with a certificate that does not parse", withCA("server", "bad-bundle", "ca.crt"), nil,
			`.clientCASecretRef: key "ca.crt" of Secret "bad-bundle" certificate 2 (PEM block 2) cannot be parsed`},
	}
	for _, link := range serverLinks {
		for i, tt := range tests {
			t.Run(link.field+"/"+tt.name, func(t *testing.T) {
				acct := link.acct("a", i+1, tt.tls)
				cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{acct}, Secret: sec})
				if err != nil {
					t.Fatal(err)
				}
				a, configured := cfg.Accounts[acct.Name]
				if tt.problem != "" {
					wantLeftOut(t, configured, problems, link.field+tt.problem, server.KeyPEM, other.KeyPEM)
					return
				}
				if !configured || len(problems) > 0 {
					t.Fatalf("configured %v, problems %v", configured, problems)
				}
				gotJSON, _ := json.Marshal(serverTLSOf(t, a))
				wantJSON, _ := json.Marshal(tt.want)
				if string(gotJSON) != string(wantJSON) {
					t.Errorf("tls = %s, want %s (options %s)", gotJSON, wantJSON, a.Options)
				}
				// The runtime's option parsing takes what was rendered, and loads the server's TLS.
				var leaf *x509.Certificate
				switch o, err := a.ListenerTLS(); {
				case err != nil:
					t.Fatalf("the runtime refuses the options: %v", err)
				case o == nil:
					t.Fatal("the runtime's options have no server TLS")
				default:
					leaf = o.Leaf()
				}
				if leaf.SerialNumber.Cmp(server.Cert.SerialNumber) != 0 {
					t.Errorf("the runtime serves certificate %v, want the Secret's %v", leaf.SerialNumber, server.Cert.SerialNumber)
				}
			})
		}
	}
}

// wantLeftOut checks that an Account was left out with one problem containing want, which
// quotes none of keys nor any PEM text.
func wantLeftOut(t *testing.T, configured bool, problems []Problem, want string, keys ...[]byte) {
	t.Helper()
	if configured || len(problems) != 1 || !strings.Contains(problems[0].Message, want) {
		t.Fatalf("configured %v, problems %v; want it left out with %q", configured, problems, want)
	}
	for _, k := range append(keys, []byte("-----BEGIN")) {
		if strings.Contains(problems[0].Message, string(k)) {
			t.Errorf("problem %q quotes key material", problems[0].Message)
		}
	}
}
