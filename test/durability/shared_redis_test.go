package durability

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

// The shared-Redis test: two runtimes, one Redis, one ILP-over-HTTP peer account served by
// both at once. The account's maximum is the only thing standing between the peer and an
// overspend, and it holds only if both runtimes check it against the one balance in Redis.
const (
	sharedAddress = "test.shared"
	sharedPrefix  = "shared:"
	peerToken     = "peer-to-us"
	sinkToken     = "us-to-sink"
	// Every packet carries the same amount so that the expected outcome is exact: the sink
	// fulfills everything, so the peer's balance only grows, and a T04 means it had reached
	// the maximum; hence the fulfilled total ends at exactly sharedMax.
	sharedAmount  = 1000
	sharedMax     = 100 * sharedAmount // 100 packets may be fulfilled, across both runtimes
	sharedPerRT   = 150                // packets sent to each runtime: one alone could fulfill 100
	sharedWorkers = 8                  // concurrent senders per runtime
	sharedMinimum = "-1000000000000000000"
	sharedSinkMax = "1000000000000000000"
)

// TestSharedRedisPeerLimit: runtimes A1 and A2 share a Redis store (same prefix, distinct
// instance names) and both serve the ILP-over-HTTP account `peer` with balance maximum
// sharedMax. The test's sender loads both at once with more than either alone could fulfill
// and more than the maximum allows in all: the fulfilled total must be exactly the maximum
// (never above: no overspend), every other packet a T04 "exceeded maximum balance.", the
// balance both admin APIs read from Redis equal to the fulfilled total, and both runtimes must
// have fulfilled packets.
func TestSharedRedisPeerLimit(t *testing.T) {
	srv := redistest.Start(t)
	recv := startSink(t)
	rts := []*runtime{
		newSharedRuntime(t, "a1", srv.URL(), recv.url),
		newSharedRuntime(t, "a2", srv.URL(), recv.url),
	}
	for _, rt := range rts {
		rt.start(t)
	}
	out := sendShared(t, rts)

	var fulfilled int64
	for i, o := range out {
		t.Logf("runtime a%d: %d fulfilled, rejects by code %v", i+1, o.fulfilled, o.rejects)
		if o.fulfilled == 0 {
			t.Errorf("runtime a%d fulfilled no packet: the load was not shared", i+1)
		}
		for code, n := range o.rejects {
			if code != string(ilp.CodeInsufficientLiquidity)+" exceeded maximum balance." {
				t.Errorf("runtime a%d: %d rejects %q; want only T04 \"exceeded maximum balance.\" from %s", i+1, n, code, sharedAddress)
			}
		}
		fulfilled += o.fulfilled
	}
	total := fulfilled * sharedAmount
	if total > sharedMax {
		t.Fatalf("overspend: %d packets fulfilled = %d, above peer's maximum %d", fulfilled, total, sharedMax)
	}
	if total != sharedMax {
		t.Errorf("fulfilled %d < maximum %d although every packet beyond it was rejected T04 (all amounts equal, the sink fulfills all)", total, sharedMax)
	}
	if got := recv.fulfilled.Load(); got != fulfilled {
		t.Errorf("the sink fulfilled %d packets, the sender saw %d Fulfills", got, fulfilled)
	}
	for i, rt := range rts {
		b := sharedBalances(t, rt)
		if b["peer"] != total || b["sink"] != -total {
			t.Errorf("runtime a%d GET /balance: peer %d, sink %d; want %d and %d (the fulfilled total)", i+1, b["peer"], b["sink"], total, -total)
		}
	}
	waitRedisIdle(t, srv.URL(), total)
	for _, rt := range rts {
		rt.stop(t)
	}
}

// newSharedRuntime prepares (without starting) a runtime named name on the shared Redis: the
// HTTP account `peer` (incoming only, 127.0.0.1) and the HTTP account `sink` to the test's
// receiver. Only the ports and the Redis instance name differ between runtimes.
func newSharedRuntime(t *testing.T, name, redisURL, sinkURL string) *runtime {
	rt := &runtime{alicePort: freePort(t), adm: freePort(t), logPath: filepath.Join(t.TempDir(), name+".log")}
	accounts, _ := json.Marshal(map[string]any{
		"peer": map[string]any{
			"relation": "peer", "plugin": "ilp-plugin-http", "assetCode": "USD", "assetScale": 9,
			"sendRoutes": false, "receiveRoutes": false,
			"options":   map[string]any{"incoming": map[string]any{"host": "127.0.0.1", "port": rt.alicePort, "staticToken": peerToken}},
			"balance":   map[string]any{"minimum": sharedMinimum, "maximum": strconv.Itoa(sharedMax)},
			"rateLimit": map[string]any{"refillPeriod": 1000, "refillCount": 1e9, "capacity": 1e9},
		},
		"sink": map[string]any{
			"relation": "child", "plugin": "ilp-plugin-http", "assetCode": "USD", "assetScale": 9,
			"options": map[string]any{"outgoing": map[string]any{"url": sinkURL, "staticToken": sinkToken}},
			"balance": map[string]any{"minimum": sharedMinimum, "maximum": sharedSinkMax},
		},
	})
	storeCfg := fmt.Sprintf(`{"url":%q,"prefix":%q,"instance":%q}`, redisURL, sharedPrefix, name)
	rt.env = append(os.Environ(),
		"CONNECTOR_ENV=test", "CONNECTOR_ILP_ADDRESS="+sharedAddress, "CONNECTOR_BACKEND=one-to-one",
		"CONNECTOR_SPREAD=0", "CONNECTOR_ACCOUNTS="+string(accounts),
		"CONNECTOR_STORE=redis", "CONNECTOR_STORE_CONFIG="+storeCfg,
		"CONNECTOR_ADMIN_API=true", "CONNECTOR_ADMIN_API_PORT="+strconv.Itoa(rt.adm))
	t.Cleanup(func() {
		if rt.cmd != nil {
			rt.kill(t)
		}
		if t.Failed() {
			log, _ := os.ReadFile(rt.logPath)
			t.Logf("runtime %s log (last 4 KiB):\n%s", name, tail(log, 4096))
		}
	})
	return rt
}

