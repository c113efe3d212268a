package durability

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// The settlement crash test: DESIGN.md's rule that "a settlement that is due is recorded
// durably with its idempotency key before the engine is called, and retried with the same key
// until the engine answers", checked on the real binary killed with SIGKILL while the engine
// is refusing the settlement.
const (
	settleThreshold = -1000
	settleTo        = 0
	settlePayment   = 5000 // one payment to bob: bob's balance −5000 < threshold, so 5000 is due
	settleScale     = 9    // bob's assetScale in newRuntime
)

// TestSettlementSurvivesKill: bob (an account we owe once alice pays through us) has a stand-in
// settlement engine that answers 503. After one payment the connector must have raised bob's
// balance to settleTo and asked the engine; it is then killed with -9, the engine comes up, and
// the restarted connector must send the same settlement again — same Idempotency-Key, same
// Quantity — and nothing else, leaving the balance at settleTo and counting one settlement.
func TestSettlementSurvivesKill(t *testing.T) {
	stores := []struct {
		name string
		env  func(t *testing.T) map[string]string
	}{
		{"file", func(t *testing.T) map[string]string {
			return map[string]string{"CONNECTOR_STORE": "file", "CONNECTOR_STORE_PATH": t.TempDir()}
		}},
		{"redis", func(t *testing.T) map[string]string {
			srv := redistest.Start(t)
			cfg := fmt.Sprintf(`{"url":%q,"instance":"settle-1","prefix":"settle:"}`, srv.URL())
			return map[string]string{"CONNECTOR_STORE": "redis", "CONNECTOR_STORE_CONFIG": cfg}
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) { settlementKillTest(t, st.env(t)) })
	}
}

func settlementKillTest(t *testing.T, env map[string]string) {
	eng := startStandInEngine(t)
	rt := newSettlementRuntime(t, env, eng.url)
	rt.start(t)
	lg := newLoad(t, rt)
	defer lg.close()

	// 1. The payment makes a settlement due; the engine refuses it.
	payBob(t, lg, settlePayment)
	before := eng.waitSettlements(t, 1)[0]
	want := settlement.Quantity{Amount: strconv.Itoa(settlePayment), Scale: settleScale}
	if before.q != want || before.key == "" {
		t.Fatalf("settlement before the kill: key %q, quantity %+v; want a key and %+v", before.key, before.q, want)
	}
	checkBobBalance(t, rt, "with the engine down (raised before the engine was asked)")
	if p := rt.metric(t, settlement.MetricSettlementPending, `account="bob"`); p != "1" {
		t.Fatalf("%s before the kill = %q; want 1", settlement.MetricSettlementPending, p)
	}

	// 2. kill -9 while the connector retries; the engine comes up; restart on the same store.
	rt.kill(t)
	eng.up.Store(true)
	rt.start(t)

	// 3. The restarted process settles (its counter, not the engine's log, is the barrier: a
	// request of the killed process may still have been in the engine's handler). Any count
	// ends the first wait, so that a second settlement fails below rather than time out here.
	rt.waitMetric(t, settlement.MetricSettlements, `direction="outgoing"`, "any value", func(v string) bool { return v != "" })
	rt.waitMetric(t, settlement.MetricSettlementPending, `account="bob"`, "0", func(v string) bool { return v == "0" })
	eng.waitQuiet(t)
	checkOnlyKey(t, eng.settlements(), before)
	checkBobBalance(t, rt, "after the restart and the engine's 201 (not raised twice, not lost)")
	if n := rt.metric(t, settlement.MetricSettlements, `direction="outgoing"`); n != "1" {
		t.Fatalf("%s{direction=\"outgoing\"} on the restarted process = %q; want 1", settlement.MetricSettlements, n)
	}
	rt.stop(t)
}

// newSettlementRuntime is the crash test's runtime with a settlement engine on bob and the
// settlement API on a port of its own (the default, 7771, would collide between tests).
func newSettlementRuntime(t *testing.T, env map[string]string, engineURL string) *runtime {
	env["CONNECTOR_SETTLEMENT_API_HOST"] = "127.0.0.1"
	env["CONNECTOR_SETTLEMENT_API_PORT"] = strconv.Itoa(freePort(t))
	return newRuntimeWith(t, env, func(accts map[string]map[string]any) {
		bal := accts["bob"]["balance"].(map[string]any)
		bal["settleThreshold"] = strconv.Itoa(settleThreshold)
		bal["settleTo"] = strconv.Itoa(settleTo)
		accts["bob"]["settlementEngine"] = map[string]any{"url": engineURL}
	})
}

