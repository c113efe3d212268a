package operator

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// serverTLSFixture is Connector B serving TLS on an Account's listening port from the pods:
// the server certificate of the kubernetes.io/tls Secret b-server (v1, signed by serverCA, for
// 127.0.0.1), client certificates required of clientCA (Secret client-ca, key ca.crt), and a
// child bob on portBob with a receiver rx that fulfills.
type serverTLSFixture struct {
	ns                 string
	b                  *runtimeUnderTest
	port               int32
	serverCA, clientCA *testcert.CA
	v1, v2             *testcert.Pair // the server certificate and its renewal
	peerCert           *testcert.Pair // the peer's client certificate, of clientCA
	rx                 *child
}

// newServerTLSFixture runs B with its peer-a Account listening on port through link, given
// the tls to serve.
func newServerTLSFixture(t *testing.T, link func(port int32, serve *ilpv1.ServerTLS) ilpv1.AccountLink) *serverTLSFixture {
	t.Helper()
	f := &serverTLSFixture{ns: namespace(t), port: freePort(t), serverCA: testcert.NewCA(t, "server CA"), clientCA: testcert.NewCA(t, "client CA")}
	portBob := freePort(t)
	f.v1, f.v2 = f.serverCA.Server(t, "127.0.0.1"), f.serverCA.Server(t, "127.0.0.1")
	f.peerCert = f.clientCA.Client(t, "test.a")
	serve := &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "b-server"}, ClientCASecretRef: &ilpv1.SecretKeyRef{Name: "client-ca", Key: "ca.crt"}}
	create(t,
		secretObj(f.ns, "peer-token", "t1"), tlsSecretObj(f.ns, "b-server", f.v1),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "client-ca"}, Data: map[string][]byte{"ca.crt": f.clientCA.PEM}},
		connectorObj(f.ns, "b", "test.b"),
		&ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "peer-a"}, Spec: ilpv1.AccountSpec{ConnectorRef: "b", Relation: ilpv1.RelationPeer,
			AssetCode: "USD", AssetScale: 9, Link: link(f.port, serve)}},
		childAccount(f.ns, "b", "bob", portBob),
	)
	f.b = startRuntime(t, f.ns, "b")
	configApplied(t, f.ns, "b", isTrue)
	f.rx = dialChild(t, portBob, "rx")
	return f
}

// peerTLS is the TLS of a test peer dialing the port: it trusts serverCA, presents cert
// (nil: none), and counts its handshakes, each of which is a new connection (the config keeps
// no session cache).
func (f *serverTLSFixture) peerTLS(cert *testcert.Pair, handshakes *atomic.Int32) *tls.Config {
	c := &tls.Config{RootCAs: f.serverCA.Pool(), MinVersion: tls.VersionTLS12,
		VerifyConnection: func(tls.ConnectionState) error {
			if handshakes != nil {
				handshakes.Add(1)
			}
			return nil
		}}
	if cert != nil {
		c.Certificates = []tls.Certificate{cert.TLS}
	}
	return c
}

