package ilphttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

const testSelf = ilp.Address("test.self")

var testFulfillment = [32]byte{1, 2, 3}

func self() ilp.Address { return testSelf }

func testPrepare(expiry time.Duration) *ilp.Prepare {
	return &ilp.Prepare{Amount: 10, ExpiresAt: time.Now().Add(expiry), ExecutionCondition: sha256.Sum256(testFulfillment[:]),
		Destination: "test.peer.bob", Data: []byte("hello")}
}

func fulfilHandler(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	return &ilp.Fulfill{Fulfillment: testFulfillment, Data: p.Data}, nil
}

// startServer starts a link that only listens on 127.0.0.1, with token "in-token".
func startServer(t *testing.T, mode Mode, h ilp.Handler, out *OutgoingOptions) *Link {
	t.Helper()
	l, err := New(&Options{Mode: mode, Account: "server", Address: self,
		Incoming: &IncomingOptions{Host: "127.0.0.1", Auth: Auth{Token: "in-token"}}, Outgoing: out})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func serverURL(l *Link) string { return "http://" + l.Addr().String() + "/accounts/client/ilp" }

// startClient starts a link that only sends, to url with token tok.
func startClient(t *testing.T, url, tok string) *Link {
	t.Helper()
	l, err := New(&Options{Account: "peer", Address: self, Outgoing: &OutgoingOptions{URL: url, Auth: Auth{Token: tok}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// post sends a raw request to a server link.
func post(t *testing.T, url string, hdr map[string]string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp, b.Bytes()
}

func marshal(t *testing.T, p *ilp.Prepare) []byte {
	t.Helper()
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantReject checks that err is a Reject with code, triggeredBy and a message containing sub.
func wantReject(t *testing.T, err error, code ilp.ErrorCode, by ilp.Address, sub string) {
	t.Helper()
	r, ok := err.(*ilp.Reject)
	if !ok {
		t.Fatalf("error %v (%T), want a %s Reject", err, err, code)
	}
	if r.Code != code || r.TriggeredBy != by || !bytes.Contains([]byte(r.Message), []byte(sub)) {
		t.Fatalf("Reject %s by %q %q, want %s by %q containing %q", r.Code, r.TriggeredBy, r.Message, code, by, sub)
	}
}

type ctxT = context.Context
