package ilphttp

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/internal/testwait"
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

// startAsyncPeer starts a link in async mode whose peer (outgoing.url, where its replies may
// go) is at peerURL; it replies with token "reply-token".
func startAsyncPeer(t *testing.T, h ilp.Handler, peerURL string) *Link {
	t.Helper()
	return startServer(t, ModeAsync, h, &OutgoingOptions{URL: peerURL, Auth: Auth{Token: "reply-token"}, CallbackURL: "http://127.0.0.1:1/"})
}

// asyncHeaders are the headers of an async Prepare from the peer.
func asyncHeaders(callback, id string) map[string]string {
	return map[string]string{"Authorization": "Bearer in-token", "Callback-Url": callback, "Request-Id": id}
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
			// The sender starts first, so that the peer's outgoing.url (the origin its replies
			// may go to) is the sender's server; the peer replies with token in-token, which the
			// sender's server expects.
			a := startAsyncSender(t, "http://127.0.0.1:1/")
			peer := startServer(t, tc.peerMode, tc.handler, &OutgoingOptions{URL: serverURL(a), Auth: Auth{Token: "in-token"}, CallbackURL: "http://127.0.0.1:1/"})
			a.opts.Outgoing.URL = serverURL(peer) // before any Send
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
	peer := startAsyncPeer(t, fulfilHandler, cb.URL+"/ilp")
	resp, body := post(t, serverURL(peer), asyncHeaders(cb.URL+"/cb", "abc"), marshal(t, testPrepare(10*time.Second)))
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

// TestCheckCallback: a reply, which carries our credentials for the peer, goes only to the
// origin of the peer's outgoing.url.
func TestCheckCallback(t *testing.T) {
	const origin = "https://peer-ilp.example:8443"
	tests := []struct {
		callback string
		ok       bool
	}{
		{"https://peer-ilp.example:8443/ilp/callback", true},
		{"https://PEER-ILP.example:8443/other?x=1", true},
		{"https://peer-ilp.example:8444/ilp/callback", false},
		{"https://peer-ilp.example/ilp/callback", false}, // port 443
		{"http://peer-ilp.example:8443/ilp/callback", false},
		{"https://evil.example:8443/", false},
		{"https://peer-ilp.example.evil.example:8443/", false},
		{"https://user:pw@peer-ilp.example:8443/", false},
		{"https://127.0.0.1:8443/", false},
		{"file:///etc/passwd", false},
		{"/relative", false},
		// Hosts that are not ASCII are dialed in punycode, yet fold to the peer's name:
		// U+0130 lower-cases to i, the Kelvin sign U+212A to k.
		{"https://peer-%C4%B0lp.example:8443/", false},
		{"https://peer-\u0130lp.example:8443/", false},
		{"https://peer-ilp.exa%E2%84%AAmple:8443/", false},
		{"https://peer-ilp.ex\u00e4mple:8443/", false},
	}
	for _, tc := range tests {
		t.Run(tc.callback, func(t *testing.T) {
			err := checkCallback(tc.callback, origin)
			if (err == nil) != tc.ok {
				t.Fatalf("checkCallback = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "Callback-Url") {
				t.Fatalf("message %q does not name Callback-Url", err)
			}
		})
	}
}

func TestOriginOf(t *testing.T) {
	for in, want := range map[string]string{
		"http://Peer:80/a":            "http://peer:80",
		"http://peer/a":               "http://peer:80",
		"https://peer/a":              "https://peer:443",
		"https://[::1]:7768/accounts": "https://[::1]:7768",
		"ftp://peer/":                 "",
		"http://peer-%C4%B0lp/":       "",
		"http://p\u00e9er/":           "",
	} {
		if got := originOf(in); got != want {
			t.Errorf("originOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAsyncCallbackElsewhereRefused: a Callback-Url off the peer's origin gets 400, the
// Prepare is not handled and nothing is POSTed there.
func TestAsyncCallbackElsewhereRefused(t *testing.T) {
	got := make(chan string, 4)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
	}))
	defer elsewhere.Close()
	var calls atomic.Int32
	h := func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		calls.Add(1)
		return fulfilHandler(ctx, p)
	}
	peer := startAsyncPeer(t, h, "http://127.0.0.2:9/ilp") // the peer is not the callback's host
	for _, cb := range []string{elsewhere.URL + "/internal", "file:///etc/passwd"} {
		resp, body := post(t, serverURL(peer), asyncHeaders(cb, "abc"), marshal(t, testPrepare(5*time.Second)))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Callback-Url") {
			t.Fatalf("%s: status %d (%s), want 400 naming Callback-Url", cb, resp.StatusCode, body)
		}
	}
	_ = peer.Close() // waits for any reply goroutine
	if n := calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times for refused Prepares", n)
	}
	select {
	case auth := <-got:
		t.Fatalf("a reply was POSTed off the peer's origin, with Authorization %q", auth)
	default:
	}
}

