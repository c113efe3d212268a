package ilphttp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// startTLSServer serves a server link (token "in-token", fulfilling every Prepare) over TLS
// with cfg on 127.0.0.1, HTTP/2 too when h2; it returns the https:// URL of its endpoint and
// the HTTP major version of the last request.
func startTLSServer(t *testing.T, cfg *tls.Config, h2 bool) (string, *atomic.Int32) {
	t.Helper()
	srv := startServer(t, ModeSync, fulfilHandler, nil) // its plain listener stays unused
	var proto atomic.Int32
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(int32(r.ProtoMajor))
		srv.ServeHTTP(w, r)
	}))
	hs.TLS = cfg
	hs.EnableHTTP2 = h2
	hs.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failures the tests cause
	hs.StartTLS()
	t.Cleanup(hs.Close)
	if !strings.HasPrefix(hs.Listener.Addr().String(), "127.0.0.1:") {
		t.Fatalf("test server on %s; want 127.0.0.1", hs.Listener.Addr())
	}
	return "https://" + hs.Listener.Addr().String() + "/accounts/client/ilp", &proto
}

// TestSendTLS: an outgoing link with outgoing.tls POSTs to an https:// peer signed by a private
// CA — with mutual TLS, over HTTP/2, with servername — and a packet round-trips; a failed
// handshake is a T01 Reject, with the operator's hint in the log.
func TestSendTLS(t *testing.T) {
	ca := testcert.NewCA(t, "peers CA")
	other := testcert.NewCA(t, "someone else's CA")
	server := ca.Server(t, "127.0.0.1")
	named := ca.Server(t, "ilp.peer.test")
	client := ca.Client(t, "us")
	certFile := testcert.WriteFile(t, "cert.pem", client.CertPEM)
	keyFile := testcert.WriteFile(t, "key.pem", client.KeyPEM)
	mtls := testcert.TLSOption("ca", string(ca.PEM), "certFile", certFile, "keyFile", keyFile)

	for _, tc := range []struct {
		name   string
		server *tls.Config // nil: a plain peer
		h2     bool
		tls    string
		hint   string // "": the packet is fulfilled
	}{
		{"private CA", testcert.ServerConfig(server, nil), false, testcert.TLSOption("ca", string(ca.PEM)), ""},
		{"mutual TLS", testcert.ServerConfig(server, ca.Pool()), false, mtls, ""},
		{"mutual TLS over HTTP/2", testcert.ServerConfig(server, ca.Pool()), true, mtls, ""},
		{"servername", testcert.ServerConfig(named, nil), false, testcert.TLSOption("ca", string(ca.PEM), "servername", "ilp.peer.test"), ""},
		{"no client certificate", testcert.ServerConfig(server, ca.Pool()), false, testcert.TLSOption("ca", string(ca.PEM)),
			"the peer requires a client certificate and we sent none: set outgoing.tls.cert and outgoing.tls.key"},
		{"wrong CA", testcert.ServerConfig(server, nil), false, testcert.TLSOption("ca", string(other.PEM)),
			`the peer's certificate is not signed by an authority in outgoing.tls.ca/caFile (its issuer is "CN=peers CA")`},
		{"name mismatch", testcert.ServerConfig(named, nil), false, testcert.TLSOption("ca", string(ca.PEM)),
			"the peer's certificate is not valid for the host of the URL (it holds ilp.peer.test): dial one of its names, or set outgoing.tls.servername to one"},
		// An https:// URL to a plain http:// peer: net/http reports its HTTP answer as
		// http.ErrSchemeMismatch, no tls.RecordHeaderError.
		{"plain peer", nil, false, testcert.TLSOption("ca", string(ca.PEM)), "the peer's port does not speak TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			var proto *atomic.Int32
			if tc.server == nil {
				url = "https://" + startServer(t, ModeSync, fulfilHandler, nil).Addr().String() + "/accounts/client/ilp"
			} else {
				url, proto = startTLSServer(t, tc.server, tc.h2)
			}
			h2 := "false"
			if tc.h2 {
				h2 = "true"
			}
			var buf testlog.Buffer
			l := startTLSLink(t, `{"url":`+testcert.Quote(url)+`,"staticToken":"in-token","http2":`+h2+`,"tls":`+tc.tls+`}`, &buf, nil)
			f, err := l.Send(context.Background(), testPrepare(10*time.Second))
			if tc.hint == "" {
				if err != nil || f.Fulfillment != testFulfillment || string(f.Data) != "hello" {
					t.Fatalf("Send over TLS: %+v, %v; want the Fulfill", f, err)
				}
				if want := map[bool]int32{false: 1, true: 2}[tc.h2]; proto.Load() != want {
					t.Errorf("the peer got HTTP/%d; want HTTP/%d", proto.Load(), want)
				}
				return
			}
			wantReject(t, err, ilp.CodePeerUnreachable, testSelf, "account peer: TLS handshake with the peer failed; see the connector log")
			var rec struct{ Level, Error, Hint string }
			if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil {
				t.Fatalf("log %q: %v", buf.String(), err)
			}
			t.Logf("error: %s\nhint: %s", rec.Error, rec.Hint)
			if rec.Level != "WARN" || !strings.Contains(rec.Hint, tc.hint) {
				t.Errorf("log line %+v; want a WARN with a hint containing %q", rec, tc.hint)
			}
		})
	}
}

