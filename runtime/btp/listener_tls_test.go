package btp

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// serverTLSOption loads a listening tls object (testcert.TLSOption pairs) found at `at`.
func serverTLSOption(t *testing.T, at string, kv ...string) *tlsopt.Server {
	t.Helper()
	s, err := tlsopt.LoadServer(at, json.RawMessage(testcert.TLSOption(kv...)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tlsListener is a started BTP listener of either kind, and how to reach it.
type tlsListener interface {
	Addr() net.Addr
	ServerTLS() *tlsopt.Server
}

// listenerKinds start a peer server and a child server serving TLS with srvTLS, logging to buf.
var listenerKinds = []struct {
	name  string
	at    string
	start func(t *testing.T, srvTLS *tlsopt.Server, buf *testlog.Buffer) tlsListener
}{
	{"listener", "listener.tls", func(t *testing.T, srvTLS *tlsopt.Server, buf *testlog.Buffer) tlsListener {
		return startServer(t, 0, echo, func(o *PeerServerOptions) {
			o.TLS, o.Common.Logger, o.AuthTimeout = srvTLS, jsonLogger(buf), 200*time.Millisecond
		})
	}},
	{"mini-accounts", "tls", func(t *testing.T, srvTLS *tlsopt.Server, buf *testlog.Buffer) tlsListener {
		return startChildServer(t, echo, func(o *ChildServerOptions) {
			o.TLS, o.Common.Logger, o.AuthTimeout = srvTLS, jsonLogger(buf), 200*time.Millisecond
		})
	}},
}

// refusedHandshake dials with o, which the listener logging to buf must refuse, and returns
// the record of the failed handshake it logged.
func refusedHandshake(t *testing.T, o ClientOptions, buf *testlog.Buffer) map[string]any {
	t.Helper()
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.connect(t.Context()); err == nil {
		t.Fatal("connected")
	}
	var rec map[string]any
	waitFor(t, "the handshake failure logged", func() bool {
		for _, r := range logRecords(t, buf) {
			if r["msg"] != nil && strings.HasPrefix(r["msg"].(string), "tls: handshake failed") {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

// TestListenerTLS: a peer listener and a child server with tls serve btp+wss://; with clientCa,
// a client with a certificate of that CA connects and a packet round-trips, while one without a
// certificate, one with another CA's, and a plain ws:// client are refused, each logged with
// the hint of its kind.
func TestListenerTLS(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	stranger := testcert.NewCA(t, "stranger CA")
	server := ca.Server(t, "127.0.0.1")
	client, intruder := ca.Client(t, "peer"), stranger.Client(t, "intruder")
	for _, kind := range listenerKinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, tc := range []struct {
				name, scheme, tls string
				kind, hint        string // "": connects
			}{
				{"mutual TLS", "btp+wss", testcert.TLSOption("ca", string(ca.PEM), "cert", string(client.CertPEM), "key", string(client.KeyPEM)), "", ""},
				{"no client certificate", "btp+wss", testcert.TLSOption("ca", string(ca.PEM)),
					"no-client-cert", "the client presented no certificate and " + kind.at + ".clientCa/clientCaFile requires one"},
				{"client certificate of another CA", "btp+wss", testcert.TLSOption("ca", string(ca.PEM), "cert", string(intruder.CertPEM), "key", string(intruder.KeyPEM)),
					"client-cert", "does not chain to " + kind.at + ".clientCa/clientCaFile"},
				{"plain ws", "btp+ws", "", "plain", "the client spoke plain HTTP (ws:// or http://) to this TLS port: it must dial btp+wss://"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var buf testlog.Buffer
					srvTLS := serverTLSOption(t, kind.at, "cert", string(server.CertPEM), "key", string(server.KeyPEM), "clientCa", string(ca.PEM))
					l := kind.start(t, srvTLS, &buf)
					url := tc.scheme + "://child:s3cret@" + l.Addr().String() + "/btp"
					var o ClientOptions
					if tc.tls != "" {
						o = tlsClientOptions(t, url, tc.tls)
					} else {
						o = ClientOptions{Server: url, Common: quiet(), ReconnectInterval: 20 * time.Millisecond}
					}
					if tc.kind == "" {
						roundTrip(t, startClient(t, url, echo, func(co *ClientOptions) { *co = o }))
						return
					}
					rec := refusedHandshake(t, o, &buf)
					if rec["level"] != "WARN" || rec["kind"] != tc.kind || !strings.Contains(rec["hint"].(string), tc.hint) {
						t.Errorf("logged %v; want WARN kind %s with hint %q", rec, tc.kind, tc.hint)
					}
					if tc.kind == "client-cert" && !strings.Contains(rec["error"].(string), `issued by "CN=stranger CA"`) {
						t.Errorf("error %q does not name the certificate's issuer", rec["error"])
					}
				})
			}
		})
	}
}

// TestListenerTLSClientNames: with clientNames, a listener of either kind accepts a client
// whose certificate chains to clientCa only if it carries a listed name: the peer named in the
// list connects and a packet round-trips; another peer with a certificate of the same CA is
// refused in the handshake, logged as kind client-name with the certificate's subject and
// names and the option to change.
func TestListenerTLSClientNames(t *testing.T) {
	ca := testcert.NewCA(t, "peering CA")
	server := ca.Server(t, "127.0.0.1")
	alice, mallory := ca.ClientNamed(t, "alice", "alice.peers.example"), ca.ClientNamed(t, "mallory", "mallory.peers.example")
	for _, kind := range listenerKinds {
		t.Run(kind.name, func(t *testing.T) {
			for _, tc := range []struct {
				name   string
				client *testcert.Pair
				refuse bool
			}{
				{"listed peer", alice, false},
				{"other peer of the same CA", mallory, true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var buf testlog.Buffer
					opt := strings.TrimSuffix(testcert.TLSOption("cert", string(server.CertPEM), "key", string(server.KeyPEM), "clientCa", string(ca.PEM)), "}") +
						`,"clientNames":["ALICE.peers.example","spiffe://peers.example/alice"]}`
					srvTLS, err := tlsopt.LoadServer(kind.at, json.RawMessage(opt))
					if err != nil {
						t.Fatal(err)
					}
					l := kind.start(t, srvTLS, &buf)
					url := "btp+wss://child:s3cret@" + l.Addr().String() + "/btp"
					o := tlsClientOptions(t, url, testcert.TLSOption("ca", string(ca.PEM), "cert", string(tc.client.CertPEM), "key", string(tc.client.KeyPEM)))
					if !tc.refuse {
						roundTrip(t, startClient(t, url, echo, func(co *ClientOptions) { *co = o }))
						return
					}
					rec := refusedHandshake(t, o, &buf)
					hint, _ := rec["hint"].(string)
					if rec["level"] != "WARN" || rec["kind"] != "client-name" || !strings.Contains(hint, "add one of them to "+kind.at+".clientNames") {
						t.Errorf("logged %v; want WARN kind client-name with a hint naming %s.clientNames", rec, kind.at)
					}
					msg, _ := rec["error"].(string)
					if !strings.Contains(msg, `certificate "CN=mallory" issued by "CN=peering CA" carries CN="mallory", DNS:"mallory.peers.example"`) {
						t.Errorf("error %q does not name the certificate's subject and names", msg)
					}
					if strings.Contains(buf.String(), "PRIVATE KEY") {
						t.Error("the log holds key material")
					}
				})
			}
		})
	}
}

// TestListenerTLSHandshakeBounded: a client that opens a TCP connection to a TLS listener and
// never sends its hello is closed after the auth timeout.
func TestListenerTLSHandshakeBounded(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	server := ca.Server(t, "127.0.0.1")
	for _, kind := range listenerKinds {
		t.Run(kind.name, func(t *testing.T) {
			var buf testlog.Buffer
			l := kind.start(t, serverTLSOption(t, kind.at, "cert", string(server.CertPEM), "key", string(server.KeyPEM)), &buf)
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Far beyond the 200 ms auth timeout: only the server's close ends the read in time.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the listener held a connection that never started its handshake")
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
				t.Fatalf("read: %v; want the connection closed by the listener", err)
			}
		})
	}
}

// TestListenerTLSRenewInPlace: Renew changes the certificate new connections see, while an
// open connection stays (the same connection carries a packet after).
func TestListenerTLSRenewInPlace(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	first, second := ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1")
	client := ca.Client(t, "peer")
	clientTLS := testcert.TLSOption("ca", string(ca.PEM), "cert", string(client.CertPEM), "key", string(client.KeyPEM))
	for _, kind := range listenerKinds {
		t.Run(kind.name, func(t *testing.T) {
			var buf testlog.Buffer
			l := kind.start(t, serverTLSOption(t, kind.at, "cert", string(first.CertPEM), "key", string(first.KeyPEM), "clientCa", string(ca.PEM)), &buf)
			url := "btp+wss://child:s3cret@" + l.Addr().String() + "/btp"
			o := tlsClientOptions(t, url, clientTLS)
			c := startClient(t, url, echo, func(co *ClientOptions) { *co = o })
			roundTrip(t, c)
			before := c.cur.Load()
			l.ServerTLS().Renew(serverTLSOption(t, kind.at, "cert", string(second.CertPEM), "key", string(second.KeyPEM), "clientCa", string(ca.PEM)))
			roundTrip(t, c)
			if c.cur.Load() != before {
				t.Error("the open connection was replaced by the renewal")
			}
			conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(second.Cert.SerialNumber) != 0 {
				t.Errorf("a new connection sees serial %v; want the renewed certificate's %v", got, second.Cert.SerialNumber)
			}
		})
	}
}
