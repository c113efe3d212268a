package ilphttp

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// TestServe checks how the server answers raw requests: auth, content types, body bounds.
func TestServe(t *testing.T) {
	var calls atomic.Int32
	srv := startServer(t, ModeSync, func(ctx2 ctxT, p *ilp.Prepare) (*ilp.Fulfill, error) {
		calls.Add(1)
		return fulfilHandler(ctx2, p)
	}, nil)
	url := serverURL(srv)
	prep := marshal(t, testPrepare(5*time.Second))
	big := append(append([]byte{}, prep...), make([]byte, DefaultMaxBodySize)...)
	tests := []struct {
		name   string
		hdr    map[string]string
		body   []byte
		status int
		sub    string // in the body of an error
		called bool
	}{
		{"bearer token", map[string]string{"Authorization": "Bearer in-token", "Content-Type": "application/octet-stream"}, prep, 200, "", true},
		{"lower-case bearer", map[string]string{"Authorization": "bearer in-token"}, prep, 200, "", true},
		{"bare token (legacy plugin)", map[string]string{"Authorization": "in-token"}, prep, 200, "", true},
		{"ilp+octet-stream", map[string]string{"Authorization": "Bearer in-token", "Content-Type": "application/ilp+octet-stream"}, prep, 200, "", true},
		{"octet-stream with parameter", map[string]string{"Authorization": "Bearer in-token", "Content-Type": "application/octet-stream; charset=binary"}, prep, 200, "", true},
		{"no content type", map[string]string{"Authorization": "Bearer in-token"}, prep, 200, "", true},
		{"no auth", nil, prep, 401, "missing or invalid Authorization", false},
		{"wrong token", map[string]string{"Authorization": "Bearer in-tokex"}, prep, 401, "missing or invalid", false},
		{"token prefix", map[string]string{"Authorization": "Bearer in-toke"}, prep, 401, "missing or invalid", false},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, prep, 401, "missing or invalid", false},
		{"text content type", map[string]string{"Authorization": "Bearer in-token", "Content-Type": "text/plain"}, prep, 415, "application/octet-stream", false},
		{"too large", map[string]string{"Authorization": "Bearer in-token"}, big, 413, "larger than 40000 bytes", false},
		{"empty body", map[string]string{"Authorization": "Bearer in-token"}, nil, 400, "empty body", false},
		{"not a packet", map[string]string{"Authorization": "Bearer in-token"}, []byte{99, 1, 0}, 400, "not an ILP Prepare", false},
		{"truncated prepare", map[string]string{"Authorization": "Bearer in-token"}, prep[:20], 400, "invalid ILP Prepare", false},
		{"reply without Request-Id", map[string]string{"Authorization": "Bearer in-token"}, mustFulfill(t), 400, "Request-Id", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := calls.Load()
			resp, body := post(t, url, tc.hdr, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == 200 {
				if f, err := ilp.ParseFulfill(body); err != nil || f.Fulfillment != testFulfillment {
					t.Fatalf("body is not the Fulfill: %v", err)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
					t.Fatalf("Content-Type %q", ct)
				}
			} else if !strings.Contains(string(body), tc.sub) {
				t.Fatalf("body %q does not say %q", body, tc.sub)
			}
			if called := calls.Load() > before; called != tc.called {
				t.Fatalf("handler called: %v, want %v", called, tc.called)
			}
		})
	}
}

// TestServeChunkedTooLarge sends a body without Content-Length: the bound still holds.
func TestServeChunkedTooLarge(t *testing.T) {
	srv := startServer(t, ModeSync, fulfilHandler, nil)
	body := io.MultiReader(bytes.NewReader(marshal(t, testPrepare(time.Second))), bytes.NewReader(make([]byte, 50000)))
	req, _ := http.NewRequest(http.MethodPost, serverURL(srv), body) // an io.Reader of unknown length: chunked
	req.Header.Set("Authorization", "Bearer in-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d (request length %d), want 413 for a chunked body", resp.StatusCode, req.ContentLength)
	}
}

func TestServeMethods(t *testing.T) {
	srv := startServer(t, ModeSync, fulfilHandler, nil)
	for _, tc := range []struct {
		method string
		status int
	}{{"GET", 200}, {"PUT", 405}, {"DELETE", 405}} {
		req, _ := http.NewRequest(tc.method, serverURL(srv), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.method, resp.StatusCode, tc.status)
		}
	}
}

