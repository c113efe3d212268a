package ilphttp

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/internal/testwait"
)

// startHTTPSServer starts a link parsed from options whose incoming has the tls object
// tlsOption, on a free port of 127.0.0.1, logging to buf; it returns the link and its
// https:// endpoint.
func startHTTPSServer(t *testing.T, tlsOption string, buf *testlog.Buffer) (*Link, string) {
	t.Helper()
	o, err := ParseOptions(json.RawMessage(`{"incoming":{"port":1,"host":"127.0.0.1","staticToken":"in-token","tls":` + tlsOption + `}}`))
	if err != nil {
		t.Fatal(err)
	}
	o.Incoming.Port = 0
	o.Account, o.Address, o.Logger = "server", self, slog.New(slog.NewJSONHandler(buf, nil))
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(t.Context(), fulfilHandler); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, "https://" + l.Addr().String() + "/accounts/client/ilp"
}

// postPrepare POSTs a Prepare with the server's token through c and returns the response's
// protocol, and whether the connection was reused.
func postPrepare(t *testing.T, c *http.Client, url string) (proto string, reused bool, err error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(marshal(t, testPrepare(5*time.Second))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer in-token")
	var got atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { got.Store(i.Reused) }}))
	resp, err := c.Do(req)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b.Bytes())
	}
	return resp.Proto, got.Load(), nil
}

// httpsClient trusts ca and presents cert (nil: none), over HTTP/2 when h2 (else HTTP/1.1).
func httpsClient(t *testing.T, ca *testcert.CA, cert *testcert.Pair, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no h2
	}
	if cert != nil {
		tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestIncomingTLS: incoming.tls serves HTTPS, HTTP/2 (ALPN) and HTTP/1.1, and with clientCa
// requires a client certificate of that CA: our own outgoing link with outgoing.tls sends a
// packet through; no certificate, another CA's, and plain http:// are refused and logged with
// the hint of their kind.
func TestIncomingTLS(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	stranger := testcert.NewCA(t, "stranger CA")
	server, client, intruder := ca.Server(t, "127.0.0.1"), ca.Client(t, "peer"), stranger.Client(t, "intruder")
	var buf testlog.Buffer
	_, url := startHTTPSServer(t, testcert.TLSOption("cert", string(server.CertPEM), "key", string(server.KeyPEM), "clientCa", string(ca.PEM)), &buf)

	for _, h2 := range []bool{true, false} {
		proto, _, err := postPrepare(t, httpsClient(t, ca, client, h2), url)
		want := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]
		if err != nil || proto != want {
			t.Errorf("h2=%v: %s, %v; want %s", h2, proto, err, want)
		}
	}
	// Our own dialing side, as a peer running ilpfleet configures it.
	out, err := ParseOptions(json.RawMessage(`{"outgoing":{"url":` + testcert.Quote(url) + `,"staticToken":"in-token","http2":true,"tls":` +
		testcert.TLSOption("ca", string(ca.PEM), "cert", string(client.CertPEM), "key", string(client.KeyPEM)) + `}}`))
	if err != nil {
		t.Fatal(err)
	}
	out.Account, out.Address = "peer", self
	peer, err := New(out)
	if err != nil {
		t.Fatal(err)
	}
	_ = peer.Start(t.Context(), nil)
	defer peer.Close()
	if f, err := peer.Send(t.Context(), testPrepare(5*time.Second)); err != nil || f.Fulfillment != testFulfillment {
		t.Fatalf("Send over mutual TLS: %v, %v", f, err)
	}

	for _, tc := range []struct {
		name, url string
		cert      *testcert.Pair
		kind      string
		hint      string
	}{
		{"no client certificate", url, nil, "no-client-cert", "incoming.tls.clientCa/clientCaFile requires one"},
		{"client certificate of another CA", url, intruder, "client-cert", "does not chain to incoming.tls.clientCa/clientCaFile"},
		{"plain http", strings.Replace(url, "https://", "http://", 1), client, "plain", "it must dial https://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from := len(buf.String())
			req, _ := http.NewRequest(http.MethodPost, tc.url, bytes.NewReader(marshal(t, testPrepare(5*time.Second))))
			req.Header.Set("Authorization", "Bearer in-token")
			resp, err := httpsClient(t, ca, tc.cert, false).Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatal("the request was served")
				}
			}
			var rec map[string]any
			testwait.Eventually(t, "the handshake failure logged", 500, func() bool {
				for line := range strings.Lines(buf.String()[from:]) {
					var m map[string]any
					if json.Unmarshal([]byte(line), &m) == nil && strings.HasPrefix(m["msg"].(string), "tls: handshake failed") {
						rec = m
						return true
					}
				}
				return false
			})
			if rec["level"] != "WARN" || rec["kind"] != tc.kind || !strings.Contains(rec["hint"].(string), tc.hint) || rec["account"] != "server" {
				t.Errorf("logged %v; want WARN kind %s with hint %q, naming the account", rec, tc.kind, tc.hint)
			}
		})
	}
}

// TestIncomingTLSRenewInPlace: Renew changes the certificate of new connections while a kept-
// alive connection goes on serving (the request after the renewal reuses it).
func TestIncomingTLSRenewInPlace(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	first, second, client := ca.Server(t, "127.0.0.1"), ca.Server(t, "127.0.0.1"), ca.Client(t, "peer")
	var buf testlog.Buffer
	l, url := startHTTPSServer(t, testcert.TLSOption("cert", string(first.CertPEM), "key", string(first.KeyPEM), "clientCa", string(ca.PEM)), &buf)
	for _, h2 := range []bool{true, false} {
		c := httpsClient(t, ca, client, h2)
		if _, _, err := postPrepare(t, c, url); err != nil {
			t.Fatal(err)
		}
		o, err := ParseOptions(json.RawMessage(`{"incoming":{"port":1,"staticToken":"x","tls":` +
			testcert.TLSOption("cert", string(second.CertPEM), "key", string(second.KeyPEM), "clientCa", string(ca.PEM)) + `}}`))
		if err != nil {
			t.Fatal(err)
		}
		l.ServerTLS().Renew(o.Incoming.TLS)
		if _, reused, err := postPrepare(t, c, url); err != nil || !reused {
			t.Errorf("h2=%v: after the renewal: reused %v, %v; want the open connection to serve", h2, reused, err)
		}
		conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}})
		if err != nil {
			t.Fatal(err)
		}
		if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(second.Cert.SerialNumber) != 0 {
			t.Errorf("a new connection sees serial %v; want the renewed certificate's %v", got, second.Cert.SerialNumber)
		}
		_ = conn.Close()
		first, second = second, first // the next round renews back
	}
}
