package btp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

// TestExpiredCertificateLoggedOnce: a peer whose TLS certificate has expired fails every
// attempt alike, though x509's text names the current time each time: one WARN per
// retryLogEvery, not one per attempt.
func TestExpiredCertificateLoggedOnce(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t0 := time.Unix(1_700_000_000, 0)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peer"},
		NotBefore: t0.Add(-48 * time.Hour), NotAfter: t0.Add(-24 * time.Hour), // expired
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Listener.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AddCert(cert)
	var clock atomic.Int64 // the client's verification clock: seconds after t0
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: roots,
		Time: func() time.Time { return t0.Add(time.Duration(clock.Load()) * time.Second) }}}}

	var buf testlog.Buffer
	c, err := NewClient(ClientOptions{Server: "btp+wss://u:t@" + ln.Addr().String(), HTTPClient: hc,
		Common: Common{Logger: jsonLogger(&buf)}})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	c.now = func() time.Time { return now }
	const attempts = 4
	for i := range attempts {
		clock.Store(int64(3 * i)) // one attempt every 3 s, as the backoff does
		now = t0.Add(time.Duration(3*i) * time.Second)
		_, err := c.connect(t.Context())
		if err == nil {
			t.Fatal("connected to a peer with an expired certificate")
		}
		t.Logf("attempt %d: kind %q", i, failureKind(err))
		c.logRetry(false, err, 3*time.Second)
	}
	if n := len(logRecords(t, &buf)); n != 1 {
		t.Errorf("%d attempts failing alike within %v: %d WARN lines; want 1", attempts, retryLogEvery, n)
	}
}

// TestTimeoutIsANetworkFailure: a peer that accepts TCP and never answers the handshake
// fails as a network failure, like one that refuses: a peer flapping between hung and down is
// logged once per retryLogEvery, not at every change.
func TestTimeoutIsANetworkFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	c, err := NewClient(ClientOptions{Server: "btp+ws://u:t@" + ln.Addr().String(),
		Common: Common{ResponseTimeout: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.connect(t.Context())
	if err == nil {
		t.Fatal("connected")
	}
	if k := failureKind(err); k != "network" {
		t.Errorf("failureKind(%v) = %q; want \"network\" (timed out, as its comment says)", err, k)
	}
	// A peer flapping between hung and down is logged once per retryLogEvery.
	var buf testlog.Buffer
	c.core.Logger = jsonLogger(&buf)
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { return now }
	refused := fmt.Errorf("btp: dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	for _, e := range []error{err, refused, err, refused, err, refused} {
		now = now.Add(3 * time.Second)
		c.logRetry(false, e, 3*time.Second)
	}
	if n := len(logRecords(t, &buf)); n != 1 {
		t.Errorf("6 failed attempts in 18 s, alternately timed out and refused: %d WARN lines; want 1", n)
	}
}

func TestFailureKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "network"},
		{errors.New("plain"), "plain"},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", errors.New("the server answered 404 Not Found"))), "the server answered 404 Not Found"},
		{fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), "network"},
		{fmt.Errorf("dial: %w", &url.Error{Op: "Get", URL: "http://x", Err: io.EOF}), "network"},
		{fmt.Errorf("dial: %w", &url.Error{Op: "Get", URL: "http://x", Err: errors.New("http: server closed idle connection")}), "network"},
		{fmt.Errorf("auth: %w", &Error{Code: "F00", Name: "NotAcceptedError", Data: []byte("no")}), "btp F00 NotAcceptedError"},
		{fmt.Errorf("auth: %w", context.DeadlineExceeded), "network"},
		{fmt.Errorf("read: %w", ErrTimeout), "network"},
		// crypto/tls reports the peer's alert as a *net.OpError: not the peer being down.
		{fmt.Errorf("dial: %w", &url.Error{Op: "Get", URL: "https://x", Err: &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}}),
			"tls remote error: tls: certificate required"},
	} {
		if got := failureKind(tc.err); got != tc.want {
			t.Errorf("failureKind(%v) = %q; want %q", tc.err, got, tc.want)
		}
	}
}
