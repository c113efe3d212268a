package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/settlementtest"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
	"github.com/shopspring/decimal"
)

// fastBackoff keeps retries quick in tests.
func fastBackoff(int) time.Duration { return time.Millisecond }

func start(t *testing.T, connect engine.Connect, store engine.Store, connectorURL string, scale uint8) *engine.Server {
	t.Helper()
	return startWith(t, connect, store, engine.Config{ConnectorURL: connectorURL, AssetScale: scale, Log: slog.New(slog.DiscardHandler)})
}

// startWith starts a server on a port of its own with cfg and the fast backoff, closed when
// the test ends.
func startWith(t *testing.T, connect engine.Connect, store engine.Store, cfg engine.Config) *engine.Server {
	t.Helper()
	cfg.Addr, cfg.Backoff = "127.0.0.1:0", fastBackoff
	s, err := engine.Start(context.Background(), connect, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// do sends a request to the engine and returns the status and body.
func do(t *testing.T, s *engine.Server, method, path, key, body string) (int, string) {
	t.Helper()
	return settlementtest.Do(t, method, "http://"+s.Addr()+path, key, body)
}

// eventually polls cond for up to 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, what, 6000, cond)
}

// recorder is a test engine that records its calls and settles everything.
type recorder struct {
	mu      sync.Mutex
	calls   []string
	settled decimal.Decimal
}

func (r *recorder) add(c string) { r.mu.Lock(); r.calls = append(r.calls, c); r.mu.Unlock() }
func (r *recorder) Settle(_ context.Context, id string, amount decimal.Decimal) (decimal.Decimal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "settle "+id+" "+amount.String())
	r.settled = r.settled.Add(amount)
	return amount, nil
}
func (r *recorder) SetupAccount(_ context.Context, id string) error { r.add("setup " + id); return nil }
func (r *recorder) CloseAccount(_ context.Context, id string) error { r.add("close " + id); return nil }
func (r *recorder) HandleMessage(_ context.Context, id string, m json.RawMessage) (any, error) {
	r.add("message " + id + " " + string(m))
	return map[string]string{"echo": id}, nil
}
func (r *recorder) Close(context.Context) error { r.add("close engine"); return nil }

func (r *recorder) total() decimal.Decimal { r.mu.Lock(); defer r.mu.Unlock(); return r.settled }
func (r *recorder) has(c string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.calls {
		if x == c {
			return true
		}
	}
	return false
}

func connectTo(e engine.Engine) engine.Connect {
	return func(context.Context, engine.Services) (engine.Engine, error) { return e, nil }
}

