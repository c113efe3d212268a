package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/settlementtest"
	"github.com/ilpfleet/ilpfleet/runtime/store"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// engineCall is one request a test engine received.
type engineCall struct {
	Method, Path, Key string
	Body              string
}

// testEngine is an HTTP server standing in for a settlement engine: it records every request
// and answers with the status answer returns (201 when nil).
type testEngine struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []engineCall
	answer func(c engineCall, n int) int // n: how many settlement requests came before
	got    chan engineCall
}

func newTestEngine(t *testing.T, answer func(engineCall, int) int) *testEngine {
	t.Helper()
	e := &testEngine{answer: answer, got: make(chan engineCall, 100)}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve)) // on 127.0.0.1
	t.Cleanup(e.Close)
	return e
}

func (e *testEngine) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := engineCall{Method: r.Method, Path: r.URL.Path, Key: r.Header.Get("Idempotency-Key"), Body: string(body)}
	e.mu.Lock()
	n := 0
	for _, p := range e.calls {
		if strings.HasSuffix(p.Path, "/settlements") {
			n++
		}
	}
	e.calls = append(e.calls, c)
	e.mu.Unlock()
	status := http.StatusCreated
	if e.answer != nil {
		status = e.answer(c, n)
	}
	w.WriteHeader(status)
	if strings.HasSuffix(c.Path, "/messages") {
		_, _ = w.Write([]byte("reply to " + c.Body))
	}
	e.got <- c
}

// next waits for the engine's next request (bounded).
func (e *testEngine) next(t *testing.T) engineCall {
	t.Helper()
	select {
	case c := <-e.got:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the engine got no request within 10 s")
		return engineCall{}
	}
}

var fastRetry = Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}

func ptr[T any](v T) *T { return &v }