// TestServeH2C: a peer speaking HTTP/2 with prior knowledge (ilp-plugin-http's http2 option).
func TestServeH2C(t *testing.T) {
	srv := startServer(t, ModeSync, fulfilHandler, nil)
	l, err := New(&Options{Account: "peer", Address: self, Transport: newTransport(true),
		Outgoing: &OutgoingOptions{URL: serverURL(srv), Auth: Auth{Token: "in-token"}, HTTP2: true}})
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Start(t.Context(), nil)
	defer l.Close()
	var proto atomic.Value
	l.client.Transport = protoRecorder{l.client.Transport, &proto}
	if _, err := l.Send(t.Context(), testPrepare(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if p := proto.Load(); p != "HTTP/2.0" {
		t.Fatalf("protocol %v, want HTTP/2.0", p)
	}
}

type protoRecorder struct {
	rt http.RoundTripper
	v  *atomic.Value
}

func (p protoRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := p.rt.RoundTrip(r)
	if err == nil {
		p.v.Store(resp.Proto)
	}
	return resp, err
}

func mustFulfill(t *testing.T) []byte {
	b, err := (&ilp.Fulfill{Fulfillment: testFulfillment}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSyncCloseAnswersPrepare: Close lets a sync Prepare being handled run and be answered
// instead of cancelling it (its downstream may already have fulfilled it).
func TestSyncCloseAnswersPrepare(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	outcome := make(chan string, 2)
	srv := startServer(t, ModeSync, func(ctx ctxT, p *ilp.Prepare) (*ilp.Fulfill, error) {
		close(entered)
		select {
		case <-release:
			outcome <- "answered"
			return fulfilHandler(ctx, p)
		case <-ctx.Done():
			outcome <- "cancelled"
			return nil, ctx.Err()
		}
	}, nil)
	type result struct {
		status int
		body   []byte
	}
	res := make(chan result, 1)
	go func() {
		resp, body := post(t, serverURL(srv), map[string]string{"Authorization": "Bearer in-token"}, marshal(t, testPrepare(20*time.Second)))
		res <- result{resp.StatusCode, body}
	}()
	<-entered
	closed := make(chan struct{})
	go func() { _ = srv.Close(); close(closed) }()
	waitClose(t, closed, outcome, release)
	r := <-res
	if f, err := ilp.ParseFulfill(r.body); r.status != 200 || err != nil || f.Fulfillment != testFulfillment {
		t.Fatalf("status %d, body not the Fulfill: %v", r.status, err)
	}
}

// TestServeAsyncBodyLimits: in async mode the server reads replies up to maxReplySize (a
// peer's largest valid Reject), but a Prepare still only up to DefaultMaxBodySize.
func TestServeAsyncBodyLimits(t *testing.T) {
	a := startAsyncSender(t, "http://127.0.0.1:1/")
	const id = "11111111-2222-4333-8444-555555555555"
	ch := make(chan []byte, 1)
	a.pending.Store(id, ch)
	hdr := map[string]string{"Authorization": "Bearer in-token", "Request-Id": id}
	rej := maxReject(t)
	if resp, body := post(t, serverURL(a), hdr, rej); resp.StatusCode != 200 {
		t.Fatalf("largest Reject as a reply: status %d (%s), want 200", resp.StatusCode, body)
	}
	if got := <-ch; !bytes.Equal(got, rej) {
		t.Fatal("the reply delivered is not the Reject posted")
	}
	big := append(marshal(t, testPrepare(5*time.Second)), make([]byte, maxReplySize)...)[:maxReplySize]
	if resp, body := post(t, serverURL(a), asyncHeaders("http://127.0.0.1:1/cb", "x"), big); resp.StatusCode != 413 {
		t.Fatalf("Prepare of %d bytes: status %d (%s), want 413", len(big), resp.StatusCode, body)
	}
}

// maxReject is the encoding of the largest valid Reject.
func maxReject(t *testing.T) []byte {
	t.Helper()
	r := &ilp.Reject{Code: ilp.CodeFinalApplicationError, TriggeredBy: ilp.Address("test." + strings.Repeat("a", ilp.MaxAddressSize-5)),
		Message: strings.Repeat("m", ilp.MaxMessageSize), Data: make([]byte, ilp.MaxDataSize)}
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMaxReplySize: maxReplySize is exactly the largest valid Reject (a Fulfill is smaller).
func TestMaxReplySize(t *testing.T) {
	if n := len(maxReject(t)); n != maxReplySize {
		t.Fatalf("largest Reject is %d bytes, maxReplySize %d", n, maxReplySize)
	}
}
