package btp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// startTLSServer serves a peer server (secret "s3cret", echoing Prepares) over TLS with cfg on
// 127.0.0.1, and returns the btp+wss:// URL to dial with user u and token "s3cret".
func startTLSServer(t *testing.T, cfg *tls.Config) (*PeerServer, string) {
	t.Helper()
	s := startServer(t, 0, echo, nil) // its plain listener stays unused
	hs := httptest.NewUnstartedServer(&s.srv)
	hs.TLS = cfg
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failures the tests cause
	hs.StartTLS()
	t.Cleanup(hs.Close)
	if !strings.HasPrefix(hs.Listener.Addr().String(), "127.0.0.1:") {
		t.Fatalf("test server on %s; want 127.0.0.1", hs.Listener.Addr())
	}
	return s, "btp+wss://u:s3cret@" + hs.Listener.Addr().String() + "/btp"
}

// tlsClientOptions parses ilp-plugin-btp options for server with the tls object tlsOption
// (testcert.TLSOption), as a config would give them.
func tlsClientOptions(t *testing.T, server, tlsOption string) ClientOptions {
	t.Helper()
	o, err := ParseOptions(PluginBTP, json.RawMessage(`{"server":`+testcert.Quote(server)+`,"tls":`+tlsOption+`}`))
	if err != nil {
		t.Fatal(err)
	}
	co := *o.(*ClientOptions)
	co.Common = quiet()
	co.ReconnectInterval = 20 * time.Millisecond
	return co
}

// roundTrip sends a Prepare over c and checks the peer server's echo comes back.
func roundTrip(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.Send(ctx, prepare("test.peer.bob", "over tls"))
	if err != nil || f.Fulfillment != preimage || string(f.Data) != "over tls" {
		t.Fatalf("Send over TLS: %+v, %v; want the echo Fulfill", f, err)
	}
}

// TestClientTLS: a client with the tls option connects to TLS peers signed by a private CA —
// with the CA alone, with mutual TLS, with a servername other than the URL's host — and a
// packet round-trips; each failure comes with the hint for the operator.
func TestClientTLS(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	other := testcert.NewCA(t, "someone else's CA")
	server := ca.Server(t, "127.0.0.1")
	named := ca.Server(t, "btp.peer.test")
	client := ca.Client(t, "us")
	stranger := other.Client(t, "us")
	caFile := testcert.WriteFile(t, "ca.pem", ca.PEM)
	keyFile := testcert.WriteFile(t, "key.pem", client.KeyPEM)

	for _, tc := range []struct {
		name   string
		server *tls.Config // nil: a plain peer
		tls    string
		hint   string // "": connects
	}{
		{"private CA", testcert.ServerConfig(server, nil), testcert.TLSOption("ca", string(ca.PEM)), ""},
		{"private CA from a file", testcert.ServerConfig(server, nil), testcert.TLSOption("caFile", caFile), ""},
		{"mutual TLS", testcert.ServerConfig(server, ca.Pool()),
			testcert.TLSOption("ca", string(ca.PEM), "cert", string(client.CertPEM), "keyFile", keyFile), ""},
		{"servername", testcert.ServerConfig(named, nil), testcert.TLSOption("ca", string(ca.PEM), "servername", "btp.peer.test"), ""},
		{"wrong CA", testcert.ServerConfig(server, nil), testcert.TLSOption("ca", string(other.PEM)),
			`the peer's certificate is not signed by an authority in tls.ca/caFile (its issuer is "CN=peers CA")`},
		{"system roots", testcert.ServerConfig(server, nil), `{}`,
			`not signed by an authority the system trusts (its issuer is "CN=peers CA"): for a private CA, set tls.ca`},
		{"no client certificate", testcert.ServerConfig(server, ca.Pool()), testcert.TLSOption("ca", string(ca.PEM)),
			"the peer requires a client certificate and we sent none: set tls.cert and tls.key"},
		{"client certificate of another CA", testcert.ServerConfig(server, ca.Pool()),
			testcert.TLSOption("ca", string(ca.PEM), "cert", string(stranger.CertPEM), "key", string(stranger.KeyPEM)),
			"the peer refused our client certificate (tls.cert/certFile)"},
		{"name mismatch", testcert.ServerConfig(named, nil), testcert.TLSOption("ca", string(ca.PEM)),
			"the peer's certificate is not valid for the host of the URL (it holds btp.peer.test): dial one of its names, or set tls.servername to one"},
		{"wrong servername", testcert.ServerConfig(server, nil), testcert.TLSOption("ca", string(ca.PEM), "servername", "btp.peer.test"),
			`the peer's certificate is not valid for tls.servername "btp.peer.test" (it holds 127.0.0.1): set servername to one of its names`},
		// A btp+wss:// URL to a plain btp+ws:// peer: net/http reports the peer's HTTP answer as
		// http.ErrSchemeMismatch, no tls.RecordHeaderError.
		{"plain peer", nil, testcert.TLSOption("ca", string(ca.PEM)), "the peer's port does not speak TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			if tc.server == nil {
				url = "btp+wss://u:s3cret@" + startServer(t, 0, echo, nil).Addr().String() + "/btp"
			} else {
				_, url = startTLSServer(t, tc.server)
			}
			o := tlsClientOptions(t, url, tc.tls)
			if tc.hint == "" {
				roundTrip(t, startClient(t, url, echo, func(co *ClientOptions) { *co = o }))
				return
			}
			var buf testlog.Buffer
			o.Common.Logger = jsonLogger(&buf)
			c, err := NewClient(o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.connect(t.Context())
			if err == nil {
				t.Fatal("connected")
			}
			if k := failureKind(err); k == "network" {
				t.Errorf("failureKind(%v) = network: a TLS refusal would be logged as the peer being down", err)
			}
			c.logRetry(false, err, time.Second)
			recs := logRecords(t, &buf)
			if len(recs) != 1 {
				t.Fatalf("%d log lines; want 1", len(recs))
			}
			t.Logf("error: %v\nhint: %v", recs[0]["error"], recs[0]["hint"])
			if h, _ := recs[0]["hint"].(string); !strings.Contains(h, tc.hint) {
				t.Errorf("hint %q; want it to contain %q", h, tc.hint)
			}
		})
	}
}

// TestClientTLSOptionsChecked: options built by hand get the checks of parsed ones.
func TestClientTLSOptionsChecked(t *testing.T) {
	cfg, err := (&tlsopt.Options{}).Config("tls")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    ClientOptions
		want string
	}{
		{ClientOptions{Server: "btp+ws://u:t@peer", TLS: cfg}, "btp: tls applies to btp+wss:// URLs only; server is btp+ws://u:xxxxx@peer"},
		{ClientOptions{Server: "btp+wss://u:t@peer", TLS: cfg, HTTPClient: newCoalescingHTTPClient(0, nil)}, "set TLS or HTTPClient, not both"},
	} {
		if _, err := NewClient(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClient(%s): %v; want %q", tc.o.Server, err, tc.want)
		}
	}
}