func newTestSettler(t *testing.T, st store.Store, send Sender, accts ...Account) *Settler {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Store: st, Send: send, Retry: fastRetry, Metrics: m})
	if err := s.Update(accts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fakeClockSettler is a settler on st whose clock reads now, which starts at 2026-01-01 and
// moves only when the test adds to it.
func fakeClockSettler(t *testing.T, st store.Store) (s *Settler, now *atomic.Int64) {
	t.Helper()
	now = new(atomic.Int64)
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	s = New(Options{Store: st, Retry: fastRetry, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	t.Cleanup(s.Close)
	return s, now
}

func balance(t *testing.T, st store.Store, id string) int64 {
	t.Helper()
	b, err := st.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return b.Balance
}

func recorded(t *testing.T, st store.Store) []string {
	t.Helper()
	keys, err := st.Keys(context.Background(), outPrefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// metricValue reads a counter or a gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, what, 1000, cond)
}

// waitRecorded waits until the store holds n outgoing settlement records (bounded).
func waitRecorded(t *testing.T, st store.Store, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("want %d outgoing settlement records", n), func() bool { return len(recorded(t, st)) == n })
}

func TestSettleBelowThreshold(t *testing.T) {
	ctx := context.Background()
	eng := newTestEngine(t, nil)
	st := store.NewMemory()
	s := newTestSettler(t, st, nil, Account{ID: "bob", EngineURL: eng.URL, AssetScale: 6, Threshold: ptr[int64](-100), SettleTo: 10})
	if _, err := st.AddWithin(ctx, "bob", -99, nil, nil); err != nil {
		t.Fatal(err)
	}
	s.Start(ctx)
	if c := eng.next(t); c.Method != http.MethodPost || c.Path != "/accounts" || c.Body != `{"id":"bob"}` {
		t.Fatalf("first request %+v, want the account set up", c)
	}
	s.BalanceChanged("bob", -99) // above the threshold: nothing
	if _, err := st.AddWithin(ctx, "bob", -51, nil, nil); err != nil {
		t.Fatal(err)
	}
	s.BalanceChanged("bob", -150)
	c := eng.next(t)
	var q Quantity
	if err := json.Unmarshal([]byte(c.Body), &q); err != nil || c.Path != "/accounts/bob/settlements" || q != (Quantity{"160", 6}) || len(c.Key) != 32 {
		t.Fatalf("settlement request %+v (%v), want 160 at scale 6 to settleTo 10 with a 32-hex key", c, err)
	}
	if got := balance(t, st, "bob"); got != 10 {
		t.Fatalf("balance %d, want settleTo 10", got)
	}
	waitRecorded(t, st, 0) // forgotten once the engine said 201
}

func TestSettleRetriesWithTheSameKey(t *testing.T) {
	ctx := context.Background()
	eng := newTestEngine(t, func(c engineCall, n int) int {
		if strings.HasSuffix(c.Path, "/settlements") && n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusCreated
	})
	st := store.NewMemory()
	if _, err := st.AddWithin(ctx, "bob", -500, nil, nil); err != nil {
		t.Fatal(err)
	}
	s := newTestSettler(t, st, nil, Account{ID: "bob", EngineURL: eng.URL, AssetScale: 2, Threshold: ptr[int64](-100)})
	s.Start(ctx) // due at start: no balance change needed
	eng.next(t)  // account setup
	keys := map[string]bool{}
	for range 3 {
		c := eng.next(t)
		keys[c.Key] = true
		if c.Body != `{"amount":"500","scale":2}` {
			t.Fatalf("body %s", c.Body)
		}
	}
	if len(keys) != 1 {
		t.Fatalf("idempotency keys %v: a retry must reuse the key", keys)
	}
	waitRecorded(t, st, 0)
	if got := balance(t, st, "bob"); got != 0 {
		t.Fatalf("balance %d, want 0: raised once, not per attempt", got)
	}
	m := s.o.Metrics
	waitFor(t, "the metrics", func() bool { return metricValue(t, m.pending.WithLabelValues("bob")) == 0 })
	if f, d, v := metricValue(t, m.failures.WithLabelValues(opSettle, "bob")), metricValue(t, m.done.WithLabelValues("outgoing", "bob")),
		metricValue(t, m.value.WithLabelValues("outgoing", "bob")); f != 2 || d != 1 || v != 500 {
		t.Fatalf("metrics: %v failures, %v settlements of %v; want 2, 1, 500", f, d, v)
	}
}

func TestSettlementResumedAfterRestart(t *testing.T) {
	ctx := context.Background()
	var up sync.Mutex // held: the engine answers 502
	up.Lock()
	eng := newTestEngine(t, func(c engineCall, _ int) int {
		if !strings.HasSuffix(c.Path, "/settlements") {
			return http.StatusCreated
		}
		if up.TryLock() {
			up.Unlock()
			return http.StatusCreated
		}
		return http.StatusBadGateway
	})
	st := store.NewMemory()
	if _, err := st.AddWithin(ctx, "bob", -300, nil, nil); err != nil {
		t.Fatal(err)
	}
	acct := Account{ID: "bob", EngineURL: eng.URL, AssetScale: 0, Threshold: ptr[int64](-100)}
	first := New(Options{Store: st, Retry: fastRetry})
	if err := first.Update([]Account{acct}); err != nil {
		t.Fatal(err)
	}
	first.Start(ctx)
	eng.next(t)
	failed := eng.next(t)
	first.Close() // "crash" while the engine is down
	if got := recorded(t, st); len(got) != 1 || got[0] != outKey(failed.Key, eng.URL, "bob") {
		t.Fatalf("records %v, want the unsent settlement", got)
	}
	up.Unlock()
	for len(eng.got) > 0 {
		<-eng.got // retries before Close
	}
	newTestSettler(t, st, nil, acct).Start(ctx)
	eng.next(t) // setup again
	if c := eng.next(t); c.Key != failed.Key || c.Body != failed.Body {
		t.Fatalf("resent %+v, want key %s body %s", c, failed.Key, failed.Body)
	}
	waitRecorded(t, st, 0)
	if got := balance(t, st, "bob"); got != 0 {
		t.Fatalf("balance %d, want 0 (raised once, before the crash)", got)
	}
}

// TestResendGoesToTheRecordingEngine: a settlement recorded for one engine is resent to that
// engine after the account moved to another — the first may have accepted it already.
func TestResendGoesToTheRecordingEngine(t *testing.T) {
	ctx := context.Background()
	var up sync.Mutex // held: the old engine answers 503
	up.Lock()
	old := newTestEngine(t, func(c engineCall, _ int) int {
		if strings.HasSuffix(c.Path, "/settlements") && !up.TryLock() {
			return http.StatusServiceUnavailable
		}
		return http.StatusCreated
	})
	st := store.NewMemory()
	if _, err := st.AddWithin(ctx, "bob", -300, nil, nil); err != nil {
		t.Fatal(err)
	}
	first := New(Options{Store: st, Retry: fastRetry})
	if err := first.Update([]Account{{ID: "bob", EngineURL: old.URL, Threshold: ptr[int64](-100)}}); err != nil {
		t.Fatal(err)
	}
	first.Start(ctx)
	old.next(t)
	failed := old.next(t)
	first.Close()
	up.Unlock()
	for len(old.got) > 0 {
		<-old.got
	}
	moved := newTestEngine(t, nil)
	newTestSettler(t, st, nil, Account{ID: "bob", EngineURL: moved.URL, Threshold: ptr[int64](-100)}).Start(ctx)
	if c := moved.next(t); c.Path != "/accounts" {
		t.Fatalf("the new engine got %+v first, want the account set up", c)
	}
	if c := old.next(t); c.Key != failed.Key || c.Body != failed.Body {
		t.Fatalf("old engine got %+v, want the recorded settlement again (key %s)", c, failed.Key)
	}
	waitRecorded(t, st, 0)
	select {
	case c := <-moved.got:
		t.Fatalf("the new engine got %+v: a settlement recorded for the old one must not go to it", c)
	default:
	}
}

// TestEngineThatLostTheAccount: an engine that answers 404 (restarted on a memory store) is
// told about the account again and gets the settlement again at once, in the same attempt
// (no failure counted, no backoff).
func TestEngineThatLostTheAccount(t *testing.T) {
	ctx := context.Background()
	eng := newTestEngine(t, func(c engineCall, n int) int {
		if strings.HasSuffix(c.Path, "/settlements") && n == 0 {
			return http.StatusNotFound
		}
		return http.StatusCreated
	})
	st := store.NewMemory()
	if _, err := st.AddWithin(ctx, "bob", -300, nil, nil); err != nil {
		t.Fatal(err)
	}
	s := newTestSettler(t, st, nil, Account{ID: "bob", EngineURL: eng.URL, Threshold: ptr[int64](-100)})
	s.Start(ctx)
	var paths []string
	for range 4 {
		paths = append(paths, eng.next(t).Path)
	}
	if want := "/accounts /accounts/bob/settlements /accounts /accounts/bob/settlements"; strings.Join(paths, " ") != want {
		t.Fatalf("requests %v, want %s", paths, want)
	}
	waitRecorded(t, st, 0)
	var failed dto.Metric
	if err := s.o.Metrics.failures.WithLabelValues(opSettle, "bob").Write(&failed); err != nil {
		t.Fatal(err)
	}
	if n := failed.GetCounter().GetValue(); n != 0 {
		t.Errorf("%v failed settle attempts counted; want the settlement sent again in the same attempt", n)
	}
}

// TestPeerMessageSetsTheAccountUp: a message from the peer for an account the engine does not
// know yet (its setup still on the way) sets the account up and is delivered, not refused —
// the peer's engine would count a refused settlement as paid.
func TestPeerMessageSetsTheAccountUp(t *testing.T) {
	var known sync.Map
	eng := newTestEngine(t, func(c engineCall, _ int) int {
		if c.Path == "/accounts" {
			known.Store("bob", true)
		} else if _, ok := known.Load("bob"); !ok {
			return http.StatusNotFound
		}
		return http.StatusCreated
	})
	s := newTestSettler(t, store.NewMemory(), nil, Account{ID: "bob", EngineURL: eng.URL}) // not started: no setup yet
	f, err := s.HandlePeer(context.Background(), "bob", &ilp.Prepare{Destination: PeerSettle, Data: []byte("paid")})
	if err != nil || string(f.Data) != "reply to paid" {
		t.Fatalf("got %v %v, want the engine's reply", f, err)
	}
	var paths []string
	for range 3 {
		paths = append(paths, eng.next(t).Path)
	}
	if got := strings.Join(paths, " "); got != "/accounts/bob/messages /accounts /accounts/bob/messages" {
		t.Fatalf("requests %s", got)
	}
}

func TestCredit(t *testing.T) {
	st := store.NewMemory()
	s := newTestSettler(t, st, nil, Account{ID: "bob", EngineURL: "http://127.0.0.1:1", AssetScale: 2},
		Account{ID: "dave", EngineURL: "http://127.0.0.1:1", AssetScale: 2})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	post := func(account, key, body string) (int, string) {
		return settlementtest.Do(t, http.MethodPost, srv.URL+"/accounts/"+account+"/settlements", key, body)
	}
	for _, tc := range []struct {
		name, account, key, body string
		status                   int
		reply                    string // exact, or a substring of an error
		balance                  int64  // after the request
	}{
		{"same scale", "bob", "k1", `{"amount":"250","scale":2}`, 201, `{"amount":"250","scale":2}`, -250},
		{"replayed", "bob", "k1", `{"amount":"250","scale":2}`, 201, `{"amount":"250","scale":2}`, -250},
		{"same key, other amount", "bob", "k1", `{"amount":"251","scale":2}`, 409, "another account or amount", -250},
		{"same key, other account", "dave", "k1", `{"amount":"250","scale":2}`, 409, "another account or amount", -250},
		// The answer is the whole Quantity: what is below one unit is the connector's to keep
		// (an engine that took a smaller answer as "not credited" would send it again).
		{"coarser scale", "bob", "k2", `{"amount":"3","scale":0}`, 201, `{"amount":"3","scale":0}`, -550},
		{"finer scale: leftover kept", "bob", "k3", `{"amount":"1005","scale":3}`, 201, `{"amount":"1005","scale":3}`, -650},
		{"leftover adds up", "bob", "k4", `{"amount":"5","scale":3}`, 201, `{"amount":"5","scale":3}`, -651},
		{"no key", "bob", "", `{"amount":"1","scale":2}`, 400, "Idempotency-Key", -651},
		{"negative", "bob", "k5", `{"amount":"-1","scale":2}`, 400, "non-negative integer", -651},
		{"fraction", "bob", "k6", `{"amount":"1.5","scale":2}`, 400, "digits only", -651},
		{"exponent", "bob", "k6", `{"amount":"1e3","scale":2}`, 400, "digits only", -651},
		{"no scale: not read as whole units", "bob", "k6", `{"amount":"1"}`, 400, `scale\" is missing`, -651},
		{"key too long", "bob", strings.Repeat("k", 257), `{"amount":"1","scale":2}`, 400, "Idempotency-Key", -651},
		{"not JSON", "bob", "k7", `250`, 400, "Quantity", -651},
		{"too large", "bob", "k8", `{"amount":"99999999999999999999","scale":2}`, 400, "int64", -651},
		{"unknown account", "carol", "k9", `{"amount":"1","scale":2}`, 404, "no settlement engine", -651},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, reply := post(tc.account, tc.key, tc.body)
			if status != tc.status || (reply != tc.reply && !strings.Contains(reply, tc.reply)) {
				t.Fatalf("got %d %s, want %d %s", status, reply, tc.status, tc.reply)
			}
			if got := balance(t, st, "bob"); got != tc.balance {
				t.Fatalf("balance %d, want %d", got, tc.balance)
			}
		})
	}
	// Four credits took effect (the replay and the refusals did not), worth 651 units.
	m := s.o.Metrics
	if d, v := metricValue(t, m.done.WithLabelValues("incoming", "bob")), metricValue(t, m.value.WithLabelValues("incoming", "bob")); d != 4 || v != 651 {
		t.Fatalf("incoming metrics: %v settlements of %v, want 4 of 651", d, v)
	}
}

func TestMessages(t *testing.T) {
	ctx := context.Background()
	eng := newTestEngine(t, func(c engineCall, _ int) int {
		switch c.Body {
		case "unknown":
			return http.StatusNotFound
		case "bad":
			return http.StatusBadRequest
		case "broken":
			return http.StatusInternalServerError
		case "slow":
			return http.StatusRequestTimeout
		case "busy":
			return http.StatusTooManyRequests
		}
		return http.StatusCreated
	})
	var sent []*ilp.Prepare
	// The message names the Reject the peer (or this connector's own link) answers with.
	rejects := map[string]*ilp.Reject{
		"refused":        ilp.Rejectf(ilp.CodeUnreachable, PeerSettle, "no engine here"),
		"engine refused": ilp.Rejectf(ilp.CodeBadRequest, PeerSettle, "the settlement engine refused the message: HTTP 400"),
		"reply too big":  ilp.Rejectf(ilp.CodeFinalApplicationError, PeerSettle, "the settlement engine took the message; its reply does not fit"),
		"engine down":    ilp.Rejectf(ilp.CodeInternalError, PeerSettle, "the settlement engine did not answer"),
		"local timeout":  ilp.Rejectf(ilp.CodeTransferTimedOut, "test.me", "account bob did not answer before the packet expired"),
		"link down":      ilp.Rejectf(ilp.CodePeerUnreachable, "test.me", "account bob is not connected"),
		"F02 elsewhere":  ilp.Rejectf(ilp.CodeUnreachable, "test.peer", "no route"),
	}
	send := func(_ context.Context, account string, p *ilp.Prepare) (*ilp.Fulfill, error) {
		sent = append(sent, p)
		if rj := rejects[string(p.Data)]; rj != nil {
			return nil, rj
		}
		return &ilp.Fulfill{Fulfillment: ilp.PeerFulfillment, Data: append([]byte("peer says: "), p.Data...)}, nil
	}
	s := newTestSettler(t, store.NewMemory(), send, Account{ID: "bob", EngineURL: eng.URL})

	t.Run("from the engine to the peer", func(t *testing.T) {
		srv := httptest.NewServer(s.Handler())
		t.Cleanup(srv.Close)
		for _, tc := range []struct {
			msg    string
			status int // 502 only when the peer's engine certainly did not take the message
			reply  string
		}{
			{"hello", http.StatusCreated, "peer says: hello"},
			{"refused", http.StatusBadGateway, "no engine here"},
			{"engine refused", http.StatusBadGateway, "HTTP 400"},
			// The rest say nothing of whether the peer's engine took it: 504, outcome unknown.
			{"reply too big", http.StatusGatewayTimeout, "took the message"},
			{"engine down", http.StatusGatewayTimeout, "did not answer"},
			{"local timeout", http.StatusGatewayTimeout, "before the packet expired"},
			{"link down", http.StatusGatewayTimeout, "not connected"},
			{"F02 elsewhere", http.StatusGatewayTimeout, "no route"},
		} {
			resp, err := http.Post(srv.URL+"/accounts/bob/messages", "application/octet-stream", strings.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.reply) {
				t.Fatalf("%s: got %d %s, want %d %s", tc.msg, resp.StatusCode, b, tc.status, tc.reply)
			}
		}
		p := sent[0]
		if p.Destination != PeerSettle || p.Amount != 0 || p.ExecutionCondition != ilp.PeerCondition || string(p.Data) != "hello" {
			t.Fatalf("sent %+v, want a peer.settle Prepare of 0 with the peer condition", p)
		}
	})

	t.Run("from the peer to the engine", func(t *testing.T) {
		big := strings.Repeat("x", ilp.MaxDataSize) // the test engine's reply adds to it
		for _, tc := range []struct {
			account, msg string
			code         ilp.ErrorCode // "" : fulfilled
		}{
			{"bob", "hi", ""},
			{"bob", "unknown", ilp.CodeUnreachable},
			{"bob", "bad", ilp.CodeBadRequest},
			{"bob", "broken", ilp.CodeInternalError},
			// Not refusals: the sending engine must not take them as "not taken".
			{"bob", "slow", ilp.CodeInternalError},
			{"bob", "busy", ilp.CodeInternalError},
			{"bob", big, ilp.CodeFinalApplicationError}, // taken, but the reply does not fit a Fulfill
			{"carol", "hi", ilp.CodeUnreachable},
		} {
			f, err := s.HandlePeer(ctx, tc.account, &ilp.Prepare{Destination: PeerSettle, Data: []byte(tc.msg)})
			var rj *ilp.Reject
			switch {
			case tc.code == "" && (err != nil || string(f.Data) != "reply to hi" || f.Fulfillment != ilp.PeerFulfillment):
				t.Fatalf("%s %s: %v %v, want the engine's reply", tc.account, tc.msg, f, err)
			case tc.code != "" && (!errors.As(err, &rj) || rj.Code != tc.code || rj.TriggeredBy != PeerSettle):
				t.Fatalf("%s %.20s: %v, want reject %s from peer.settle", tc.account, tc.msg, err, tc.code)
			}
		}
	})
}

// TestForgetAPendingSettlement: an operator lists what is pending and forgets a settlement
// settled by hand, through either of two replicas sharing the store; the retries of both stop
// and the balance stays raised.
func TestForgetAPendingSettlement(t *testing.T) {
	ctx := context.Background()
	eng := newTestEngine(t, func(c engineCall, _ int) int {
		if strings.HasSuffix(c.Path, "/settlements") {
			return http.StatusServiceUnavailable
		}
		return http.StatusCreated
	})
	st := store.NewMemory()
	if _, err := st.AddWithin(ctx, "bob", -300, nil, nil); err != nil {
		t.Fatal(err)
	}
	acct := Account{ID: "bob", EngineURL: eng.URL, Threshold: ptr[int64](-100)}
	a := newTestSettler(t, st, nil, acct)
	a.Start(ctx)
	waitRecorded(t, st, 1)
	b := newTestSettler(t, st, nil, acct) // the second replica resends what a recorded
	b.Start(ctx)
	pending, err := b.Pending(ctx)
	if err != nil || len(pending) != 1 || pending[0].Account != "bob" || pending[0].Engine != eng.URL || pending[0].Amount != 300 {
		t.Fatalf("pending %+v, %v; want bob's 300", pending, err)
	}
	waitFor(t, "both replicas retrying", func() bool {
		return metricValue(t, a.o.Metrics.pending.WithLabelValues("bob")) == 1 && metricValue(t, b.o.Metrics.pending.WithLabelValues("bob")) == 1
	})
	if ok, err := b.Forget(ctx, "no-such-key"); ok || err != nil {
		t.Fatalf("forgetting an unknown key: %v, %v", ok, err)
	}
	if ok, err := b.Forget(ctx, pending[0].Key); !ok || err != nil {
		t.Fatalf("forget: %v, %v", ok, err)
	}
	waitRecorded(t, st, 0)
	waitFor(t, "the retries of both replicas to stop", func() bool {
		return metricValue(t, a.o.Metrics.pending.WithLabelValues("bob")) == 0 && metricValue(t, b.o.Metrics.pending.WithLabelValues("bob")) == 0
	})
	if got := balance(t, st, "bob"); got != 0 {
		t.Fatalf("balance %d, want 0: still raised, as when the settlement was recorded", got)
	}
}

// TestReplicasShareOneRedis: replicas of a connector on one Redis that see the balance below
// the threshold at the same moment record one settlement between them; an incoming credit
// repeated to both is counted once.
func TestReplicasShareOneRedis(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	openStore := func(instance string) store.Store {
		r, err := store.OpenRedis(ctx, store.RedisOptions{URL: srv.URL(), Instance: instance, Prefix: "t:"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	stores := []store.Store{openStore("a"), openStore("b")}
	if _, err := stores[0].AddWithin(ctx, "bob", -500, nil, nil); err != nil {
		t.Fatal(err)
	}
	const racers = 8 // four per replica, released at once
	var start, done sync.WaitGroup
	start.Add(1)
	amounts := make([]int64, racers)
	for i := range racers {
		done.Go(func() {
			start.Wait()
			var err error
			if amounts[i], err = stores[i%2].SettleDue(ctx, "bob", -100, 0, outKey(newKey(), "http://e", "bob")); err != nil {
				t.Error(err)
			}
		})
	}
	start.Done()
	done.Wait()
	slices.Sort(amounts)
	if want := append(make([]int64, racers-1), 500); !slices.Equal(amounts, want) {
		t.Fatalf("amounts recorded %v, want one settlement of 500", amounts)
	}
	if keys := recorded(t, stores[1]); len(keys) != 1 {
		t.Fatalf("records %v, want one", keys)
	}

	eng := newTestEngine(t, nil)
	acct := Account{ID: "bob", EngineURL: eng.URL, AssetScale: 2}
	for _, st := range stores { // the engine's credit, retried through the other replica
		srv := httptest.NewServer(newTestSettler(t, st, nil, acct).Handler())
		status, body := settlementtest.Do(t, http.MethodPost, srv.URL+"/accounts/bob/settlements", "credit-1", `{"amount":"70","scale":2}`)
		srv.Close()
		if status != http.StatusCreated {
			t.Fatalf("credit: %d %s", status, body)
		}
	}
	if got := balance(t, stores[0], "bob"); got != -70 {
		t.Fatalf("balance %d, want -70: raised to 0 once, then the credit counted once", got)
	}
}

// TestReplicasShareTheLeftover: credits finer than the account's scale, sent at once through
// two replicas sharing a Redis, add up to the exact whole units and leftover: a replica never
// writes a leftover computed from one another replica changed meanwhile.
func TestReplicasShareTheLeftover(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	eng := newTestEngine(t, nil)
	acct := Account{ID: "bob", EngineURL: eng.URL, AssetScale: 2}
	var urls []string
	for _, instance := range []string{"a", "b"} {
		st, err := store.OpenRedis(ctx, store.RedisOptions{URL: srv.URL(), Instance: instance, Prefix: "t:"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		h := httptest.NewServer(newTestSettler(t, st, nil, acct).Handler())
		t.Cleanup(h.Close)
		urls = append(urls, h.URL)
	}
	const credits = 40 // of 0.007 each at scale 3: 0.7 of a unit at scale 2, 28 units in all
	var wg sync.WaitGroup
	for i := range credits {
		wg.Go(func() {
			status, body := settlementtest.Do(t, http.MethodPost, urls[i%2]+"/accounts/bob/settlements",
				"credit-"+strconv.Itoa(i), `{"amount":"7","scale":3}`)
			if status != http.StatusCreated {
				t.Errorf("credit %d: %d %s", i, status, body)
			}
		})
	}
	wg.Wait()
	st, err := store.OpenRedis(ctx, store.RedisOptions{URL: srv.URL(), Instance: "check", Prefix: "t:"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	left, err := st.GetKey(ctx, leftoverPrefix+"bob")
	if got := balance(t, st, "bob"); got != -28 || err != nil || string(left) != "0" {
		t.Fatalf("balance %d, leftover %q (%v); want -28 and 0", got, left, err)
	}
}

// TestSettleEvery: with an interval, whatever the balance is below settleTo is settled at
// start and at each tick, with no threshold and no balance change to trigger it.
func TestSettleEvery(t *testing.T) {
	ctx := context.Background()
	eng := newTestEngine(t, nil)
	st := store.NewMemory()
	if _, err := st.AddWithin(ctx, "bob", -40, nil, nil); err != nil {
		t.Fatal(err)
	}
	s := newTestSettler(t, st, nil, Account{ID: "bob", EngineURL: eng.URL, AssetScale: 2, SettleTo: -10, Every: 5 * time.Millisecond})
	s.Start(ctx)
	eng.next(t) // account setup
	if c := eng.next(t); c.Body != `{"amount":"30","scale":2}` {
		t.Fatalf("settlement %+v, want the 30 owed beyond settleTo -10", c)
	}
	waitRecorded(t, st, 0)
	if got := balance(t, st, "bob"); got != -10 {
		t.Fatalf("balance %d, want settleTo -10", got)
	}
	// Later, with no balance change reported (no kick): the next tick settles it.
	if _, err := st.AddWithin(ctx, "bob", -20, nil, nil); err != nil {
		t.Fatal(err)
	}
	if c := eng.next(t); c.Body != `{"amount":"20","scale":2}` {
		t.Fatalf("settlement %+v, want the 20 owed since", c)
	}
}

// TestSettleEveryOncePerSlot: replicas sharing a store, or a worker restarted, within one
// interval settle once between them.
func TestSettleEveryOncePerSlot(t *testing.T) {
	ctx := context.Background()
	eng := newTestEngine(t, nil)
	st := store.NewMemory()
	if _, err := st.AddWithin(ctx, "bob", -40, nil, nil); err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Date(2026, 12, 6, 10, 30, 0, 0, time.UTC) } // mid-slot
	acct := Account{ID: "bob", EngineURL: eng.URL, Every: time.Hour}
	start := func() *Settler {
		s := New(Options{Store: st, Retry: fastRetry, Now: now})
		if err := s.Update([]Account{acct}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		s.Start(ctx)
		return s
	}
	first := start()
	waitFor(t, "the first replica's settlement", func() bool { return balance(t, st, "bob") == 0 })
	if _, err := st.AddWithin(ctx, "bob", -25, nil, nil); err != nil {
		t.Fatal(err)
	}
	start()       // a second replica, same slot
	first.Close() // and the first one's worker gone and back
	start()
	waitFor(t, "both new workers set the account up", func() bool {
		eng.mu.Lock()
		defer eng.mu.Unlock()
		n := 0
		for _, c := range eng.calls {
			if c.Path == "/accounts" {
				n++
			}
		}
		return n == 3
	})
	time.Sleep(20 * time.Millisecond) // their start-up settlement, had the slot been free
	eng.mu.Lock()
	defer eng.mu.Unlock()
	var settlements []string
	for _, c := range eng.calls {
		if strings.HasSuffix(c.Path, "/settlements") {
			settlements = append(settlements, c.Body)
		}
	}
	if len(settlements) != 1 || balance(t, st, "bob") != -25 {
		t.Fatalf("settlements %v, balance %d; want one of 40 and the 25 owed since left for the next slot", settlements, balance(t, st, "bob"))
	}
}

// TestMessageTakenLateIsNotRefused: between two settlers, the receiving engine takes the
// message (it would credit) but answers after the Prepare expired; the receiver rejects it
// T00, which must reach the sending engine as 504 (outcome unknown), not 502 (not taken: the
// mock would settle again, and the peer credit twice).
func TestMessageTakenLateIsNotRefused(t *testing.T) {
	var taken atomic.Int32
	release := make(chan struct{})
	slow := newTestEngine(t, func(c engineCall, _ int) int {
		if strings.HasSuffix(c.Path, "/messages") {
			taken.Add(1)
			<-release // answers once the sender has given up: past the Prepare's expiry
		}
		return http.StatusCreated
	})
	recv := newTestSettler(t, store.NewMemory(), nil, Account{ID: "alice", EngineURL: slow.URL})
	send := func(ctx context.Context, _ string, p *ilp.Prepare) (*ilp.Fulfill, error) {
		return recv.HandlePeer(ctx, "alice", p)
	}
	eng := newTestEngine(t, nil)
	sender := New(Options{Store: store.NewMemory(), Send: send, Retry: fastRetry,
		// The Prepare expires 2 s after it is sent (MessageTimeout − 28 s): ample to reach
		// the peer's engine, which then holds its answer until the sender has given up.
		Now: func() time.Time { return time.Now().Add(-MessageTimeout + 2*time.Second) }})
	if err := sender.Update([]Account{{ID: "bob", EngineURL: eng.URL}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sender.Close)
	srv := httptest.NewServer(sender.Handler())
	defer srv.Close()
	status, body := settlementtest.Do(t, http.MethodPost, srv.URL+"/accounts/bob/messages", "", `{"type":"settlement"}`)
	close(release)
	if taken.Load() != 1 {
		t.Fatalf("the message never reached the peer's engine (%d %s): the test proves nothing", status, body)
	}
	if status != http.StatusGatewayTimeout {
		t.Fatalf("the peer's engine took the message and answered late; the sending engine got %d %s, want 504", status, body)
	}
}

// TestMovedAccountSettlesWhileOldEngineIsDown: an account moved from a dead engine to a
// working one settles through the new engine while the record left for the dead one is
// retried beside it (and sent, once, when the old engine is back).
func TestMovedAccountSettlesWhileOldEngineIsDown(t *testing.T) {
	ctx := context.Background()
	var up atomic.Bool
	dead := newTestEngine(t, func(c engineCall, _ int) int {
		if strings.HasSuffix(c.Path, "/settlements") && !up.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusCreated
	})
	st := store.NewMemory()
	if _, err := st.AddWithin(ctx, "bob", -300, nil, nil); err != nil {
		t.Fatal(err)
	}
	s := newTestSettler(t, st, nil, Account{ID: "bob", EngineURL: dead.URL, Threshold: ptr[int64](-100)})
	s.Start(ctx)
	dead.next(t) // account set up
	oldKey := dead.next(t).Key
	waitRecorded(t, st, 1)
	var deadCalls sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); deadCalls.Wait() }) // before the engines' Close (LIFO)
	// Keep the dead engine's retries from filling its channel.
	deadCalls.Go(func() {
		for {
			select {
			case <-dead.got:
			case <-stop:
				return
			}
		}
	})

	moved := newTestEngine(t, nil)
	if err := s.Update([]Account{{ID: "bob", EngineURL: moved.URL, Threshold: ptr[int64](-100)}}); err != nil {
		t.Fatal(err)
	}
	if c := moved.next(t); c.Path != "/accounts" {
		t.Fatalf("new engine got %+v first", c)
	}
	if _, err := st.AddWithin(ctx, "bob", -5000, nil, nil); err != nil {
		t.Fatal(err)
	}
	s.BalanceChanged("bob", -5000)
	if c := moved.next(t); !strings.HasSuffix(c.Path, "/settlements") || c.Body != `{"amount":"5000","scale":0}` || c.Key == oldKey {
		t.Fatalf("new engine got %+v, want a new settlement of 5000", c)
	}
	waitFor(t, "the new settlement forgotten, the old one still recorded", func() bool {
		keys := recorded(t, st)
		return len(keys) == 1 && keys[0] == outKey(oldKey, dead.URL, "bob")
	})
	up.Store(true) // the old engine is back: its record is sent to it, with its key
	waitRecorded(t, st, 0)
	dead.mu.Lock()
	defer dead.mu.Unlock()
	for _, c := range dead.calls {
		if strings.HasSuffix(c.Path, "/settlements") && c.Key != oldKey {
			t.Fatalf("the old engine got %+v: only its own record may go to it", c)
		}
	}
}

// TestSettleEverySlotsPruned: a periodic settlement's slot is kept about two intervals, not
// the credits' 7 days (604,800 keys per account at settleEvery 1s).
func TestSettleEverySlotsPruned(t *testing.T) {
	st := store.NewMemory()
	s, now := fakeClockSettler(t, st)
	eng := newTestEngine(t, nil)
	if err := s.Update([]Account{{ID: "bob", EngineURL: eng.URL, Every: time.Second}}); err != nil {
		t.Fatal(err)
	}
	a := s.account("bob")
	slots := func() int {
		keys, err := st.Keys(context.Background(), everyPrefix)
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	for range 3600 { // an hour of ticks, between two prunes
		s.settlePeriodic(a, s.log)
		now.Add(int64(time.Second))
	}
	if n := slots(); n > 2 {
		t.Fatalf("%d slots stored after an hour of 1 s ticks, want the last two", n)
	}
	s.settlePeriodic(a, s.log)
	s.prune()
	if n := slots(); n != 2 {
		t.Fatalf("%d slots after prune, want the current one and the one before (clock skew between replicas)", n)
	}
	now.Add(int64(2 * time.Second)) // the current slot and the next have ended
	s.prune()
	if n := slots(); n != 0 {
		t.Fatalf("%d slots two intervals later, want none", n)
	}
}

// TestCreditKeyKeptFromTheLastRequest: an incoming settlement's key is kept creditRetention
// from the last request that carried it (RFC 38), not from the first: a repeat after that is
// still answered as the first, not credited again.
func TestCreditKeyKeptFromTheLastRequest(t *testing.T) {
	st := store.NewMemory()
	s, now := fakeClockSettler(t, st)
	if err := s.Update([]Account{{ID: "bob", EngineURL: "http://127.0.0.1:1", AssetScale: 2}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	for i, elapse := range []time.Duration{0, creditRetention - time.Hour, creditRetention - time.Hour} {
		now.Add(int64(elapse))
		s.prune()
		status, body := settlementtest.Do(t, http.MethodPost, srv.URL+"/accounts/bob/settlements", "k1", `{"amount":"250","scale":2}`)
		if status != http.StatusCreated || balance(t, st, "bob") != -250 {
			t.Fatalf("request %d, %v after the one before: %d %s, balance %d; want 201 and -250 (credited once)", i, elapse, status, body, balance(t, st, "bob"))
		}
	}
}

// TestPruneSparesACreditKeyRepeatedMeanwhile: a repeat of an old key that refreshes its record
// while prune runs, even between prune's read and its delete, keeps it (the delete compares):
// a later repeat, well within the retention of the last request, is not credited again.
// TestPruneSparesACreditKeyRefreshedByAReplica is the same through another replica.
func TestPruneSparesACreditKeyRepeatedMeanwhile(t *testing.T) {
	mem := store.NewMemory()
	h := &afterGetKey{Store: mem}
	s, now := fakeClockSettler(t, h)
	if err := s.Update([]Account{{ID: "bob", EngineURL: "http://127.0.0.1:1", AssetScale: 2}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	credit := func() {
		if status, body := settlementtest.Do(t, http.MethodPost, srv.URL+"/accounts/bob/settlements", "k1", `{"amount":"250","scale":2}`); status != http.StatusCreated {
			t.Errorf("credit: %d %s", status, body)
		}
	}
	credit()
	now.Add(int64(creditRetention + time.Minute))
	// The engine repeats the key just as prune has read its record: the repeat runs there, in
	// prune's goroutine, before prune deletes what it read.
	h.once = credit
	s.prune()
	after := balance(t, mem, "bob")
	now.Add(int64(time.Hour)) // far within the retention of the repeat
	credit()
	if got := balance(t, mem, "bob"); got != after {
		t.Errorf("a repeat an hour after the last request moved the balance from %d to %d: credited again", after, got)
	}
}

// afterGetKey runs once after the first GetKey of an incoming settlement's record.
type afterGetKey struct {
	store.Store
	mu   sync.Mutex
	once func()
}

func (h *afterGetKey) GetKey(ctx context.Context, k string) ([]byte, error) {
	v, err := h.Store.GetKey(ctx, k)
	h.mu.Lock()
	f := h.once
	if strings.HasPrefix(k, inPrefix) {
		h.once = nil
	}
	h.mu.Unlock()
	if f != nil && strings.HasPrefix(k, inPrefix) {
		f()
	}
	return v, err
}
