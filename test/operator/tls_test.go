package operator

import (
	"context"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/testcert"
)

// tlsFront is what terminates TLS in front of a connector's plain port in a cluster (a load
// balancer or an ingress): a TLS server on 127.0.0.1 presenting server, requiring a client
// certificate signed by clientCA, and proxying to the port. It records the serial numbers of
// the client certificates it was shown.
type tlsFront struct {
	srv *httptest.Server

	mu      sync.Mutex
	serials []*big.Int
}

func newTLSFront(t *testing.T, server *testcert.Pair, clientCA *testcert.CA, port int32) *tlsFront {
	t.Helper()
	target, err := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	f := &tlsFront{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			f.mu.Lock()
			f.serials = append(f.serials, r.TLS.PeerCertificates[0].SerialNumber)
			f.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	f.srv.TLS = testcert.ServerConfig(server, clientCA.Pool())
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// lastSerial is the serial number of the last client certificate shown, or nil.
func (f *tlsFront) lastSerial() *big.Int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.serials) == 0 {
		return nil
	}
	return f.serials[len(f.serials)-1]
}

func tlsSecretObj(ns, name string, p *testcert.Pair) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: p.CertPEM, corev1.TLSPrivateKeyKey: p.KeyPEM}}
}

// TestILPOverHTTPPeeringOverMutualTLS: A sends to B over https:// through a TLS front that
// presents a certificate of a private CA for B's name and requires a client certificate of
// that CA. A's Account trusts the CA of Secret peering-ca, checks B's name with serverName,
// and presents the certificate of the kubernetes.io/tls Secret a-client, all read through the
// Role the operator wrote. When cert-manager would renew it (the Secret rewritten), A's next
// packets present the new certificate, without the runtime restarting.
func TestILPOverHTTPPeeringOverMutualTLS(t *testing.T) {
	ns := namespace(t)
	portHTTP, portAlice, portBob := freePort(t), freePort(t), freePort(t)
	ca := testcert.NewCA(t, "peering CA")
	v1, v2 := ca.Client(t, "test.a"), ca.Client(t, "test.a")
	front := newTLSFront(t, ca.Server(t, "b.peering.test"), ca, portHTTP)

	inRef, outRef := &ilpv1.SecretKeyRef{Name: "in-token", Key: "token"}, &ilpv1.SecretKeyRef{Name: "out-token", Key: "token"}
	peer := func(conn, name string, h *ilpv1.HTTPLink) *ilpv1.Account {
		return &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: ilpv1.AccountSpec{ConnectorRef: conn,
			Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9, Link: ilpv1.AccountLink{HTTP: h}}}
	}
	client := tlsSecretObj(ns, "a-client", v1)
	create(t,
		secretObj(ns, "in-token", "t-http"), secretObj(ns, "out-token", "t-http"), client,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "peering-ca"}, Data: map[string][]byte{"ca.crt": ca.PEM}},
		connectorObj(ns, "a", "test.a"), connectorObj(ns, "b", "test.b"),
		peer("b", "peer-a", &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: portHTTP, TokenSecretRef: inRef}}),
		// The front listens on 127.0.0.1, which B's certificate does not name: serverName does.
		peer("a", "peer-b", &ilpv1.HTTPLink{Outgoing: &ilpv1.HTTPOutgoing{URL: front.srv.URL + "/accounts/a/ilp", TokenSecretRef: outRef,
			TLS: &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"},
				CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "a-client"}, ServerName: "b.peering.test"}}}),
		childAccount(ns, "a", "alice", portAlice), childAccount(ns, "b", "bob", portBob),
		routeObj(ns, "a", "to-b", "test.b", "peer-b"),
	)
	startRuntime(t, ns, "b")
	configApplied(t, ns, "b", isTrue)
	a := startRuntime(t, ns, "a")
	configApplied(t, ns, "a", isTrue)
	rx := dialChild(t, portBob, "rx")
	tx := dialChild(t, portAlice, "tx")
	if err := tx.send(10, "test.b.bob.rx.paid"); err != nil {
		t.Fatalf("packet over ILP-over-HTTP with mutual TLS: %v", err)
	}
	if rx.received.Load() != 1 {
		t.Fatalf("rx received %d packets, want 1", rx.received.Load())
	}
	if got := front.lastSerial(); got == nil || got.Cmp(v1.Cert.SerialNumber) != 0 {
		t.Fatalf("the front was shown client certificate %v, want a-client's %v", got, v1.Cert.SerialNumber)
	}

	// The renewal: a new certificate and key in the same Secret.
	client.Data = map[string][]byte{corev1.TLSCertKey: v2.CertPEM, corev1.TLSPrivateKeyKey: v2.KeyPEM}
	if err := k8s.Update(context.Background(), client); err != nil {
		t.Fatal(err)
	}
	eventually(t, "A presenting the renewed certificate", func() error {
		if err := tx.send(10, "test.b.bob.rx.renewed"); err != nil {
			return fmt.Errorf("send: %v", err)
		}
		if got := front.lastSerial(); got.Cmp(v2.Cert.SerialNumber) != 0 {
			return fmt.Errorf("the front was shown client certificate %v, want the renewed %v", got, v2.Cert.SerialNumber)
		}
		return nil
	})
	if n := a.starts.Load(); n != 1 {
		t.Errorf("A's connector started %d times: a renewal reloads the config, it does not restart", n)
	}
}

