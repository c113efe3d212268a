package ilphttp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
)

func TestSendSync(t *testing.T) {
	peerReject := &ilp.Reject{Code: ilp.CodeUnreachable, TriggeredBy: "test.peer", Message: "no route", Data: []byte{7}}
	tests := []struct {
		name    string
		handler ilp.Handler
		check   func(t *testing.T, f *ilp.Fulfill, err error)
	}{
		{"fulfil", fulfilHandler, func(t *testing.T, f *ilp.Fulfill, err error) {
			if err != nil || f == nil || f.Fulfillment != testFulfillment || string(f.Data) != "hello" {
				t.Fatalf("got %+v, %v; want the Fulfill with data hello", f, err)
			}
		}},
		{"peer reject passes through", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, peerReject },
			func(t *testing.T, _ *ilp.Fulfill, err error) {
				wantReject(t, err, ilp.CodeUnreachable, "test.peer", "no route")
				if r := err.(*ilp.Reject); len(r.Data) != 1 || r.Data[0] != 7 {
					t.Fatalf("reject data %x, want 07", r.Data)
				}
			}},
		{"handler error becomes T00", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, errors.New("store down") },
			func(t *testing.T, _ *ilp.Fulfill, err error) {
				wantReject(t, err, ilp.CodeInternalError, testSelf, "account server")
			}},
		{"nil fulfil becomes T00", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, nil },
			func(t *testing.T, _ *ilp.Fulfill, err error) {
				wantReject(t, err, ilp.CodeInternalError, testSelf, "internal error")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, ModeSync, tc.handler, nil)
			cl := startClient(t, serverURL(srv), "in-token")
			f, err := cl.Send(context.Background(), testPrepare(5*time.Second))
			tc.check(t, f, err)
		})
	}
}

// TestSendErrors maps what a peer's HTTP server does to the Reject codes of RFC 35 and the
// deployed connectors. The Reject goes upstream: it never carries the peer's address or its
// error body (those are logged).
func TestSendErrors(t *testing.T) {
	const secret = "internal detail"
	tests := []struct {
		name   string
		serve  http.HandlerFunc
		expiry time.Duration
		code   ilp.ErrorCode
		sub    string
	}{
		{"5xx is T00", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "db down: "+secret, 500) }, 5 * time.Second, ilp.CodeInternalError, "account peer: the peer failed (HTTP 500); see the connector log"},
		{"502 is T00", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(502) }, 5 * time.Second, ilp.CodeInternalError, "HTTP 502"},
		{"401 names the account", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, secret, http.StatusUnauthorized) }, 5 * time.Second, ilp.CodePeerUnreachable, "account peer: the peer refused our credentials (HTTP 401)"},
		{"403 names the account", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(403) }, 5 * time.Second, ilp.CodePeerUnreachable, "account peer: the peer refused our credentials (HTTP 403)"},
		{"429 is T05", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, secret, http.StatusTooManyRequests) }, 5 * time.Second, ilp.CodeRateLimited, "HTTP 429"},
		{"other 4xx is F00", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "too big: "+secret, http.StatusRequestEntityTooLarge)
		}, 5 * time.Second, ilp.CodeBadRequest, "HTTP 413"},
		{"garbage body is F09", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) }, 5 * time.Second, ilp.CodeInvalidPeerResponse, "invalid ILP packet"},
		{"empty body is F09", func(w http.ResponseWriter, _ *http.Request) {}, 5 * time.Second, ilp.CodeInvalidPeerResponse, "invalid ILP packet"},
		{"oversized body is F09", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(make([]byte, maxReplySize+1)) }, 5 * time.Second, ilp.CodeInvalidPeerResponse, "more than"},
		{"202 in sync mode", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(202) }, 5 * time.Second, ilp.CodePeerUnreachable, "answered asynchronously (HTTP 202)"},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, 5 * time.Second, ilp.CodePeerUnreachable, "HTTP 307"},
		{"no answer before expiry is R00", hang, 200 * time.Millisecond, ilp.CodeTransferTimedOut, "did not answer before the packet expired"},
		{"connection dropped is T01", func(w http.ResponseWriter, _ *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = c.Close()
			}
		}, 5 * time.Second, ilp.CodePeerUnreachable, "account peer: peer unreachable; see the connector log"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(tc.serve) // binds 127.0.0.1
			defer ts.Close()
			cl := startClient(t, ts.URL+"/accounts/secret-acct/ilp", "tok")
			_, err := cl.Send(context.Background(), testPrepare(tc.expiry))
			wantReject(t, err, tc.code, testSelf, tc.sub)
			wantNoLeak(t, err, "127.0.0.1", "secret-acct", secret, "staticToken")
		})
	}
}

