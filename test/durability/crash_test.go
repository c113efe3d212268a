// Package durability holds the crash tests of the connector's persistent stores: a real
// `ilpfleet connector` process under load is killed with SIGKILL and restarted on the same
// store, and its balances must equal what the packets the load generator saw fulfilled imply.
//
// The rule under test (runtime/store, "Packet scopes"): a packet counts on both of its
// accounts exactly when its balance changes were made durable, which the connector does just
// before it answers; a crash before that leaves no trace of the packet, reservations included.
// The only packets that may count without the sender having seen their Fulfill are those in
// the irreducible window between the durable write and the write of the Fulfill to the
// sender's connection: both accounts then count them (never one alone), and the receiver did
// fulfill them.
package durability

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testport"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store/redistest"
)

var binary_ string // the ilpfleet binary, built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ilpfleet-durability")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary_ = filepath.Join(dir, "ilpfleet")
	build := exec.Command("go", "build", "-o", binary_, "github.com/ilpfleet/ilpfleet")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ilpfleet:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const (
	concurrency = 24
	address     = "test.crash"
)

func TestCrashFileStore(t *testing.T) {
	crashTest(t, map[string]string{"CONNECTOR_STORE": "file", "CONNECTOR_STORE_PATH": t.TempDir()}, nil)
}

func TestCrashRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	cfg := fmt.Sprintf(`{"url":%q,"instance":"crash-1","prefix":"crash:"}`, srv.URL())
	crashTest(t, map[string]string{"CONNECTOR_STORE": "redis", "CONNECTOR_STORE_CONFIG": cfg},
		func(t *testing.T) { checkRedisClean(t, srv.URL()) })
}

// crashTest: load, hold every new packet at the receiver, kill -9 with packets in flight,
// restart, check exactly; then load and kill -9 at a random moment, restart, check with the
// irreducible window; then a clean check that the restarted runtime still forwards.
func crashTest(t *testing.T, storeEnv map[string]string, extra func(*testing.T)) {
	rt := newRuntime(t, storeEnv)
	rt.start(t)
	lg := newLoad(t, rt)
	defer lg.close()

	// 1. Kill with packets held at the receiver: their Prepares raised alice and reserved bob.
	lg.run(t, 700*time.Millisecond, func() {
		lg.hold.Store(true)
		lg.waitQuiet(t) // every Fulfill the receiver sent has reached the sender
		lg.waitHeld(t, concurrency/2)
		rt.kill(t)
	})
	rt.start(t)
	lg.releaseHeld()
	lg.waitConnected(t)
	seen, pending := lg.accounting()
	if len(pending) != 0 {
		t.Fatalf("%d packets fulfilled by the receiver but not seen by the sender before a quiet kill", len(pending))
	}
	rt.checkBalances(t, seen, nil)
	t.Logf("quiet kill: %d packets fulfilled, %d held in flight at the kill, balances exact", lg.fulfilledCount(), lg.heldAtKill.Load())
	if extra != nil {
		extra(t)
	}

	// 2. Kill at a moment nobody chose.
	lg.run(t, 400*time.Millisecond+time.Duration(randN(600))*time.Millisecond, func() { rt.kill(t) })
	rt.start(t)
	lg.waitConnected(t)
	seen, window := lg.accounting()
	n := rt.checkBalances(t, seen, window)
	t.Logf("random kill: %d packets fulfilled in all; %d fulfilled by the receiver but unseen by the sender, of which %d counted (durable before the kill, Fulfill not yet written)",
		lg.fulfilledCount(), len(window), n)
	if extra != nil {
		extra(t)
	}

	// 3. The restarted runtime forwards, and its books still add up.
	lg.run(t, 300*time.Millisecond, nil)
	seen, window = lg.accounting()
	rt.checkBalances(t, seen, window)
	rt.stop(t)
}

func randN(n int64) int64 {
	v, _ := rand.Int(rand.Reader, big.NewInt(n))
	return v.Int64()
}

// --- the runtime process ---------------------------------------------------------------

