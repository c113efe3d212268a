package connector

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// renewConfig has a child account (plain mini-accounts) and a peer p whose BTP listener has
// the listening tls object tlsOption ("" none), with a route to p.
func renewConfig(pk, pp int, tlsOption string) string {
	if tlsOption != "" {
		tlsOption = `, "tls": ` + tlsOption
	}
	return `
ilpAddress: test.c
backend: one-to-one
spread: 0
minMessageWindow: 100
accounts:
  kids:
    relation: child
    plugin: ilp-plugin-mini-accounts
    assetCode: USD
    assetScale: 2
    balance: {maximum: "1000000000"}
    options: {wsOpts: {host: 127.0.0.1, port: ` + itoa(pk) + `}}
  p:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    options: {"listener": {"host": "127.0.0.1", "port": ` + itoa(pp) + `, "secret": "s"` + tlsOption + `}}
routes:
  - {targetPrefix: test.p, peerId: p}
`
}

// TestApplyRenewsListenerTLSInPlace: a reload that changes only the certificate of a BTP
// listener's tls renews it in place: the account keeps its link object, the peer's one TCP
// connection stays open and carries the next packet, and a new connection sees the new
// certificate. A new certificate that does not match its key is refused with the running
// config kept; removing tls, then adding it back, reconnects the link each time; so does a
// change of its client CA, which then holds for the connected peer too.
func TestApplyRenewsListenerTLSInPlace(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	first, second, bad := ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1")
	peerCert := ca.Client(t, "peer")
	serverTLS := func(p *testcert.Pair, key []byte) string {
		return testcert.TLSOption("cert", string(p.CertPEM), "key", string(key), "clientCa", string(ca.PEM))
	}
	pk, pp := freePort(t), freePort(t)
	c := start(t, renewConfig(pk, pp, serverTLS(first, first.KeyPEM)), Options{})

	// The peer dials with its client certificate, counting its TCP connections.
	var dials atomic.Int32
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &peerCert.TLS, nil }},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	peerF := &fulfiller{}
	peer, err := btp.NewClient(btp.ClientOptions{Server: "btp+wss://p:s@127.0.0.1:" + itoa(pp), HTTPClient: &http.Client{Transport: tr},
		ReconnectInterval: 20 * time.Millisecond, Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := peer.Start(ctx, peerF.handle); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	kid := child(t, pk, "kid", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "", "no")
	})
	waitFor(t, func() bool { return c.Connected("p") && c.Connected("kids") })
	pay := func(when string) {
		t.Helper()
		n := peerF.n.Load()
		if _, err := kid.Send(ctx, prepare("test.p.x", 1, time.Now(), 10*time.Second)); err != nil || peerF.n.Load() != n+1 {
			t.Fatalf("%s: a packet to the peer: %v", when, err)
		}
	}
	pay("before the renewal")
	linkOf := func() any { return (*c.accounts.Load())["p"].link }
	before := linkOf()

	if err := c.Apply(ctx, mustConfig(t, renewConfig(pk, pp, serverTLS(second, second.KeyPEM)))); err != nil {
		t.Fatal(err)
	}
	if linkOf() != before {
		t.Fatal("the link was rebuilt for a change of its certificate only")
	}
	pay("after the renewal")
	if n := dials.Load(); n != 1 || !peer.Connected() {
		t.Errorf("the peer dialed %d times (connected %v); want its first connection kept", n, peer.Connected())
	}
	served := func() *testcert.Pair {
		t.Helper()
		conn, err := tls.Dial("tcp", "127.0.0.1:"+itoa(pp), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{peerCert.TLS}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range []*testcert.Pair{first, second} {
			if conn.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(p.Cert.SerialNumber) == 0 {
				return p
			}
		}
		return nil
	}
	if served() != second {
		t.Error("a new connection does not see the renewed certificate")
	}

	// A certificate with another's key: refused, the running config and certificate kept.
	// (FromData would refuse it first: the options are swapped in after.)
	mismatched := mustConfig(t, renewConfig(pk, pp, serverTLS(second, second.KeyPEM)))
	ac := mismatched.Accounts["p"]
	ac.Options = json.RawMessage(`{"listener":{"host":"127.0.0.1","port":` + itoa(pp) + `,"secret":"s","tls":` + serverTLS(bad, first.KeyPEM) + `}}`)
	mismatched.Accounts["p"] = ac
	err = c.Apply(ctx, mismatched)
	if err == nil || !strings.Contains(err.Error(), "listener.tls.cert and listener.tls.key do not match") {
		t.Fatalf("Apply of a mismatched certificate: %v; want it refused naming listener.tls", err)
	}
	if linkOf() != before || served() != second {
		t.Error("the refused config changed the link or its certificate")
	}

	// tls removed, then added: the port's protocol changes, the link reconnects each time.
	if err := c.Apply(ctx, mustConfig(t, renewConfig(pk, pp, ""))); err != nil {
		t.Fatal(err)
	}
	plain := linkOf()
	if plain == before {
		t.Error("removing tls did not rebuild the link")
	}
	if err := c.Apply(ctx, mustConfig(t, renewConfig(pk, pp, serverTLS(first, first.KeyPEM)))); err != nil {
		t.Fatal(err)
	}
	if linkOf() == plain {
		t.Error("adding tls did not rebuild the link")
	}
	waitFor(t, func() bool { return dials.Load() > 1 && peer.Connected() })
	pay("after tls was added back")

	// The client CA changed: the link reconnects, so that every peer goes through the new
	// check. With only another CA, the connected peer is dropped and refused; with a bundle
	// holding its CA again, it is let back in.
	other := testcert.NewCA(t, "other CA")
	for _, step := range []struct {
		clientCA  []byte
		connected bool
	}{
		{other.PEM, false},
		{append(append([]byte{}, other.PEM...), ca.PEM...), true},
	} {
		link := linkOf()
		opt := testcert.TLSOption("cert", string(first.CertPEM), "key", string(first.KeyPEM), "clientCa", string(step.clientCA))
		if err := c.Apply(ctx, mustConfig(t, renewConfig(pk, pp, opt))); err != nil {
			t.Fatal(err)
		}
		if linkOf() == link {
			t.Errorf("a change of the client CA (the peer trusted: %v) did not reconnect the link", step.connected)
		}
		waitFor(t, func() bool { return peer.Connected() == step.connected && c.Connected("p") == step.connected })
	}
	pay("after the client CA was changed back")
}