// TestBTPPeeringOverMutualTLS: A's btpClient dials B's BTP listener over btp+wss:// through a
// TLS front that requires a client certificate of the private CA; A trusts that CA alone and
// presents the certificate of Secret a-client. Its renewal reconnects the link with the new
// certificate, without the runtime restarting.
func TestBTPPeeringOverMutualTLS(t *testing.T) {
	ns := namespace(t)
	portPeer, portAlice, portBob := freePort(t), freePort(t), freePort(t)
	ca := testcert.NewCA(t, "peering CA")
	v1, v2 := ca.Client(t, "test.a"), ca.Client(t, "test.a")
	front := newTLSFront(t, ca.Server(t, "127.0.0.1"), ca, portPeer)
	wss := "btp+wss://" + front.srv.Listener.Addr().String()
	tokenRef := ilpv1.SecretKeyRef{Name: "peer-token", Key: "token"}
	client := tlsSecretObj(ns, "a-client", v1)
	create(t,
		secretObj(ns, "peer-token", "t1"), client,
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "peering-ca"}, Data: map[string][]byte{"ca.crt": ca.PEM}},
		connectorObj(ns, "a", "test.a"), connectorObj(ns, "b", "test.b"),
		&ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "peer-a"}, Spec: ilpv1.AccountSpec{ConnectorRef: "b", Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: portPeer, SecretRef: tokenRef}}}},
		&ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "peer-b"}, Spec: ilpv1.AccountSpec{ConnectorRef: "a", Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: wss, Username: "a", TokenSecretRef: tokenRef,
				TLS: &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}, CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "a-client"}}}}}},
		childAccount(ns, "a", "alice", portAlice), childAccount(ns, "b", "bob", portBob),
		routeObj(ns, "a", "to-b", "test.b", "peer-b"), routeObj(ns, "b", "to-a", "test.a", "peer-a"),
	)
	startRuntime(t, ns, "b")
	configApplied(t, ns, "b", isTrue)
	a := startRuntime(t, ns, "a")
	configApplied(t, ns, "a", isTrue)
	dialChild(t, portBob, "rx")
	tx := dialChild(t, portAlice, "tx")
	eventually(t, "a packet over btp+wss:// with mutual TLS", func() error { return tx.send(10, "test.b.bob.rx.paid") })
	if got := front.lastSerial(); got == nil || got.Cmp(v1.Cert.SerialNumber) != 0 {
		t.Fatalf("the front was shown client certificate %v, want a-client's %v", got, v1.Cert.SerialNumber)
	}

	client.Data = map[string][]byte{corev1.TLSCertKey: v2.CertPEM, corev1.TLSPrivateKeyKey: v2.KeyPEM}
	if err := k8s.Update(context.Background(), client); err != nil {
		t.Fatal(err)
	}
	// The link reconnects: packets sent in that moment may get T01 reconnecting.
	eventually(t, "A's link reconnected with the renewed certificate", func() error {
		if got := front.lastSerial(); got.Cmp(v2.Cert.SerialNumber) != 0 {
			return fmt.Errorf("the front was last shown client certificate %v, want the renewed %v", got, v2.Cert.SerialNumber)
		}
		return tx.send(10, "test.b.bob.rx.renewed")
	})
	if n := a.starts.Load(); n != 1 {
		t.Errorf("A's connector started %d times: a renewal reloads the config, it does not restart", n)
	}
}