func TestAccounts(t *testing.T) {
	rec := &recorder{}
	s := start(t, connectTo(rec), engine.NewMemory(), "http://127.0.0.1:1", 2)
	steps := []struct {
		method, path, body string
		status             int
		wantBody           string
	}{
		{"POST", "/accounts", `{"id":"alice"}`, 201, `{"id":"alice"}`},
		{"POST", "/accounts", `{"id":"alice"}`, 201, `{"id":"alice"}`}, // idempotent
		{"POST", "/accounts", `{"id":"a/b"}`, 400, ""},
		{"POST", "/accounts", `{"id":""}`, 400, ""},
		{"POST", "/accounts", `{"id":`, 400, ""},
		{"POST", "/accounts", `{"id":"` + strings.Repeat("x", 20<<10) + `"}`, 413, ""},
		{"POST", "/accounts/alice/messages", `{"hi":1}`, 201, `{"echo":"alice"}`},
		{"POST", "/accounts/alice/messages", `not json`, 400, ""},
		{"POST", "/accounts/bob/messages", `{}`, 404, ""},
		{"POST", "/accounts/bob/settlements", `{"amount":"1","scale":0}`, 404, ""},
		{"DELETE", "/accounts/bob", "", 404, ""},
		{"DELETE", "/accounts/alice", "", 204, ""},
		{"POST", "/accounts/alice/messages", `{}`, 404, ""},
		{"GET", "/accounts", "", 405, ""},
	}
	for i, st := range steps {
		status, body := do(t, s, st.method, st.path, "k", st.body)
		if status != st.status || st.wantBody != "" && strings.TrimSpace(body) != st.wantBody {
			t.Fatalf("step %d %s %s: %d %q, want %d %q", i, st.method, st.path, status, body, st.status, st.wantBody)
		}
	}
	for _, c := range []string{"setup alice", `message alice {"hi":1}`, "close alice"} {
		if !rec.has(c) {
			t.Errorf("engine not called: %s", c)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !rec.has("close engine") {
		t.Error("Close did not close the engine")
	}
}

func TestIdempotentSettlements(t *testing.T) {
	rec := &recorder{}
	s := start(t, connectTo(rec), engine.NewMemory(), "http://127.0.0.1:1", 2)
	if st, _ := do(t, s, "POST", "/accounts", "", `{"id":"alice"}`); st != 201 {
		t.Fatal(st)
	}
	steps := []struct {
		key, body string
		status    int
		wantBody  string
	}{
		{"", `{"amount":"100","scale":2}`, 400, "Idempotency-Key header"},
		{"k1", `{"amount":"100","scale":2}`, 201, `{"amount":"100","scale":2}`},
		{"k1", `{ "scale": 2, "amount": "100" }`, 201, `{"amount":"100","scale":2}`}, // replayed
		{"k1", `{"amount":"101","scale":2}`, 409, "was used for another request"},
		{"k2", `{"amount":"-1","scale":2}`, 400, "non-negative integer written with digits only"},
		{"k3", `{"amount":"1e3","scale":2}`, 400, "digits only"},
		{"k4", `{"amount":"5"}`, 400, `"scale" is missing`},
		{"k2", `{"amount":1,"scale":2}`, 400, "body"},
		{"k2", `{"amount":"250","scale":3}`, 201, `{"amount":"250","scale":3}`},
		{strings.Repeat("k", 257), `{"amount":"1","scale":2}`, 400, "Idempotency-Key"}, // stored: bounded as the connector does
		{strings.Repeat("k", 256), `{"amount":"0","scale":2}`, 201, `{"amount":"0","scale":2}`},
		{"k5", `{"amount":"5000","scale":6}`, 201, `{"amount":"5000","scale":6}`},
		{"k5", `{"amount":"50000","scale":7}`, 201, `{"amount":"5000","scale":6}`}, // the same quantity: replayed
		{"k5", `{"amount":"5001","scale":6}`, 409, "was used for another request"},
	}
	for i, st := range steps {
		status, body := do(t, s, "POST", "/accounts/alice/settlements", st.key, st.body)
		if status != st.status || !strings.Contains(body, st.wantBody) {
			t.Fatalf("step %d: %d %q, want %d %q", i, status, body, st.status, st.wantBody)
		}
	}
	eventually(t, "1.255 settled", func() bool { return rec.total().Equal(dec("1.255")) })
	_ = s.Close(context.Background())
	if got := rec.total(); !got.Equal(dec("1.255")) {
		t.Fatalf("settled %s, want 1.255 (a replay settled again?)", got)
	}
}

// TestIdempotencyRecordsOfEarlierVersions: a record stored by an earlier version (hashed from
// the quantity as written) still answers a retry of its request after an upgrade.
func TestIdempotencyRecordsOfEarlierVersions(t *testing.T) {
	store := engine.NewMemory()
	ctx := context.Background()
	must[bool](t)(store.CreateAccount(ctx, "alice"))
	h := sha256.Sum256([]byte("alice\x00" + "100\x00" + "2"))
	old := &engine.Record{Key: "k1", Hash: hex.EncodeToString(h[:]), Status: 201, Body: []byte(`{"amount":"100","scale":2}`)}
	must[*engine.Record](t)(store.QueueSettlement(ctx, "alice", dec("1"), old))
	s := start(t, connectTo(&recorder{}), store, "http://127.0.0.1:1", 2)
	for _, st := range []struct {
		body   string
		status int
	}{
		{`{"amount":"100","scale":2}`, 201},
		{`{"amount":"101","scale":2}`, 409},
	} {
		if status, body := do(t, s, "POST", "/accounts/alice/settlements", "k1", st.body); status != st.status {
			t.Errorf("%s under an earlier version's key: %d %s, want %d", st.body, status, body, st.status)
		}
	}
}

// refusing answers messages with err.
type refusing struct{ recorder }

func (r *refusing) HandleMessage(_ context.Context, _ string, m json.RawMessage) (any, error) {
	var msg struct{ Err string }
	_ = json.Unmarshal(m, &msg)
	switch msg.Err {
	case "refused":
		return nil, fmt.Errorf("no such message: %w", engine.ErrRefused)
	case "broken":
		return nil, errors.New("ledger down")
	}
	return map[string]string{"ok": "1"}, nil
}

// TestMessageRefused: an engine refuses a message it did not take with ErrRefused (400, which
// the connector reports to the peer as not taken); any other error may have taken it (500).
func TestMessageRefused(t *testing.T) {
	s := start(t, connectTo(&refusing{}), engine.NewMemory(), "http://127.0.0.1:1", 2)
	do(t, s, "POST", "/accounts", "", `{"id":"alice"}`)
	for _, tc := range []struct {
		msg    string
		status int
	}{
		{`{"Err":""}`, 201},
		{`{"Err":"refused"}`, 400},
		{`{"Err":"broken"}`, 500},
	} {
		if status, body := do(t, s, "POST", "/accounts/alice/messages", "", tc.msg); status != tc.status {
			t.Errorf("message %s: %d %s, want %d", tc.msg, status, body, tc.status)
		}
	}
}

// TestAssetScaleRequired: a forgotten AssetScale (0) is refused at Start, since it would round
// every credit down to whole units; 0 is taken when WholeUnits says so.
func TestAssetScaleRequired(t *testing.T) {
	for _, tc := range []struct {
		name       string
		scale      uint8
		wholeUnits bool
		wantErr    string
	}{
		{"forgotten", 0, false, "AssetScale is not set"},
		{"whole units", 0, true, ""},
		{"set", 6, false, ""},
		{"contradictory", 6, true, "contradicts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := engine.Start(context.Background(), connectTo(&recorder{}), engine.NewMemory(), engine.Config{
				Addr: "127.0.0.1:0", AssetScale: tc.scale, WholeUnits: tc.wholeUnits, Log: slog.New(slog.DiscardHandler)})
			if err == nil {
				_ = s.Close(context.Background())
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Start: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// peerStandIn is a connector stand-in that answers the mock's messages as the peer's mock
// would, and records them.
type peerStandIn struct {
	mu      sync.Mutex
	amounts []string
}

func (p *peerStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m mock.Message
	_ = json.NewDecoder(r.Body).Decode(&m)
	p.mu.Lock()
	p.amounts = append(p.amounts, m.Amount)
	p.mu.Unlock()
	w.WriteHeader(201)
	_, _ = w.Write([]byte(`{"type":"ack"}`))
}

func (p *peerStandIn) got() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.amounts...)
}

func TestLeftovers(t *testing.T) {
	peer := &peerStandIn{}
	conn := httptest.NewServer(peer)
	defer conn.Close()
	store := engine.NewMemory()
	s := start(t, mock.Connect(2), store, conn.URL, 9)
	if st, _ := do(t, s, "POST", "/accounts", "", `{"id":"alice"}`); st != 201 {
		t.Fatal(st)
	}
	if st, b := do(t, s, "POST", "/accounts/alice/settlements", "k1", `{"amount":"1005","scale":3}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "1.00 settled", func() bool { return len(peer.got()) == 1 })
	eventually(t, "0.005 kept", func() bool { return store.Queued("alice").Equal(dec("0.005")) })
	if st, b := do(t, s, "POST", "/accounts/alice/settlements", "k2", `{"amount":"5","scale":3}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "0.01 settled", func() bool { return len(peer.got()) == 2 })
	eventually(t, "nothing kept", func() bool { return store.Queued("alice").IsZero() })
	if got := peer.got(); got[0] != "1" || got[1] != "0.01" {
		t.Fatalf("settlements sent: %v, want [1 0.01]", got)
	}
}

// fixed is an engine whose Settle answers settled (or err) and counts its calls.
type fixed struct {
	settled decimal.Decimal
	err     error
	mu      sync.Mutex
	calls   int
}

func (f *fixed) Settle(context.Context, string, decimal.Decimal) (decimal.Decimal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.settled, f.err
}

func (f *fixed) n() int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls }

// TestSettleOutcomes: what stays queued after Settle answers.
func TestSettleOutcomes(t *testing.T) {
	cases := []struct {
		name    string
		settled string
		err     error
		kept    string
	}{
		{"all", "2", nil, "0"},
		{"part, retried: 2 - 0.5 - 0.5", "0.5", nil, "1"},
		{"error: taken as all, for safety", "0", io.ErrUnexpectedEOF, "0"},
		{"more than asked", "3", nil, "0"},
		{"negative: taken as 0", "-1", nil, "2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eng := &fixed{settled: dec(c.settled), err: c.err}
			store := engine.NewMemory()
			var svc engine.Services
			connect := func(_ context.Context, s engine.Services) (engine.Engine, error) { svc = s; return eng, nil }
			s := start(t, connect, store, "http://127.0.0.1:1", 2)
			do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
			if st, b := do(t, s, "POST", "/accounts/a/settlements", "k", `{"amount":"2","scale":0}`); st != 201 {
				t.Fatal(st, b)
			}
			eventually(t, "settled once", func() bool { return eng.n() == 1 })
			svc.TrySettlement("a") // waits for the first round, then retries what is kept
			if c.kept != "0" {
				eventually(t, "retried", func() bool { return eng.n() == 2 })
			}
			_ = s.Close(context.Background())
			if got := store.Queued("a"); !got.Equal(dec(c.kept)) {
				t.Fatalf("kept %s, want %s", got, c.kept)
			}
		})
	}
}