// TestAsyncRepeatedRequestID: a Prepare POSTed again with the same Request-Id (the peer's
// retry) gets 202 but is handled, and answered, once.
func TestAsyncRepeatedRequestID(t *testing.T) {
	var replies atomic.Int32
	cb := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { replies.Add(1) }))
	defer cb.Close()
	var calls atomic.Int32
	h := func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		calls.Add(1)
		return fulfilHandler(ctx, p)
	}
	peer := startAsyncPeer(t, h, cb.URL+"/ilp")
	body := marshal(t, testPrepare(5*time.Second))
	for i, id := range []string{"same", "same", "other"} {
		if resp, b := post(t, serverURL(peer), asyncHeaders(cb.URL+"/cb", id), body); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("request %d: status %d (%s), want 202", i+1, resp.StatusCode, b)
		}
	}
	_ = peer.Close() // waits for the handlers and their replies
	if c, r := calls.Load(), replies.Load(); c != 2 || r != 2 {
		t.Fatalf("handled %d times, %d replies; want 2 and 2 (one per Request-Id)", c, r)
	}
}

// TestAsyncCloseDeliversReply: Close waits for a reply being delivered instead of cancelling
// it; the reply may be a Fulfill we already paid for downstream.
func TestAsyncCloseDeliversReply(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	outcome := make(chan string, 4)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release: // a slow but healthy peer
			outcome <- "delivered"
		case <-r.Context().Done():
			outcome <- "cancelled"
		}
	}))
	defer cb.Close()
	peer := startAsyncPeer(t, fulfilHandler, cb.URL+"/ilp")
	if resp, b := post(t, serverURL(peer), asyncHeaders(cb.URL+"/cb", "abc"), marshal(t, testPrepare(20*time.Second))); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d (%s), want 202", resp.StatusCode, b)
	}
	<-arrived
	closed := make(chan struct{})
	go func() { _ = peer.Close(); close(closed) }()
	waitClose(t, closed, outcome, release)
	if o := <-outcome; o != "delivered" {
		t.Fatalf("reply %s, want delivered", o)
	}
}

// waitClose checks that Close (closed) does not return, nor cancel the request in progress
// (outcome), before release; then releases the request and waits for Close. The first wait
// is bounded: on a slow machine it can only let a defect pass, never fail a correct link.
func waitClose(t *testing.T, closed <-chan struct{}, outcome <-chan string, release chan struct{}) {
	t.Helper()
	select {
	case <-closed:
		t.Fatal("Close returned before the request in progress was answered")
	case o := <-outcome:
		t.Fatalf("Close made the request in progress end: %s", o)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return once the request was answered")
	}
}

// TestCloseGivesUpAfterMaxHold: a Prepare whose expiry a peer set an hour away, still being
// handled, holds Close no longer than the max hold time plus closeGrace; its handler is then
// cancelled.
func TestCloseGivesUpAfterMaxHold(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	stuck := func(ctx context.Context, _ *ilp.Prepare) (*ilp.Fulfill, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	}
	peer := startAsyncPeer(t, stuck, "http://127.0.0.1:1/ilp")
	peer.holdNow = func() time.Duration { return 10 * time.Millisecond }
	if resp, b := post(t, serverURL(peer), asyncHeaders("http://127.0.0.1:1/cb", "abc"), marshal(t, testPrepare(time.Hour))); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d (%s), want 202", resp.StatusCode, b)
	}
	<-started
	closed := make(chan struct{})
	go func() { _ = peer.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close still waits for a Prepare expiring in an hour")
	}
	select {
	case <-cancelled:
	default:
		t.Fatal("Close returned with the handler still running")
	}
}

func TestReplyOutcome(t *testing.T) {
	for _, tc := range []struct {
		status int
		err    error
		want   int
	}{
		{0, context.DeadlineExceeded, replyRetry},
		{200, nil, replyDelivered},
		{204, nil, replyDelivered},
		{301, nil, replyRefused},
		{307, nil, replyRefused}, // an ingress sending http to https: not delivered
		{308, nil, replyRefused},
		{400, nil, replyRefused},
		{404, nil, replyRefused},
		{500, nil, replyRetry},
		{503, nil, replyRetry},
	} {
		if got := replyOutcome(tc.status, tc.err); got != tc.want {
			t.Errorf("replyOutcome(%d, %v) = %d, want %d", tc.status, tc.err, got, tc.want)
		}
	}
}