// sink is the test's receiver behind the runtimes' `sink` account: an ILP-over-HTTP server
// that fulfills every packet whose data starts with its preimage.
type sink struct {
	url       string
	fulfilled atomic.Int64
}

func startSink(t *testing.T) *sink {
	s := &sink{}
	l, err := ilphttp.New(&ilphttp.Options{
		Incoming: &ilphttp.IncomingOptions{Host: "127.0.0.1", Auth: ilphttp.Auth{Token: sinkToken}},
		Account:  "sink", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background(), s.receive); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	s.url = "http://" + l.Addr().String() + "/ilp"
	return s
}

func (s *sink) receive(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if len(p.Data) != 40 {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, sharedAddress+".sink", "not a test packet")
	}
	var f ilp.Fulfill
	copy(f.Fulfillment[:], p.Data[:32])
	s.fulfilled.Add(1)
	return &f, nil
}

// sharedOutcome is what the sender saw through one runtime: Fulfills, and Rejects counted by
// "code message" (triggeredBy checked on the way).
type sharedOutcome struct {
	fulfilled int64
	rejects   map[string]int
}

// sendShared sends sharedPerRT packets to each runtime, sharedWorkers at a time per runtime,
// all workers released together so that the runtimes race for the peer's balance.
func sendShared(t *testing.T, rts []*runtime) []sharedOutcome {
	t.Helper()
	out := make([]sharedOutcome, len(rts))
	var mu sync.Mutex
	var errs []string
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i, rt := range rts {
		out[i].rejects = map[string]int{}
		link := senderLink(t, rt.alicePort)
		var next atomic.Int64
		for range sharedWorkers {
			wg.Go(func() {
				<-begin
				for next.Add(1) <= sharedPerRT { // bounded: sharedPerRT packets per runtime
					f, err := sendSharedOne(link)
					mu.Lock()
					var r *ilp.Reject
					switch {
					case err == nil && f != nil:
						out[i].fulfilled++
					case errors.As(err, &r) && r.TriggeredBy == sharedAddress:
						out[i].rejects[string(r.Code)+" "+r.Message]++
					case errors.As(err, &r):
						errs = append(errs, fmt.Sprintf("a%d: reject %s %q triggered by %q, not %s", i+1, r.Code, r.Message, r.TriggeredBy, sharedAddress))
					default:
						errs = append(errs, fmt.Sprintf("a%d: %v", i+1, err))
					}
					mu.Unlock()
				}
			})
		}
	}
	close(begin)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d packets failed outside the balance check, first: %s", len(errs), errs[0])
	}
	return out
}

// senderLink is the peer's side of the `peer` account of one runtime: an ILP-over-HTTP client
// with the token the runtime expects.
func senderLink(t *testing.T, port int) *ilphttp.Link {
	l, err := ilphttp.New(&ilphttp.Options{
		Outgoing: &ilphttp.OutgoingOptions{URL: fmt.Sprintf("http://127.0.0.1:%d/ilp", port), Auth: ilphttp.Auth{Token: peerToken}},
		Account:  "us", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func sendSharedOne(link *ilphttp.Link) (*ilp.Fulfill, error) {
	data := make([]byte, 40)
	_, _ = rand.Read(data[:32])
	p := &ilp.Prepare{Amount: sharedAmount, ExpiresAt: time.Now().Add(10 * time.Second),
		ExecutionCondition: sha256.Sum256(data[:32]), Destination: sharedAddress + ".sink.x", Data: data}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	return link.Send(ctx, p)
}

// sharedBalances reads GET /balance of a runtime's admin API.
func sharedBalances(t *testing.T, rt *runtime) map[string]int64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(rt.adminURL("/balance"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Accounts map[string]struct {
			Balance string `json:"balance"`
		} `json:"accounts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for id, a := range body.Accounts {
		v, err := strconv.ParseInt(a.Balance, 10, 64)
		if err != nil {
			t.Fatalf("GET /balance: account %s: %v", id, err)
		}
		out[id] = v
	}
	return out
}

// waitRedisIdle checks the shared hash of `peer` directly: its balance is the fulfilled total
// and, once both runtimes have ended their packets (just after answering them), neither holds a
// reservation or an open packet change.
func waitRedisIdle(t *testing.T, url string, total int64) {
	t.Helper()
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	var h map[string]string
	for range 100 { // at most ~2 s
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		h, err = c.HGetAll(ctx, sharedPrefix+"acct:peer").Result()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if redisIdle(h) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !redisIdle(h) {
		t.Errorf("peer's hash in Redis still holds packet state: %v", h)
	}
	if h["b"] != strconv.FormatInt(total, 10) {
		t.Errorf("peer's balance in Redis is %q, want %d: %v", h["b"], total, h)
	}
}

func redisIdle(h map[string]string) bool {
	for k, v := range h {
		if (k == "p" && v != "0") || strings.HasPrefix(k, "o:") || strings.HasPrefix(k, "p:") {
			return false
		}
	}
	return true
}