// payBob sends one packet of amount from alice to bob and requires its Fulfill.
func payBob(t *testing.T, lg *load, amount uint64) {
	t.Helper()
	// The receiver fulfills 40-byte data: the preimage, then an id it does not check here.
	data := make([]byte, 40)
	_, _ = rand.Read(data[:32])
	binary.BigEndian.PutUint64(data[32:], lg.nextID.Add(1))
	p := &ilp.Prepare{Amount: amount, ExpiresAt: time.Now().Add(10 * time.Second),
		ExecutionCondition: sha256.Sum256(data[:32]), Destination: address + ".bob.x", Data: data}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if f, err := lg.sender.Send(ctx, p); err != nil || f == nil {
		t.Fatalf("payment of %d from alice to bob: fulfill %v, error %v", amount, f, err)
	}
}

// checkBobBalance requires bob at settleTo and alice at the payment (alice has no engine).
func checkBobBalance(t *testing.T, rt *runtime, when string) {
	t.Helper()
	alice, bob := rt.balances(t)
	if bob != settleTo || alice != settlePayment {
		t.Fatalf("balances %s: bob %d, alice %d; want bob at settleTo %d, alice %d", when, bob, alice, settleTo, settlePayment)
	}
}

// checkOnlyKey requires every settlement the engine saw to be the one of before, and one of
// them accepted.
func checkOnlyKey(t *testing.T, got []settleReq, before settleReq) {
	t.Helper()
	accepted := 0
	for i, r := range got {
		if r.key != before.key || r.q != before.q || r.account != "bob" {
			t.Fatalf("settlement request %d of %d: account %s, key %q, quantity %+v; want only bob, key %q, quantity %+v",
				i+1, len(got), r.account, r.key, r.q, before.key, before.q)
		}
		if r.status == http.StatusCreated {
			accepted++
		}
	}
	if accepted == 0 {
		t.Fatalf("none of the %d settlement requests was accepted by the engine", len(got))
	}
	t.Logf("%d settlement requests, all with key %s and quantity %+v; %d accepted", len(got), before.key, before.q, accepted)
}

// --- the stand-in settlement engine -------------------------------------------------------

// standInEngine answers RFC 38's connector → engine calls: POST /accounts with 201, and POST
// /accounts/{id}/settlements with 503 until up, then 201; it records every settlement request.
type standInEngine struct {
	url string
	up  atomic.Bool

	mu   sync.Mutex
	reqs []settleReq
}

type settleReq struct {
	account, key string
	q            settlement.Quantity
	status       int
}

func startStandInEngine(t *testing.T) *standInEngine {
	e := &standInEngine{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("POST /accounts/{id}/settlements", e.settle)
	srv := httptest.NewServer(mux) // 127.0.0.1:0
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *standInEngine) settle(w http.ResponseWriter, r *http.Request) {
	var q settlement.Quantity // strict: a body without amount or scale is refused
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&q); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status := http.StatusServiceUnavailable
	if e.up.Load() {
		status = http.StatusCreated
	}
	e.mu.Lock()
	e.reqs = append(e.reqs, settleReq{account: r.PathValue("id"), key: r.Header.Get("Idempotency-Key"), q: q, status: status})
	e.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusCreated {
		_ = json.NewEncoder(w).Encode(q)
	}
}

func (e *standInEngine) settlements() []settleReq {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]settleReq(nil), e.reqs...)
}

// waitSettlements waits (at most 15 s) until the engine has seen n settlement requests.
func (e *standInEngine) waitSettlements(t *testing.T, n int) []settleReq {
	t.Helper()
	for range 300 {
		if got := e.settlements(); len(got) >= n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the engine saw %d settlement requests in 15 s; want %d", len(e.settlements()), n)
	return nil
}

// waitQuiet gives a wrong connector a bounded while to send a settlement that should not
// exist (e.g. one with a new key right after the resend): it returns once the engine's log has
// not grown over 10 polls in a row, or fails after 200.
func (e *standInEngine) waitQuiet(t *testing.T) {
	t.Helper()
	last, still := -1, 0
	for range 200 {
		if n := len(e.settlements()); n != last {
			last, still = n, 0
		} else if still++; still == 10 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("settlement requests still arriving after 20 s (%d so far)", last)
}

// --- metrics ------------------------------------------------------------------------------

// metric returns the value, as exposed, of the first sample of name whose labels contain
// label (k="v"); "" when there is none.
func (rt *runtime) metric(t *testing.T, name, label string) string {
	t.Helper()
	resp, err := http.Get(rt.adminURL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+"{")
		labels, value, ok2 := strings.Cut(rest, "} ")
		if ok && ok2 && strings.Contains(labels, label) {
			return value
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ""
}

// waitMetric waits (at most 30 s: the engine is up, so the first attempt succeeds) until the
// sample of name with label satisfies ok (described by want).
func (rt *runtime) waitMetric(t *testing.T, name, label, want string, ok func(string) bool) {
	t.Helper()
	var got string
	for range 300 {
		if got = rt.metric(t, name, label); ok(got) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s{%s} = %q after 30 s; want %s", name, label, got, want)
}
