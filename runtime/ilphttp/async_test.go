package ilphttp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// startAsyncSender starts a link in async mode that sends to url and takes replies on its own
// server; its callback URL is set once its port is known.
func startAsyncSender(t *testing.T, url string) *Link {
	t.Helper()
	out := &OutgoingOptions{URL: url, Auth: Auth{Token: "in-token"}, CallbackURL: "http://127.0.0.1:1/placeholder"}
	a := startServer(t, ModeAsync, fulfilHandler, out)
	out.CallbackURL = "http://" + a.Addr().String() + "/callback" // before any Send
	return a
}

func TestAsync(t *testing.T) {
	peerReject := &ilp.Reject{Code: ilp.CodeUnreachable, TriggeredBy: "test.peer", Message: "no route"}
	tests := []struct {
		name     string
		peerMode Mode
		handler  ilp.Handler
		code     ilp.ErrorCode // "" for a Fulfill
	}{
		{"fulfil by callback", ModeAsync, fulfilHandler, ""},
		{"reject by callback", ModeAsync, func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, peerReject }, ilp.CodeUnreachable},
		{"sync peer answers in the response", ModeSync, fulfilHandler, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The peer replies with token in-token, which the sender's server expects.
			peer := startServer(t, tc.peerMode, tc.handler, &OutgoingOptions{URL: "http://127.0.0.1:1/", Auth: Auth{Token: "in-token"}, CallbackURL: "http://127.0.0.1:1/"})
			a := startAsyncSender(t, serverURL(peer))
			f, err := a.Send(context.Background(), testPrepare(5*time.Second))
			if tc.code != "" {
				wantReject(t, err, tc.code, "test.peer", "no route")
				return
			}
			if err != nil || f.Fulfillment != testFulfillment || string(f.Data) != "hello" {
				t.Fatalf("got %+v, %v; want the Fulfill", f, err)
			}
			if n := pendingCount(a); n != 0 {
				t.Fatalf("%d requests still pending after the answer", n)
			}
		})
	}
}

func pendingCount(l *Link) int {
	n := 0
	l.pending.Range(func(any, any) bool { n++; return true })
	return n
}

func TestAsyncNoCallbackIsR00(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	defer ts.Close()
	a := startAsyncSender(t, ts.URL)
	_, err := a.Send(context.Background(), testPrepare(200*time.Millisecond))
	wantReject(t, err, ilp.CodeTransferTimedOut, testSelf, "account server did not answer before the packet expired")
}

// TestAsyncFirstReplyWins: a second reply for the same Request-Id, or one for an unknown id,
// gets 400.
func TestAsyncFirstReplyWins(t *testing.T) {
	a := startAsyncSender(t, "http://127.0.0.1:1/")
	ch := make(chan []byte, 1)
	a.pending.Store("11111111-2222-4333-8444-555555555555", ch)
	hdr := map[string]string{"Authorization": "Bearer in-token", "Request-Id": "11111111-2222-4333-8444-555555555555"}
	for i, want := range []int{200, 400} {
		resp, body := post(t, serverURL(a), hdr, mustFulfill(t))
		if resp.StatusCode != want {
			t.Fatalf("reply %d: status %d (%s), want %d", i+1, resp.StatusCode, body, want)
		}
	}
	if f, err := ilp.ParseFulfill(<-ch); err != nil || f.Fulfillment != testFulfillment {
		t.Fatalf("delivered reply: %v", err)
	}
	hdr["Authorization"] = "Bearer wrong"
	if resp, _ := post(t, serverURL(a), hdr, mustFulfill(t)); resp.StatusCode != 401 {
		t.Fatalf("unauthenticated reply: status %d, want 401", resp.StatusCode)
	}
}

// TestAsyncReplyRetries: the reply is POSTed again after 5xx, stops at the first 2xx, and
// carries the Request-Id and the replier's token.
func TestAsyncReplyRetries(t *testing.T) {
	type hit struct {
		id, auth string
		body     []byte
	}
	var mu sync.Mutex
	var hits []hit
	done := make(chan struct{})
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		hits = append(hits, hit{r.Header.Get("Request-Id"), r.Header.Get("Authorization"), b})
		switch len(hits) {
		case 1, 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			close(done)
		}
	}))
	defer cb.Close()
	peer := startServer(t, ModeAsync, fulfilHandler, &OutgoingOptions{URL: "http://127.0.0.1:1/", Auth: Auth{Token: "reply-token"}, CallbackURL: "http://127.0.0.1:1/"})
	hdr := map[string]string{"Authorization": "Bearer in-token", "Callback-Url": cb.URL + "/cb", "Request-Id": "abc"}
	resp, body := post(t, serverURL(peer), hdr, marshal(t, testPrepare(10*time.Second)))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d (%s), want 202", resp.StatusCode, body)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reply not retried until accepted")
	}
	_ = peer.Close() // waits for the reply goroutine: no fourth attempt after the 200
	mu.Lock()
	defer mu.Unlock()
	if len(hits) != 3 {
		t.Fatalf("%d attempts, want 3", len(hits))
	}
	for _, h := range hits {
		if h.id != "abc" || h.auth != "Bearer reply-token" {
			t.Fatalf("attempt with Request-Id %q Authorization %q", h.id, h.auth)
		}
		if f, err := ilp.ParseFulfill(h.body); err != nil || f.Fulfillment != testFulfillment {
			t.Fatalf("attempt body is not the Fulfill: %v", err)
		}
	}
}

func TestAsyncBadCallback(t *testing.T) {
	peer := startServer(t, ModeAsync, fulfilHandler, &OutgoingOptions{URL: "http://127.0.0.1:1/", Auth: Auth{Token: "x"}, CallbackURL: "http://127.0.0.1:1/"})
	hdr := map[string]string{"Authorization": "Bearer in-token", "Callback-Url": "file:///etc/passwd", "Request-Id": "abc"}
	if resp, body := post(t, serverURL(peer), hdr, marshal(t, testPrepare(time.Second))); resp.StatusCode != 400 {
		t.Fatalf("status %d (%s), want 400", resp.StatusCode, body)
	}
}