type runtime struct {
	env                     []string
	alicePort, bobPort, adm int
	cmd                     *exec.Cmd
	exited                  chan struct{}
	cpu                     time.Duration // user + system time of the last process stop waited for
	logPath                 string
	starts                  int
}

func freePort(t *testing.T) int { return testport.Get(t) }

func newRuntime(t *testing.T, storeEnv map[string]string) *runtime {
	return newRuntimeWith(t, storeEnv, nil)
}

// newRuntimeWith is newRuntime with edit (if any) applied to the account objects before they
// are encoded, for tests that need more than the two plain BTP children (a settlement engine).
func newRuntimeWith(t *testing.T, storeEnv map[string]string, edit func(accounts map[string]map[string]any)) *runtime {
	rt := &runtime{alicePort: freePort(t), bobPort: freePort(t), adm: freePort(t), logPath: filepath.Join(t.TempDir(), "runtime.log")}
	const limit = "1000000000000000000"
	acct := func(port int, secret string) map[string]any {
		return map[string]any{
			"relation": "child", "plugin": "ilp-plugin-btp", "assetCode": "USD", "assetScale": 9,
			"options":   map[string]any{"listener": map[string]any{"port": port, "secret": secret}},
			"balance":   map[string]any{"minimum": "-" + limit, "maximum": limit},
			"rateLimit": map[string]any{"refillPeriod": 1000, "refillCount": 1e12, "capacity": 1e12},
		}
	}
	objs := map[string]map[string]any{"alice": acct(rt.alicePort, "alice-secret"), "bob": acct(rt.bobPort, "bob-secret")}
	if edit != nil {
		edit(objs)
	}
	accounts, _ := json.Marshal(objs)
	rt.env = append(os.Environ(),
		"CONNECTOR_ENV=test", "CONNECTOR_ILP_ADDRESS="+address, "CONNECTOR_BACKEND=one-to-one",
		"CONNECTOR_SPREAD=0", "CONNECTOR_ACCOUNTS="+string(accounts),
		"CONNECTOR_ADMIN_API=true", "CONNECTOR_ADMIN_API_PORT="+strconv.Itoa(rt.adm))
	for k, v := range storeEnv {
		rt.env = append(rt.env, k+"="+v)
	}
	t.Cleanup(func() {
		if rt.cmd != nil {
			rt.kill(t)
		}
		if t.Failed() {
			log, _ := os.ReadFile(rt.logPath)
			t.Logf("runtime log (last 4 KiB):\n%s", tail(log, 4096))
		}
	})
	return rt
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (rt *runtime) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(rt.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	rt.starts++
	fmt.Fprintf(logf, "----- start %d -----\n", rt.starts)
	cmd := exec.Command(binary_, "connector", "--log-level", "warn")
	cmd.Env, cmd.Stdout, cmd.Stderr = rt.env, logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rt.cmd, rt.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); _ = logf.Close(); close(exited) }(rt.exited)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-rt.exited:
			log, _ := os.ReadFile(rt.logPath)
			t.Fatalf("runtime exited at start:\n%s", tail(log, 4096))
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get(rt.adminURL("/healthz")); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatal("runtime not healthy after 15 s")
}

func (rt *runtime) adminURL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(rt.adm) + path
}

// kill is kill -9.
func (rt *runtime) kill(t *testing.T) {
	_ = rt.cmd.Process.Kill()
	<-rt.exited
	rt.cmd = nil
}

func (rt *runtime) stop(t *testing.T) {
	_ = rt.cmd.Process.Signal(os.Interrupt)
	select {
	case <-rt.exited:
	case <-time.After(10 * time.Second):
		t.Error("runtime did not stop on SIGINT in 10 s")
		_ = rt.cmd.Process.Kill()
		<-rt.exited
	}
	if code := rt.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("runtime exited with status %d after SIGINT, want 0", code)
	}
	rt.cpu = rt.cmd.ProcessState.UserTime() + rt.cmd.ProcessState.SystemTime()
	rt.cmd = nil
}