// servedSerial opens a new TLS connection to the port with the peer's client certificate and
// returns the serial number of the server certificate it was shown.
func (f *serverTLSFixture) servedSerial() (*big.Int, error) {
	d := tls.Dialer{Config: f.peerTLS(f.peerCert, nil), NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	conn, err := d.DialContext(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// wantNoCertRefused checks that a TLS client presenting no certificate is refused in the
// handshake: with TLS 1.3 the server's alert arrives at the client's first read.
func (f *serverTLSFixture) wantNoCertRefused(t *testing.T) {
	t.Helper()
	d := tls.Dialer{Config: f.peerTLS(nil, nil), NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	conn, err := d.DialContext(context.Background(), "tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
	if err == nil {
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a hung read only
		_, err = conn.Read(make([]byte, 1))
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Fatalf("a client without a certificate: %v; want the handshake refused (certificate required)", err)
	}
}

// renew rewrites b-server with v2 (what cert-manager does on a renewal) and waits until a new
// connection is shown v2; B's runtime has not restarted for it.
func (f *serverTLSFixture) renew(t *testing.T) {
	t.Helper()
	if err := k8s.Update(context.Background(), tlsSecretObjAt(t, f.ns, "b-server", f.v2)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new connection shown the renewed certificate", func() error {
		got, err := f.servedSerial()
		if err != nil {
			return err
		}
		if got.Cmp(f.v2.Cert.SerialNumber) != 0 {
			return fmt.Errorf("served certificate %v, want the renewed %v", got, f.v2.Cert.SerialNumber)
		}
		return nil
	})
	if n := f.b.starts.Load(); n != 1 {
		t.Errorf("B's connector started %d times: a renewal reloads the config, it does not restart", n)
	}
}

// payRefuseRenew is the course of both tests, send being the peer's one way of sending a
// packet on its connection, whose TLS counts handshakes: a packet is fulfilled over scheme and
// the port shows b-server's certificate; a client presenting no certificate is refused; after
// the renewal, the peer's open connection carries a packet without a second handshake.
func (f *serverTLSFixture) payRefuseRenew(t *testing.T, scheme string, send func(dest string) error, handshakes *atomic.Int32) {
	t.Helper()
	if err := send("test.b.bob.rx.paid"); err != nil {
		t.Fatalf("packet over %s with mutual TLS: %v", scheme, err)
	}
	if got, err := f.servedSerial(); err != nil || got.Cmp(f.v1.Cert.SerialNumber) != 0 {
		t.Fatalf("served certificate %v (%v), want b-server's %v", got, err, f.v1.Cert.SerialNumber)
	}
	f.wantNoCertRefused(t)

	f.renew(t)
	if err := send("test.b.bob.rx.after-renewal"); err != nil {
		t.Fatalf("packet on the open connection after the renewal: %v", err)
	}
	if n := handshakes.Load(); n != 1 {
		t.Errorf("the peer made %d TLS handshakes, want 1: the renewal closed its connection", n)
	}
	if n := f.rx.received.Load(); n != 2 {
		t.Errorf("rx received %d packets, want 2", n)
	}
}

// tlsSecretObjAt is Secret ns/name as stored now, its data replaced by p's.
func tlsSecretObjAt(t *testing.T, ns, name string, p *testcert.Pair) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	s.Data = tlsSecretObj(ns, name, p).Data
	return s
}

// TestBTPListenerServesMutualTLS: a btpListener Account with tls serves btp+wss:// from the
// pods with the certificate of Secret b-server and requires a client certificate of the CA of
// Secret client-ca. A peer presenting one connects and pays a packet through to a child; a
// client presenting none is refused in the handshake. When the server certificate is renewed
// (the Secret rewritten), a new connection is shown the new certificate while the peer's open
// connection stays up: it carries a packet after, without a second handshake.
func TestBTPListenerServesMutualTLS(t *testing.T) {
	f := newServerTLSFixture(t, func(port int32, serve *ilpv1.ServerTLS) ilpv1.AccountLink {
		return ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: port, SecretRef: ilpv1.SecretKeyRef{Name: "peer-token", Key: "token"}, TLS: serve}}
	})
	var handshakes atomic.Int32
	peer, err := btp.NewClient(btp.ClientOptions{Server: fmt.Sprintf("btp+wss://a:t1@127.0.0.1:%d", f.port), TLS: f.peerTLS(f.peerCert, &handshakes),
		ReconnectInterval: 50 * time.Millisecond, Common: btp.Common{Logger: quiet}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := peer.Start(ctx, func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return &ilp.Fulfill{Fulfillment: preimage}, nil
	}); err != nil {
		t.Fatalf("the peer with a client certificate of client-ca over btp+wss://: %v", err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	send := func(dest string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := peer.Send(ctx, &ilp.Prepare{Amount: 10, ExpiresAt: time.Now().Add(8 * time.Second), ExecutionCondition: condition(), Destination: ilp.Address(dest)})
		return err
	}
	f.payRefuseRenew(t, "btp+wss://", send, &handshakes)
}

// TestHTTPIncomingServesMutualTLS: an http.incoming Account with tls serves https:// from the
// pods as TestBTPListenerServesMutualTLS's listener does: a peer presenting a client
// certificate of client-ca POSTs a packet that is fulfilled, one presenting none is refused in
// the handshake, and after a renewal of the server certificate a new connection is shown the
// new one while the peer's open (kept-alive) connection carries a packet, without a second
// handshake.
func TestHTTPIncomingServesMutualTLS(t *testing.T) {
	f := newServerTLSFixture(t, func(port int32, serve *ilpv1.ServerTLS) ilpv1.AccountLink {
		return ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: port, TokenSecretRef: &ilpv1.SecretKeyRef{Name: "peer-token", Key: "token"}, TLS: serve}}}
	})
	var handshakes atomic.Int32
	peer := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: f.peerTLS(f.peerCert, &handshakes), MaxConnsPerHost: 1}}
	t.Cleanup(peer.CloseIdleConnections)
	url := fmt.Sprintf("https://127.0.0.1:%d/accounts/a/ilp", f.port)
	send := func(dest string) error {
		body, err := (&ilp.Prepare{Amount: 10, ExpiresAt: time.Now().Add(8 * time.Second), ExecutionCondition: condition(), Destination: ilp.Address(dest)}).MarshalBinary()
		if err != nil {
			return err
		}
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer t1")
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := peer.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s: %s", resp.Status, b)
		}
		if _, rej, err := ilp.ParseResponse(b); err != nil || rej != nil {
			return errors.Join(err, rejectErr(rej))
		}
		return nil
	}
	f.payRefuseRenew(t, "https://", send, &handshakes)
}

// rejectErr is r as an error; nil r: nil.
func rejectErr(r *ilp.Reject) error {
	if r == nil {
		return nil
	}
	return r
}