// wantNoLeak checks that a Reject's message names none of the given internals.
func wantNoLeak(t *testing.T, err error, internals ...string) {
	t.Helper()
	msg := err.(*ilp.Reject).Message
	for _, s := range internals {
		if strings.Contains(msg, s) {
			t.Fatalf("Reject message %q leaks %q upstream", msg, s)
		}
	}
}

// TestStatusCode maps every HTTP status class to the ILP error code RFC 35 asks for: the
// sender retries temporary ones (T), gives up on final ones (F).
func TestStatusCode(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   ilp.ErrorCode
	}{
		{http.StatusUnauthorized, ilp.CodePeerUnreachable},
		{http.StatusForbidden, ilp.CodePeerUnreachable},
		{http.StatusAccepted, ilp.CodePeerUnreachable},
		{http.StatusTemporaryRedirect, ilp.CodePeerUnreachable},
		{http.StatusTooManyRequests, ilp.CodeRateLimited},
		{http.StatusRequestTimeout, ilp.CodeInternalError},
		{http.StatusConflict, ilp.CodeInternalError}, // RFC 35: the sender retries after 409
		{http.StatusBadRequest, ilp.CodeBadRequest},
		{http.StatusNotFound, ilp.CodeBadRequest},
		{http.StatusRequestEntityTooLarge, ilp.CodeBadRequest},
		{http.StatusInternalServerError, ilp.CodeInternalError},
		{http.StatusServiceUnavailable, ilp.CodeInternalError},
	} {
		if code, what, hint := statusCode(tc.status); code != tc.code || what == "" || hint == "" {
			t.Errorf("HTTP %d: %s %q %q, want %s with a message and a hint", tc.status, code, what, hint, tc.code)
		}
	}
}

// TestSendLargestReject: a peer's largest valid Reject passes through unchanged.
func TestSendLargestReject(t *testing.T) {
	b := maxReject(t)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(b) }))
	defer ts.Close()
	cl := startClient(t, ts.URL, "tok")
	_, err := cl.Send(context.Background(), testPrepare(5*time.Second))
	r, ok := err.(*ilp.Reject)
	if !ok || r.Code != ilp.CodeFinalApplicationError || len(r.Data) != ilp.MaxDataSize {
		t.Fatalf("got %v, want the peer's F99 Reject", err)
	}
}

// hang reads the request and never answers; it returns when the client goes away (the server
// notices only once the body has been read).
func hang(_ http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

func TestSendConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cl := startClient(t, "http://"+addr+"/ilp", "tok")
	_, err = cl.Send(context.Background(), testPrepare(5*time.Second))
	wantReject(t, err, ilp.CodePeerUnreachable, testSelf, "account peer: peer unreachable (connection refused); see the connector log")
	wantNoLeak(t, err, addr)
}