func (rt *runtime) balances(t *testing.T) (alice, bob int64) {
	t.Helper()
	resp, err := http.Get(rt.adminURL("/balance"))
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
	alice, err1 := strconv.ParseInt(body.Accounts["alice"].Balance, 10, 64)
	bob, err2 := strconv.ParseInt(body.Accounts["bob"].Balance, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("GET /balance: %+v", body)
	}
	return alice, bob
}

// checkBalances requires alice = Σseen + ΣS and bob = −(Σseen + ΣS) for one subset S of the
// window (packets the receiver fulfilled and the sender did not see), and returns |S|.
func (rt *runtime) checkBalances(t *testing.T, seen int64, window []int64) int {
	t.Helper()
	alice, bob := rt.balances(t)
	da, db := alice-seen, -bob-seen
	if da != db {
		t.Fatalf("the two sides disagree: alice %d, bob %d, fulfilled-and-seen %d (alice off by %d, bob by %d)", alice, bob, seen, da, db)
	}
	if da == 0 {
		return 0
	}
	k, ok := subsetOf(window, da)
	if !ok {
		t.Fatalf("drift: alice %d, bob %d, fulfilled-and-seen %d; the extra %d is no set of the %d packets in the window %v",
			alice, bob, seen, da, len(window), window)
	}
	return k
}

// subsetOf finds a subset of vs summing to target (meet in the middle; len(vs) ≤ 40) and
// returns its size.
func subsetOf(vs []int64, target int64) (int, bool) {
	if len(vs) > 40 {
		return 0, false
	}
	half := len(vs) / 2
	sums := func(xs []int64) map[int64]int {
		m := map[int64]int{0: 0}
		for _, x := range xs {
			next := make(map[int64]int, 2*len(m))
			for s, k := range m {
				next[s] = k
				next[s+x] = k + 1
			}
			m = next
		}
		return m
	}
	left, right := sums(vs[:half]), sums(vs[half:])
	for s, k := range left {
		if k2, ok := right[target-s]; ok {
			return k + k2, true
		}
	}
	return 0, false
}

// --- the load generator side -----------------------------------------------------------

// load sends Prepares from alice to bob and records, per packet, whether the receiver fulfilled
// it and whether the sender saw the Fulfill.
type load struct {
	sender, receiver *btp.Client
	hold             atomic.Bool
	heldNow          atomic.Int64
	heldAtKill       atomic.Int64
	release          chan struct{}
	nextID           atomic.Uint64

	mu        sync.Mutex
	amounts   map[uint64]int64
	fulfilled map[uint64]bool // by the receiver
	seen      map[uint64]bool // Fulfill received by the sender
}

func newLoad(t *testing.T, rt *runtime) *load {
	lg := &load{release: make(chan struct{}), amounts: map[uint64]int64{}, fulfilled: map[uint64]bool{}, seen: map[uint64]bool{}}
	quiet := slog.New(slog.DiscardHandler)
	mk := func(port int, secret string) *btp.Client {
		c, err := btp.NewClient(btp.ClientOptions{
			Server:            fmt.Sprintf("btp+ws://lg:%s@127.0.0.1:%d", secret, port),
			ReconnectInterval: 50 * time.Millisecond,
			Common:            btp.Common{ResponseTimeout: 5 * time.Second, Logger: quiet, MaxInFlight: 4 * concurrency},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	lg.sender, lg.receiver = mk(rt.alicePort, "alice-secret"), mk(rt.bobPort, "bob-secret")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lg.receiver.Start(ctx, lg.receive); err != nil {
		t.Fatal(err)
	}
	if err := lg.sender.Start(ctx, func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, address+".alice", "the sender accepts nothing")
	}); err != nil {
		t.Fatal(err)
	}
	lg.waitConnected(t)
	return lg
}

func (lg *load) close() {
	_ = lg.sender.Close()
	_ = lg.receiver.Close()
}

// receive is the receiver's handler: it fulfills the test's packets, or holds them.
func (lg *load) receive(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if len(p.Data) != 40 {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, address+".bob", "not a test packet")
	}
	if lg.hold.Load() {
		lg.heldNow.Add(1)
		defer lg.heldNow.Add(-1)
		select {
		case <-lg.release:
		case <-ctx.Done():
		}
		return nil, ilp.Rejectf(ilp.CodeInternalError, address+".bob", "held")
	}
	id := binary.BigEndian.Uint64(p.Data[32:])
	var f ilp.Fulfill
	copy(f.Fulfillment[:], p.Data[:32])
	lg.mu.Lock()
	lg.fulfilled[id] = true
	lg.mu.Unlock()
	return &f, nil
}