// TestAsyncReplyRedirectNotDelivered: a callback answering 307 has not taken the reply (it may
// be a Fulfill we paid for downstream): the link says so at WARN rather than count it delivered.
func TestAsyncReplyRedirectNotDelivered(t *testing.T) {
	var hits atomic.Int32
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "https://elsewhere.example/cb", http.StatusTemporaryRedirect)
	}))
	defer cb.Close()
	var log testlog.Buffer
	peer, err := New(&Options{Mode: ModeAsync, Account: "server", Address: self,
		Logger:   slog.New(slog.NewTextHandler(&log, nil)),
		Incoming: &IncomingOptions{Host: "127.0.0.1", Auth: Auth{Token: "in-token"}},
		Outgoing: &OutgoingOptions{URL: cb.URL + "/ilp", Auth: Auth{Token: "reply-token"}, CallbackURL: "http://127.0.0.1:1/"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.Start(context.Background(), fulfilHandler); err != nil {
		t.Fatal(err)
	}
	if resp, b := post(t, serverURL(peer), asyncHeaders(cb.URL+"/cb", "r1"), marshal(t, testPrepare(5*time.Second))); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d (%s), want 202", resp.StatusCode, b)
	}
	_ = peer.Close() // waits for the reply's delivery
	if out := log.String(); hits.Load() != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, "status=307") {
		t.Fatalf("callback hit %d times, log %q; want one attempt and a WARN naming the 307", hits.Load(), out)
	}
}

// TestAsyncRepeatDuringRefusal: a retry of a Prepare arriving while the original is being
// refused (here: Close begins while both wait for their slot) must not get 202 unless the
// Prepare is handled, or the peer waits for a reply that never comes.
func TestAsyncRepeatDuringRefusal(t *testing.T) {
	var calls atomic.Int32
	cb := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer cb.Close()
	peer := startAsyncPeer(t, func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		calls.Add(1)
		return fulfilHandler(ctx, p)
	}, cb.URL+"/ilp")
	p := testPrepare(5 * time.Second)
	peer.asyncMu.Lock() // Close's first step, caught before it marks the link closed
	first, retry := httptest.NewRecorder(), httptest.NewRecorder()
	firstDone, retryDone := make(chan struct{}), make(chan struct{})
	go func() { peer.acceptAsync(first, p, cb.URL+"/cb", "id-1"); close(firstDone) }()
	waitFor(t, func() bool { return len(peer.sem) == 1 }) // the first waits in track
	go func() { peer.acceptAsync(retry, p, cb.URL+"/cb", "id-1"); close(retryDone) }()
	waitFor(t, func() bool { // the retry waits in track too, or has been answered
		select {
		case <-retryDone:
			return true
		default:
			return len(peer.sem) == 2
		}
	})
	peer.closed.Store(true)
	peer.asyncMu.Unlock()
	<-firstDone
	<-retryDone
	_ = peer.Close() // waits for any handler
	for _, rec := range []*httptest.ResponseRecorder{first, retry} {
		if rec.Code == http.StatusAccepted && calls.Load() == 0 {
			t.Fatalf("answered 202 (first %d, retry %d) but the Prepare was never handled", first.Code, retry.Code)
		}
	}
}

// waitFor polls cond for up to 30 s; the bound only turns a hang into a failure.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, "condition", 6000, cond)
}

// TestAsyncIDKeptNoLongerThanMaxHold: a Prepare expiring in an hour does not keep its
// Request-Id for an hour.
func TestAsyncIDKeptNoLongerThanMaxHold(t *testing.T) {
	cb := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer cb.Close()
	peer := startAsyncPeer(t, fulfilHandler, cb.URL+"/ilp")
	const hold = time.Second
	peer.holdNow = func() time.Duration { return hold }
	if resp, b := post(t, serverURL(peer), asyncHeaders(cb.URL+"/cb", "far"), marshal(t, testPrepare(time.Hour))); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d (%s), want 202", resp.StatusCode, b)
	}
	peer.seen.mu.Lock()
	until := peer.seen.until["far"]
	peer.seen.mu.Unlock()
	_ = peer.Close() // the reply is delivered before cb closes
	if limit := time.Now().Add(hold + replyMinWindow); until.After(limit) {
		t.Fatalf("Request-Id kept %v from now, more than max hold + %v", time.Until(until).Round(time.Second), replyMinWindow)
	}
}

// TestCloseEmptiesTheRequestIDsOnceExpired: the Request-Ids may outlive the link (shared with
// the account's next link); once every id it took has expired, the closed link drops them, so
// that an account removed, or no longer on ILP-over-HTTP, keeps none.
func TestCloseEmptiesTheRequestIDsOnceExpired(t *testing.T) {
	cb := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer cb.Close()
	peer := startAsyncPeer(t, fulfilHandler, cb.URL+"/ilp")
	// The sweep after Close comes at once and sees a clock an hour on: every id has expired.
	peer.idsExpire = 10 * time.Millisecond
	peer.now = func() time.Time { return time.Now().Add(time.Hour) }
	if resp, b := post(t, serverURL(peer), asyncHeaders(cb.URL+"/cb", "soon"), marshal(t, testPrepare(time.Second))); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d (%s), want 202", resp.StatusCode, b)
	}
	held := func() int { peer.seen.mu.Lock(); defer peer.seen.mu.Unlock(); return len(peer.seen.until) }
	if held() != 1 {
		t.Fatalf("%d Request-Ids held, want 1", held())
	}
	_ = peer.Close()
	waitFor(t, func() bool { return held() == 0 })
}