// TestTLSOptionsChecked: options built by hand get the checks of parsed ones.
func TestTLSOptionsChecked(t *testing.T) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Outgoing: &OutgoingOptions{URL: "http://peer:80/ilp", Auth: Auth{Token: "t"}, TLS: cfg}},
			"outgoing.tls applies to https:// URLs only; outgoing.url is http://peer:80"},
		{Options{Outgoing: &OutgoingOptions{URL: "https://peer/ilp", Auth: Auth{Token: "t"}, TLS: cfg}, Transport: newTransport(false)},
			"set Transport or Outgoing.TLS, not both"},
	} {
		if _, err := New(&tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v; want %q", err, tc.want)
		}
	}
}

// TestTLSFailuresLoggedByKind: each kind of TLS failure is rate-limited apart, by its hint: a
// new one within warnEvery of another (the peer fixed its certificate but now asks for ours)
// is a WARN, while the same one again is not.
func TestTLSFailuresLoggedByKind(t *testing.T) {
	ca, other := testcert.NewCA(t, "peers CA"), testcert.NewCA(t, "someone else's CA")
	// The peer's first handshake shows a certificate of another CA; the later ones the right
	// certificate, and ask for a client certificate we do not have.
	configs := []*tls.Config{testcert.ServerConfig(other.Server(t, "127.0.0.1"), nil), testcert.ServerConfig(ca.Server(t, "127.0.0.1"), ca.Pool())}
	var handshakes atomic.Int32
	url, _ := startTLSServer(t, &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return configs[min(int(handshakes.Add(1))-1, 1)], nil
	}}, false)
	var buf testlog.Buffer
	now := time.Unix(1_700_000_000, 0)
	l := startTLSLink(t, `{"url":`+testcert.Quote(url)+`,"staticToken":"in-token","tls":`+testcert.TLSOption("ca", string(ca.PEM))+`}`, &buf,
		func(l *Link) { l.now = func() time.Time { return now } }) // the three failures within warnEvery
	for range 3 {
		if _, err := l.Send(context.Background(), testPrepare(10*time.Second)); err == nil {
			t.Fatal("fulfilled")
		}
	}
	var hints []string
	for line := range strings.Lines(buf.String()) {
		var rec struct{ Level, Hint string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Level == "WARN" {
			hints = append(hints, rec.Hint)
		}
	}
	if len(hints) != 2 || !strings.Contains(hints[0], "not signed by an authority in outgoing.tls.ca") || !strings.Contains(hints[1], "requires a client certificate") {
		t.Errorf("WARN lines with hints %q; want the unknown authority's, then the client certificate's, once each", hints)
	}
}

// startTLSLink parses the options {"outgoing": outgoing} as a config would give them, builds the
// link of account "peer" (logging JSON to buf unless nil; before, unless nil, sees it first),
// starts it and closes it when the test ends.
func startTLSLink(t *testing.T, outgoing string, buf *testlog.Buffer, before func(*Link)) *Link {
	t.Helper()
	o, err := ParseOptions(json.RawMessage(`{"outgoing":` + outgoing + `}`))
	if err != nil {
		t.Fatal(err)
	}
	o.Account, o.Address = "peer", self
	if buf != nil {
		o.Logger = slog.New(slog.NewJSONHandler(buf, nil))
	}
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if before != nil {
		before(l)
	}
	if err := l.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return l
}