// run sends packets at concurrency until d has passed, calls then (if any), and waits for the
// senders to finish (bounded by the response timeout).
func (lg *load) run(t *testing.T, d time.Duration, then func()) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := 0; i < 1_000_000; i++ { // bounded; ends on stop
				select {
				case <-stop:
					return
				default:
				}
				lg.sendOne()
			}
		})
	}
	time.Sleep(d)
	if then != nil {
		then()
	}
	close(stop)
	wg.Wait()
}

func (lg *load) sendOne() {
	id := lg.nextID.Add(1)
	amount := 1 + randN(1_000_000)
	data := make([]byte, 40)
	_, _ = rand.Read(data[:32])
	binary.BigEndian.PutUint64(data[32:], id)
	p := &ilp.Prepare{Amount: uint64(amount), ExpiresAt: time.Now().Add(10 * time.Second),
		ExecutionCondition: sha256.Sum256(data[:32]), Destination: address + ".bob.x", Data: data}
	lg.mu.Lock()
	lg.amounts[id] = amount
	lg.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	f, err := lg.sender.Send(ctx, p)
	if err == nil && f != nil {
		lg.mu.Lock()
		lg.seen[id] = true
		lg.mu.Unlock()
	}
	if err != nil && !lg.hold.Load() {
		time.Sleep(5 * time.Millisecond) // the runtime is down: do not spin
	}
}

// waitQuiet waits until every packet the receiver fulfilled has been seen by the sender.
func (lg *load) waitQuiet(t *testing.T) {
	t.Helper()
	quiet := 0
	for range 500 {
		lg.mu.Lock()
		n := 0
		for id := range lg.fulfilled {
			if !lg.seen[id] {
				n++
			}
		}
		lg.mu.Unlock()
		// Twice in a row: a receiver that read hold just before it was set may still record one.
		if quiet++; n != 0 {
			quiet = 0
		}
		if quiet == 2 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("fulfilled packets not seen by the sender after 5 s")
}

func (lg *load) waitHeld(t *testing.T, n int64) {
	t.Helper()
	for range 500 {
		if h := lg.heldNow.Load(); h >= n {
			lg.heldAtKill.Store(h)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("only %d packets held at the receiver after 5 s", lg.heldNow.Load())
}

func (lg *load) releaseHeld() {
	lg.hold.Store(false)
	close(lg.release)
}

func (lg *load) waitConnected(t *testing.T) {
	t.Helper()
	for range 300 {
		if lg.sender.Connected() && lg.receiver.Connected() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("load generator links not connected after 15 s")
}

// accounting returns the sum of the packets the sender saw fulfilled, and the amounts of those
// the receiver fulfilled that the sender did not see.
func (lg *load) accounting() (seen int64, window []int64) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	for id := range lg.seen {
		seen += lg.amounts[id]
	}
	for id := range lg.fulfilled {
		if !lg.seen[id] {
			window = append(window, lg.amounts[id])
		}
	}
	sort.Slice(window, func(i, j int) bool { return window[i] < window[j] })
	return seen, window
}

func (lg *load) fulfilledCount() int {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return len(lg.seen)
}

// checkRedisClean: with the runtime idle, no reservation and no open packet change is left in
// Redis — the restarted runtime reverted those of the killed one.
func checkRedisClean(t *testing.T, url string) {
	t.Helper()
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	for _, acct := range []string{"alice", "bob"} {
		h, err := c.HGetAll(ctx, "crash:acct:"+acct).Result()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			if (k == "p" && v != "0") || strings.HasPrefix(k, "o:") || strings.HasPrefix(k, "p:") {
				t.Fatalf("account %s after restart: %s = %s left over (%v)", acct, k, v, h)
			}
		}
	}
}