func TestSendCancelled(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(hang))
	defer ts.Close()
	cl := startClient(t, ts.URL, "tok")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := cl.Send(ctx, testPrepare(10*time.Second)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// TestSendHeaders checks what a peer receives: bearer token, content type, peer name.
func TestSendHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		b, _ := (&ilp.Fulfill{Fulfillment: testFulfillment}).MarshalBinary()
		_, _ = w.Write(b)
	}))
	defer ts.Close()
	tests := []struct {
		name string
		out  OutgoingOptions
		auth string
	}{
		{"bearer", OutgoingOptions{Auth: Auth{Token: "tok"}, Name: "alice", SendILPDestination: true}, "Bearer tok"},
		{"legacy raw token", OutgoingOptions{Auth: Auth{Token: "tok"}, RawAuthorization: true}, "tok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.out.URL = ts.URL
			l, err := New(&Options{Account: "peer", Address: self, Outgoing: &tc.out})
			if err != nil {
				t.Fatal(err)
			}
			_ = l.Start(context.Background(), nil)
			defer l.Close()
			if _, err := l.Send(context.Background(), testPrepare(5*time.Second)); err != nil {
				t.Fatal(err)
			}
			h := <-got
			if h.Get("Authorization") != tc.auth || h.Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("Authorization %q Content-Type %q, want %q application/octet-stream", h.Get("Authorization"), h.Get("Content-Type"), tc.auth)
			}
			if tc.out.Name != "" && (h.Get("ILP-Peer-Name") != "alice" || h.Get("ILP-Destination") != "test.peer.bob") {
				t.Fatalf("ILP-Peer-Name %q ILP-Destination %q", h.Get("ILP-Peer-Name"), h.Get("ILP-Destination"))
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	l, err := New(&Options{Account: "a", Address: self, Outgoing: &OutgoingOptions{URL: "http://127.0.0.1:1/", Auth: Auth{Token: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Connected() {
		t.Fatal("connected before Start")
	}
	if _, err := l.Send(context.Background(), testPrepare(time.Second)); !errors.Is(err, link.ErrNotConnected) {
		t.Fatalf("Send before Start: %v", err)
	}
	_ = l.Start(context.Background(), nil)
	if !l.Connected() {
		t.Fatal("not connected after Start")
	}
	_ = l.Close()
	if l.Connected() {
		t.Fatal("connected after Close")
	}
	if _, err := l.Send(context.Background(), testPrepare(time.Second)); !errors.Is(err, link.ErrNotConnected) {
		t.Fatalf("Send after Close: %v", err)
	}
	// An incoming-only link cannot send.
	srv := startServer(t, ModeSync, fulfilHandler, nil)
	if srv.Connected() {
		t.Fatal("an incoming-only link reports that it can send")
	}
}

func TestStartPortInUse(t *testing.T) {
	srv := startServer(t, ModeSync, fulfilHandler, nil)
	_, port, _ := net.SplitHostPort(srv.Addr().String())
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	l, err := New(&Options{Account: "dup", Address: self, Incoming: &IncomingOptions{Host: "127.0.0.1", Port: p, Auth: Auth{Token: "t"}}})
	if err != nil {
		t.Fatal(err)
	}
	err = l.Start(context.Background(), fulfilHandler)
	if err == nil || !strings.Contains(err.Error(), "account dup: cannot listen") {
		t.Fatalf("got %v, want a listen error naming the account", err)
	}
}

// TestStartCloseRace: Start and Close called together are ordered: once Close has returned,
// a link that started serves nothing (go test -race also checks the fields they share).
func TestStartCloseRace(t *testing.T) {
	for range 50 {
		l, err := New(&Options{Account: "s", Address: self, Incoming: &IncomingOptions{Host: "127.0.0.1", Auth: Auth{Token: "x"}}})
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan error, 1)
		go func() { started <- l.Start(context.Background(), fulfilHandler) }()
		_ = l.Close()
		if err := <-started; err == nil {
			if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
				_ = c.Close()
				t.Fatal("the link still serves after Close returned")
			}
		}
	}
}

// TestIdleConnectionsClosedBeforeNodeDoes: both transports drop an idle connection before a
// Node.js server's default keepAliveTimeout (5 s) would, so that no Prepare is written to a
// connection the peer is closing (Go does not resend a POST; the packet would fail T01).
func TestIdleConnectionsClosedBeforeNodeDoes(t *testing.T) {
	const nodeKeepAliveTimeout = 5 * time.Second
	for _, h2 := range []bool{false, true} {
		if got := newTransport(h2).IdleConnTimeout; got <= 0 || got >= nodeKeepAliveTimeout {
			t.Errorf("h2=%v: IdleConnTimeout %v, want above 0 and below %v", h2, got, nodeKeepAliveTimeout)
		}
	}
}