// notYet settles nothing the first times (the peer's engine is not up), then everything.
type notYet struct {
	mu    sync.Mutex
	calls int
	fails int
}

func (n *notYet) Settle(_ context.Context, _ string, amount decimal.Decimal) (decimal.Decimal, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	if n.calls <= n.fails {
		return decimal.Zero, engine.ErrNotSettled
	}
	return amount, nil
}

func (n *notYet) n() int { n.mu.Lock(); defer n.mu.Unlock(); return n.calls }

// TestNotSettledIsTriedAgain: a Settle that paid nothing and says so keeps the amount queued,
// and the framework tries again by itself (the connector asks once) until it is settled.
func TestNotSettledIsTriedAgain(t *testing.T) {
	eng := &notYet{fails: 2}
	store := engine.NewMemory()
	connect := func(context.Context, engine.Services) (engine.Engine, error) { return eng, nil }
	s := start(t, connect, store, "http://127.0.0.1:1", 2)
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	if st, b := do(t, s, "POST", "/accounts/a/settlements", "k", `{"amount":"2","scale":0}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "settled at the third attempt", func() bool { return eng.n() == 3 && store.Queued("a").IsZero() })
}

// unsure cannot tell whether it paid its first `unknown` calls, then pays; it records the id
// and amount of each call.
type unsure struct {
	mu      sync.Mutex
	unknown int
	calls   []string // "id amount"
}

func (u *unsure) Settle(ctx context.Context, _ string, amount decimal.Decimal) (decimal.Decimal, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.calls = append(u.calls, engine.SettlementID(ctx)+" "+amount.String())
	if len(u.calls) <= u.unknown {
		return decimal.Zero, fmt.Errorf("ledger timeout: %w", engine.ErrOutcomeUnknown)
	}
	return amount, nil
}

func (u *unsure) got() []string { u.mu.Lock(); defer u.mu.Unlock(); return slices.Clone(u.calls) }

// TestOutcomeUnknownTriedWithTheSameID: a Settle that cannot tell whether it paid is called
// again with the same settlement id and amount — also after a restart, from the store — and
// what was queued meanwhile waits, then goes under an id of its own.
func TestOutcomeUnknownTriedWithTheSameID(t *testing.T) {
	srv := redistest.Start(t)
	first := &unsure{unknown: 1 << 30} // never knows
	store := openRedis(t, srv.URL())
	s := start(t, connectTo(first), store, "http://127.0.0.1:1", 2)
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	if st, b := do(t, s, "POST", "/accounts/a/settlements", "k1", `{"amount":"2","scale":0}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "tried three times", func() bool { return len(first.got()) >= 3 })
	if st, b := do(t, s, "POST", "/accounts/a/settlements", "k2", `{"amount":"5","scale":0}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "tried again since", func() bool { return len(first.got()) >= 5 })
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil { // the process stops: the next may take the prefix
		t.Fatal(err)
	}
	calls := first.got()
	for _, c := range calls {
		if c != calls[0] || !strings.HasSuffix(c, " 2") || len(c) < 20 {
			t.Fatalf("calls %v: want the same id and amount 2 on every one", calls)
		}
	}

	second := &unsure{unknown: 1} // a new process: only Redis remembers
	start(t, connectTo(second), openRedis(t, srv.URL()), "http://127.0.0.1:1", 2)
	eventually(t, "the attempt settled, then the 5 queued meanwhile", func() bool { return len(second.got()) == 3 })
	got := second.got()
	if got[0] != calls[0] || got[1] != calls[0] || strings.HasPrefix(got[2], strings.Fields(calls[0])[0]) || !strings.HasSuffix(got[2], " 5") {
		t.Fatalf("calls after the restart %v; want %q twice, then 5 under another id", got, calls[0])
	}
}

// TestRetriesWaitForTheBackoff: after a Settle of unknown outcome the account waits for its
// backoff, however many settlements its connector asks for meanwhile (each used to retry at
// once and add a timer of its own); they stay queued.
func TestRetriesWaitForTheBackoff(t *testing.T) {
	never := &unsure{unknown: 1 << 30}
	s, err := engine.Start(context.Background(), connectTo(never), engine.NewMemory(), engine.Config{
		ConnectorURL: "http://127.0.0.1:1", Addr: "127.0.0.1:0", WholeUnits: true,
		Backoff: func(int) time.Duration { return time.Hour }, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	do(t, s, "POST", "/accounts", "", `{"id":"a"}`)
	if st, b := do(t, s, "POST", "/accounts/a/settlements", "k1", `{"amount":"2","scale":0}`); st != 201 {
		t.Fatal(st, b)
	}
	eventually(t, "the first Settle", func() bool { return len(never.got()) == 1 })
	for i := range 5 {
		if st, b := do(t, s, "POST", "/accounts/a/settlements", fmt.Sprintf("k%d", i+2), `{"amount":"1","scale":0}`); st != 201 {
			t.Fatal(st, b)
		}
	}
	if err := s.Close(context.Background()); err != nil { // waits for settle loops in progress
		t.Fatal(err)
	}
	if got := never.got(); len(got) != 1 {
		t.Errorf("Settle called %d times within an hour's backoff: %v", len(got), got)
	}
}