// TestApplyRenewOfDownLinkReconnects: a listening link that is down (a reload moved it to a
// port that was taken, so its restart failed: DownLinks) and whose next reload changes only its
// certificate is started again on that port, now free, serving the new certificate, instead of
// having the certificate of its closed listener renewed.
func TestApplyRenewOfDownLinkReconnects(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	first, second := ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1")
	tlsOf := func(p *testcert.Pair) string {
		return testcert.TLSOption("cert", string(p.CertPEM), "key", string(p.KeyPEM))
	}
	// Each doc is a config with the one listening account id on port, serving tls.
	head := "ilpAddress: test.c\nbackend: one-to-one\nspread: 0\nminMessageWindow: 100\naccounts:\n"
	kidsPort := freePort(t) // of renewConfig's other account
	for _, tc := range []struct {
		name, id string
		doc      func(port int, tls string) string
	}{
		{"btp listener", "p", func(port int, tls string) string { return renewConfig(kidsPort, port, tls) }},
		{"mini-accounts", "kids", func(port int, tls string) string {
			return head + `  kids: {relation: child, plugin: ilp-plugin-mini-accounts, assetCode: USD, assetScale: 2,
    options: {wsOpts: {host: 127.0.0.1, port: ` + itoa(port) + `}, tls: ` + tls + `}}
`
		}},
		{"ilp-over-http", "h", func(port int, tls string) string {
			return head + `  h: {relation: peer, plugin: ilp-plugin-http, assetCode: USD, assetScale: 2,
    options: {incoming: {host: 127.0.0.1, port: ` + itoa(port) + `, staticToken: t, tls: ` + tls + `}}}
`
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := start(t, tc.doc(freePort(t), tlsOf(first)), Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			taken := busy.Addr().(*net.TCPAddr).Port
			if err := c.Apply(ctx, mustConfig(t, tc.doc(taken, tlsOf(first)))); err != nil {
				t.Fatal(err)
			}
			if _, down := c.DownLinks()[tc.id]; !down {
				t.Fatalf("DownLinks = %v; want %s down (its port is taken)", c.DownLinks(), tc.id)
			}
			busy.Close()
			if err := c.Apply(ctx, mustConfig(t, tc.doc(taken, tlsOf(second)))); err != nil {
				t.Fatal(err)
			}
			if down := c.DownLinks(); down != nil {
				t.Errorf("DownLinks = %v after a reload changing the certificate of a link down; want it started again", down)
			}
			conn, err := tls.Dial("tcp", "127.0.0.1:"+itoa(taken), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
			if err != nil {
				t.Fatalf("dialing the link: %v", err)
			}
			defer conn.Close()
			if conn.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(second.Cert.SerialNumber) != 0 {
				t.Error("the link does not serve the new certificate")
			}
		})
	}
}
