package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ccp"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// The reload stress test runs one connector over real BTP links: senders s1 (a child on a BTP
// listener), s2 (a peer on a BTP listener) and kids (mini-accounts, children k1, k2 and k3) pay
// receivers r1 (USD), r2 (EUR, which also announces routes over CCP) and rj (always rejects),
// while the config changes under them. The traffic accounts never change their link and are
// never removed: any answer on their path that the config sequence does not explain is a bug.
const (
	stressPackets   = 250 // per sender
	stressApplies   = 34  // config changes, refused ones included: two cycles of stressSteps
	stressMinPacket = 60  // the lowest maxPacketAmount the senders ever get: F08 above it only
	stressKidsLow   = 5000
	stressTraffic   = "s1 s2 kids r1 r2 rj"
)

// stressSenders are the senders: the account each pays from and its client (by name, see
// connectStressPeers).
var stressSenders = []struct{ account, client string }{
	{"s1", "s1"}, {"s2", "s2"}, {"kids", "k1"}, {"kids", "k2"}, {"kids", "k3"},
}

// stressParams are the parts of the config that the sequence changes.
type stressParams struct {
	maxPacket   int    // of s1, s2 and kids
	senderMax   int64  // balance maximum of s1 and s2 (never reached)
	kidsMax     int64  // balance maximum of kids: stressKidsLow bites (T04 allowed for kids)
	receiverMin int64  // balance minimum of r1, r2, rj (never reached)
	usdRate     string // static rate of USD against EUR
	spread      string
	extra       bool   // accounts x1 (peer) and x2 (child), which carry no traffic, are present
	subRoutes   bool   // test.r1.sub → r1 and test.r2.sub → r1 (instead of r2 by the prefix)
	rateCap     int    // rateLimit capacity of the senders (never reached)
	throughput  int64  // senders' incoming and receivers' outgoing throughput per second, 0: none (never reached)
	disabled    string // disableMiddleware, a YAML list
	x1Secret    string // x1's listener secret: a change reconnects x1 (no traffic)
	minWindow   int    // minMessageWindow, ms
	maxHold     int    // maxHoldTime, ms (packets expire in 30 s: neither window bites)
}

// stressPorts are the listener ports, fixed for the connector's life.
type stressPorts struct{ s1, s2, kids, r1, r2, rj, x1, x2 int }

func stressDoc(storeLines string, pt stressPorts, p stressParams) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nilpAddress: test.c\nbackend: static\n", storeLines)
	fmt.Fprintf(&b, "backendConfig: {base: EUR, rates: {USD: %q, EUR: \"1\"}}\n", p.usdRate)
	fmt.Fprintf(&b, "spread: %s\nminMessageWindow: %d\nmaxHoldTime: %d\n", p.spread, p.minWindow, p.maxHold)
	fmt.Fprintf(&b, "reflectPayments: false\ndisableMiddleware: %s\naccounts:\n", p.disabled)
	rl := fmt.Sprintf("rateLimit: {refillPeriod: 1000, refillCount: 1000000, capacity: %d}", p.rateCap)
	if p.throughput > 0 {
		rl += fmt.Sprintf("\n    throughput: {refillPeriod: 1000, incomingAmount: \"%d\"}", p.throughput)
	}
	sender := func(id, rel string, port int, max int64) {
		fmt.Fprintf(&b, "  %s:\n    relation: %s\n    plugin: ilp-plugin-btp\n    assetCode: USD\n    assetScale: 2\n", id, rel)
		fmt.Fprintf(&b, "    maxPacketAmount: \"%d\"\n    balance: {maximum: \"%d\"}\n    %s\n", p.maxPacket, max, rl)
		fmt.Fprintf(&b, "    options: {listener: {host: 127.0.0.1, port: %d, secret: tok-%s}}\n", port, id)
	}
	sender("s1", "child", pt.s1, p.senderMax)
	sender("s2", "peer", pt.s2, p.senderMax)
	fmt.Fprintf(&b, "  kids:\n    relation: child\n    plugin: ilp-plugin-mini-accounts\n    assetCode: USD\n    assetScale: 2\n")
	fmt.Fprintf(&b, "    maxPacketAmount: \"%d\"\n    balance: {maximum: \"%d\"}\n    %s\n", p.maxPacket, p.kidsMax, rl)
	fmt.Fprintf(&b, "    options: {wsOpts: {host: 127.0.0.1, port: %d}}\n", pt.kids)
	peer := func(id, rel, asset string, scale, port int, secret string) {
		fmt.Fprintf(&b, "  %s:\n    relation: %s\n    plugin: ilp-plugin-btp\n    assetCode: %s\n    assetScale: %d\n", id, rel, asset, scale)
		fmt.Fprintf(&b, "    balance: {minimum: \"%d\", maximum: \"1000\"}\n", p.receiverMin)
		if p.throughput > 0 {
			fmt.Fprintf(&b, "    throughput: {refillPeriod: 1000, outgoingAmount: \"%d\"}\n", p.throughput)
		}
		fmt.Fprintf(&b, "    options: {listener: {host: 127.0.0.1, port: %d, secret: %s}}\n", port, secret)
	}
	peer("r1", "peer", "USD", 2, pt.r1, "tok-r1")
	peer("r2", "peer", "EUR", 4, pt.r2, "tok-r2")
	peer("rj", "peer", "USD", 2, pt.rj, "tok-rj")
	routes := []string{"{targetPrefix: test.r1, peerId: r1}", "{targetPrefix: test.r2, peerId: r2}", "{targetPrefix: test.rj, peerId: rj}"}
	if p.extra {
		peer("x1", "peer", "USD", 2, pt.x1, p.x1Secret)
		peer("x2", "child", "EUR", 4, pt.x2, "tok-x2")
		routes = append(routes, "{targetPrefix: test.x1, peerId: x1}")
	}
	if p.subRoutes {
		routes = append(routes, "{targetPrefix: test.r1.sub, peerId: r1}", "{targetPrefix: test.r2.sub, peerId: r1}")
	}
	b.WriteString("routes:\n")
	for _, r := range routes {
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	return b.String()
}

// stressStep is one config change: change edits the params of the last accepted config, or
// refuse makes a config that the connector must refuse, changing nothing.
type stressStep struct {
	name   string
	change func(p *stressParams)
	// refuse, when set, makes a config that must be refused from the current params' doc.
	refuse func(t *testing.T, doc string) *config.Config
}

func stressSteps(taken int) []stressStep {
	return []stressStep{
		{name: "lower maxPacketAmount", change: func(p *stressParams) { p.maxPacket = stressMinPacket }},
		{name: "add x1 x2 and their route", change: func(p *stressParams) { p.extra = true }},
		{name: "add sub routes", change: func(p *stressParams) { p.subRoutes = true }},
		{name: "rate and spread", change: func(p *stressParams) { p.usdRate, p.spread = "1.20", "0.01" }},
		{name: "reconnect x1", change: func(p *stressParams) { p.x1Secret += "x" }},
		{name: "expiry windows", change: func(p *stressParams) { p.minWindow, p.maxHold = 500, 20000 }},
		{name: "kids maximum low", change: func(p *stressParams) { p.kidsMax = stressKidsLow }},
		{name: "identical config", change: func(*stressParams) {}},
		{name: "throughput limit on", change: func(p *stressParams) { p.throughput = 1000000000 }},
		{name: "stats, alert and deduplicate off", change: func(p *stressParams) { p.disabled = "[stats, alert, deduplicate]" }},
		{name: "invalid: route to an unknown account", refuse: func(t *testing.T, doc string) *config.Config {
			cfg := mustConfig(t, doc)
			cfg.Routes = append(cfg.Routes, config.Route{TargetPrefix: "test.nobody", PeerID: "nobody"})
			return cfg
		}},
		{name: "invalid: ilpAddress changes", refuse: func(t *testing.T, doc string) *config.Config {
			cfg := mustConfig(t, doc)
			cfg.ILPAddress = "test.other"
			return cfg
		}},
		// Refused after every pipeline is built; its maxima of 1 (s1, s2 in the first cycle)
		// would show as T04 if any of it took effect.
		{name: "refused: added account cannot listen", refuse: func(t *testing.T, doc string) *config.Config {
			doc = strings.Replace(doc, "routes:\n", "  x3:\n    relation: peer\n    plugin: ilp-plugin-btp\n    assetCode: USD\n    assetScale: 2\n"+
				"    options: {listener: {host: 127.0.0.1, port: "+itoa(taken)+", secret: s}}\nroutes:\n", 1)
			return mustConfig(t, strings.Replace(doc, "maximum: \"1000000000000\"", "maximum: \"1\"", -1))
		}},
		{name: "raise limits", change: func(p *stressParams) {
			p.maxPacket, p.senderMax, p.kidsMax, p.receiverMin, p.rateCap = 1000, 2000000000000, 1000000000000, -2000000000000, 2000000
		}},
		{name: "remove x1 x2, throughput off", change: func(p *stressParams) { p.extra, p.throughput = false, 0 }},
		{name: "middleware back on, windows back", change: func(p *stressParams) { p.disabled, p.minWindow, p.maxHold = "[]", 100, 30000 }},
		{name: "remove sub routes, rate back", change: func(p *stressParams) { p.subRoutes, p.usdRate, p.spread = false, "1.25", "0" }},
	}
}

func stressInitial() stressParams {
	return stressParams{maxPacket: 1000, senderMax: 1000000000000, kidsMax: 1000000000000, receiverMin: -1000000000000,
		usdRate: "1.25", spread: "0", rateCap: 1000000, disabled: "[]",
		x1Secret: "tok-x1", minWindow: 100, maxHold: 30000}
}

// stressLedger is what the test's peers saw: fulfilled amounts per connector account, and
// the outcomes no config of the sequence explains.
type stressLedger struct {
	mu         sync.Mutex
	fulfilled  map[string]int64 // by connector account: what its peers sent or received, fulfilled
	codes      map[string]int   // outcome counts, for the failure message
	unexpected []string
	answered   atomic.Int64
}

func (l *stressLedger) add(account string, amount int64) {
	l.mu.Lock()
	l.fulfilled[account] += amount
	l.mu.Unlock()
}

func (l *stressLedger) outcome(code string, bad string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.codes[code]++
	if bad != "" && len(l.unexpected) < 20 {
		l.unexpected = append(l.unexpected, bad)
	}
}

// receiver is a test peer behind r1 or r2: it fulfills every payment and counts it for its
// connector account; rj rejects them all with F99. Peer protocols (CCP) are refused.
func (l *stressLedger) receiver(account string) ilp.Handler {
	return func(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if p.Destination.HasPrefix("peer") {
			return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.peer", "no peer protocols here")
		}
		if account == "rj" {
			return nil, ilp.Rejectf(ilp.CodeFinalApplicationError, "test.rj", "no thanks")
		}
		if p.Amount%7 == 0 {
			time.Sleep(time.Millisecond) // some answers take a while: packets in flight across the swaps
		}
		l.add(account, -int64(p.Amount)) // a payment to the peer lowers the connector's balance of it
		return &ilp.Fulfill{Fulfillment: preimage}, nil
	}
}

// stressDestinations are where the senders pay; test.r2.sub.* goes to r2 or r1 by the routes.
// test.far.x goes to r2 by a route learned from it over CCP, which no config change may lose.
var stressDestinations = []string{"test.r1.x", "test.r2.x", "test.r2.sub.x", "test.r1.sub.x", "test.rj.x", "test.far.x"}

// check classifies one answer. Allowed, and why:
//   - Fulfill with our preimage, for destinations under r1 and r2;
//   - F99 triggered by test.rj, for test.rj.*: rj's own answer, passed through as is;
//   - F08 by test.c when the amount is above stressMinPacket: the sequence lowers the
//     senders' maxPacketAmount to it;
//   - T04 "exceeded maximum balance." by test.c for the kids' packets: the sequence lowers the
//     kids' maximum below their balance.
//
// Everything else is a bug: F02 or T01 (traffic accounts and their routes are never removed,
// and their links never change), T00, T05 and R00/R02 (the limits and expiries never bite).
func (l *stressLedger) check(account, dest string, amount uint64, f *ilp.Fulfill, err error) {
	var r *ilp.Reject
	switch {
	case err == nil && f != nil && f.Fulfillment == preimage && !strings.HasPrefix(dest, "test.rj"):
		l.add(account, int64(amount))
		l.outcome("fulfill", "")
		return
	case err == nil:
		l.outcome("bad fulfill", fmt.Sprintf("%s → %s (%d): unexpected fulfill %v", account, dest, amount, f))
		return
	case !errors.As(err, &r):
		l.outcome("error", fmt.Sprintf("%s → %s (%d): not a Reject: %v", account, dest, amount, err))
		return
	}
	ok := false
	switch r.Code {
	case ilp.CodeFinalApplicationError:
		ok = strings.HasPrefix(dest, "test.rj") && r.TriggeredBy == "test.rj"
	case ilp.CodeAmountTooLarge:
		got, max, derr := ilp.ParseAmountTooLargeData(r.Data)
		ok = amount > stressMinPacket && r.TriggeredBy == "test.c" && derr == nil && got == amount && max >= stressMinPacket
	case ilp.CodeInsufficientLiquidity:
		ok = account == "kids" && r.TriggeredBy == "test.c" && r.Message == msgMaxBalanceForTest
	}
	bad := ""
	if !ok {
		bad = fmt.Sprintf("%s → %s (%d): %s by %s %q", account, dest, amount, r.Code, r.TriggeredBy, r.Message)
	}
	l.outcome(string(r.Code), bad)
}

// msgMaxBalanceForTest is the balance middleware's T04 message for a raised maximum.
const msgMaxBalanceForTest = "exceeded maximum balance."

// sendAll sends stressPackets packets from one sender, each distinct (no dedupe cache answers
// it), and records every answer. It keeps pace with the config changes (applied counts them),
// so that traffic flows through all of them: packet i waits (bounded) for apply i/perApply.
func (l *stressLedger) sendAll(ctx context.Context, cl *btp.Client, account string, seed int, applied *atomic.Int64) {
	const perApply = stressPackets/stressApplies + 1
	for i := range stressPackets {
		poll(2000, func() bool { return int64(i) < (applied.Load()+1)*perApply || ctx.Err() != nil })
		if ctx.Err() != nil {
			l.outcome("deadline", fmt.Sprintf("%s: test deadline before packet %d", account, i))
			return
		}
		l.sendOne(ctx, cl, account, stressDestinations[(i+seed)%len(stressDestinations)], uint64(1+(i*7+seed*13)%100), seed, i)
	}
}

// sendOne sends packet i of sender seed and records its answer; it reports whether it was
// fulfilled.
func (l *stressLedger) sendOne(ctx context.Context, cl *btp.Client, account, dest string, amount uint64, seed, i int) bool {
	p := prepare(dest, amount, time.Now(), 30*time.Second)
	p.Data = []byte(fmt.Sprintf("%s-%d-%d", account, seed, i))
	f, err := cl.Send(ctx, p)
	l.check(account, dest, amount, f, err)
	l.answered.Add(1)
	return err == nil
}

func TestReloadStress(t *testing.T) {
	tests := []struct {
		name  string
		store func(t *testing.T) (lines string, reopen func() store.Store)
	}{
		{"memory", func(*testing.T) (string, func() store.Store) { return "store: memory", nil }},
		{"file", func(t *testing.T) (string, func() store.Store) {
			dir := t.TempDir()
			return "store: file\nstorePath: " + dir, func() store.Store {
				st, err := store.OpenFile(dir)
				if err != nil {
					t.Fatalf("reopening the file store: %v", err)
				}
				return st
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, reopen := tt.store(t)
			runReloadStress(t, lines, reopen)
		})
	}
}

func runReloadStress(t *testing.T, storeLines string, reopen func() store.Store) {
	baseGoroutines := runtime.NumGoroutine()
	taken, err := net.Listen("tcp", "127.0.0.1:0") // the port a refused account cannot listen on
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	pt := stressPorts{freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)}
	params := stressInitial()
	c := start(t, stressDoc(storeLines, pt, params), Options{})
	traffic := map[string]*account{}
	for _, id := range strings.Fields(stressTraffic) {
		traffic[id] = (*c.accounts.Load())[id]
	}

	l := &stressLedger{fulfilled: map[string]int64{}, codes: map[string]int{}}
	clients := connectStressPeers(t, c, pt, l)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	learnFromR2(t, ctx, c, clients["r2"])
	var senders sync.WaitGroup
	var sending, applied atomic.Int64
	flapping := make(chan struct{})
	senders.Go(func() { flapRoutes(t, ctx, clients["r2"], flapping) })
	for i, s := range stressSenders {
		sending.Add(1)
		senders.Go(func() {
			defer sending.Add(-1)
			l.sendAll(ctx, clients[s.client], s.account, i, &applied)
		})
	}
	applyStressSequence(t, ctx, c, storeLines, pt, &params, l, &sending, &applied, taken.Addr().(*net.TCPAddr).Port)
	close(flapping)
	senders.Wait()
	checkFinalConfig(t, ctx, c, l, clients)

	checkStressOutcome(t, c, l, traffic)
	for _, cl := range clients {
		_ = cl.Close()
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := c.Close(cctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if reopen != nil {
		checkStoredBalances(t, reopen(), l)
	}
	checkGoroutines(t, baseGoroutines)
}

// connectStressPeers connects the test's peers: the senders' clients (by name) and the
// receivers, and waits until the connector sees every traffic link up.
func connectStressPeers(t *testing.T, c *Connector, pt stressPorts, l *stressLedger) map[string]*btp.Client {
	t.Helper()
	refuse := func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.sender", "senders take no payments")
	}
	clients := map[string]*btp.Client{
		"s1": child(t, pt.s1, "s1", refuse),
		"s2": child(t, pt.s2, "s2", refuse),
		"k1": child(t, pt.kids, "k1", refuse),
		"k2": child(t, pt.kids, "k2", refuse),
		"k3": child(t, pt.kids, "k3", refuse),
		"r1": child(t, pt.r1, "r1", l.receiver("r1")),
		"r2": child(t, pt.r2, "r2", l.receiver("r2")),
		"rj": child(t, pt.rj, "rj", l.receiver("rj")),
	}
	waitFor(t, func() bool {
		for _, id := range strings.Fields(stressTraffic) {
			if !c.Connected(id) {
				return false
			}
		}
		return true
	})
	return clients
}

// applyStressSequence applies stressApplies configs, cycling through stressSteps, each after
// some traffic went through (bounded wait), and checks that refused ones change nothing.
func applyStressSequence(t *testing.T, ctx context.Context, c *Connector, storeLines string, pt stressPorts,
	params *stressParams, l *stressLedger, sending, applied *atomic.Int64, takenPort int) {
	t.Helper()
	defer applied.Store(stressApplies + 1) // the senders send the rest, even after a failure
	steps := stressSteps(takenPort)
	if stressApplies%len(steps) != 0 {
		t.Fatalf("stressApplies %d is not whole cycles of the %d steps: checkFinalConfig expects the initial state", stressApplies, len(steps))
	}
	during := 0
	defer func() { t.Logf("%d of %d applies while packets flowed", during, stressApplies) }()
	for i := range stressApplies {
		applied.Store(int64(i)) // the senders' budget grows: see sendAll
		waitTraffic(l, sending, 10)
		if sending.Load() > 0 {
			during++
		}
		st := steps[i%len(steps)]
		running := c.Config()
		if st.refuse != nil {
			if err := c.Apply(ctx, st.refuse(t, stressDoc(storeLines, pt, *params))); err == nil {
				t.Errorf("apply %d (%s): accepted", i, st.name)
			}
			if c.Config() != running {
				t.Errorf("apply %d (%s): refused, but the running config changed", i, st.name)
			}
			continue
		}
		next := *params
		st.change(&next)
		cfg := mustConfig(t, stressDoc(storeLines, pt, next))
		if err := c.Apply(ctx, cfg); err != nil {
			t.Fatalf("apply %d (%s): %v", i, st.name, err)
		}
		*params = next
		if c.Config() != cfg && c.Config() != running { // an identical config keeps the running one
			t.Errorf("apply %d (%s): another config in force", i, st.name)
		}
	}
}

// r2Update is a route update from r2's peer for epochs [from, to).
func r2Update(from, to uint32, add, withdraw []string) *ilp.Prepare {
	u := &ccp.UpdateRequest{RoutingTableID: ccp.TableID{7}, CurrentEpochIndex: to, FromEpochIndex: from, ToEpochIndex: to,
		HoldDownTime: 45000, Speaker: "test.r2peer", WithdrawnRoutes: withdraw}
	for _, p := range add {
		u.NewRoutes = append(u.NewRoutes, ccp.Route{Prefix: p, Path: []string{"test.r2peer"}})
	}
	return ccp.UpdatePrepare(u, time.Now().Add(ccp.RequestExpiry))
}

// learnFromR2 has r2's peer announce test.far (epoch 1), which the senders then pay through.
func learnFromR2(t *testing.T, ctx context.Context, c *Connector, r2 *btp.Client) {
	t.Helper()
	if _, err := r2.Send(ctx, r2Update(0, 1, []string{"test.far"}, nil)); err != nil {
		t.Fatalf("route update from r2: %v", err)
	}
	if r, ok := c.table.Load().Lookup("test.far.x"); !ok || r.NextHop != "r2" {
		t.Fatalf("test.far not learned from r2: %v %v", r, ok)
	}
}

// flapRoutes has r2's peer announce and withdraw test.flap (no traffic) in turn until done
// (at most 400 updates): the connector's CCP Speaker rebuilds its table while the config
// changes. Every update must be accepted.
func flapRoutes(t *testing.T, ctx context.Context, r2 *btp.Client, done <-chan struct{}) {
	for epoch := uint32(1); epoch < 400; epoch++ {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
		add, withdraw := []string{"test.flap"}, []string(nil)
		if epoch%2 == 0 {
			add, withdraw = nil, add
		}
		if _, err := r2.Send(ctx, r2Update(epoch, epoch+1, add, withdraw)); err != nil {
			t.Errorf("route update %d from r2: %v", epoch, err)
			return
		}
	}
}

// checkFinalConfig: once the sequence is over (whole cycles: back to wide limits, no extra
// account or route), what is in force is the last config, not a stale piece of an earlier one:
// a packet above the lowest maxPacketAmount is fulfilled from every sender, kids included
// (its maximum is high again), and the extra accounts and routes are gone.
func checkFinalConfig(t *testing.T, ctx context.Context, c *Connector, l *stressLedger, clients map[string]*btp.Client) {
	t.Helper()
	for i, s := range stressSenders {
		if !l.sendOne(ctx, clients[s.client], s.account, "test.r1.sub.x", stressMinPacket+40, i, stressPackets) {
			t.Errorf("after the sequence, %s's packet of %d was not fulfilled", s.client, stressMinPacket+40)
		}
	}
	var ids []string
	for _, a := range c.Accounts() {
		ids = append(ids, a.ID)
	}
	if r, ok := c.table.Load().Lookup("test.far.x"); !ok || r.NextHop != "r2" {
		t.Errorf("the route learned from r2 is gone after the sequence: %v %v", r, ok)
	}
	if got, want := strings.Join(ids, " "), strings.Join(slices.Sorted(slices.Values(strings.Fields(stressTraffic))), " "); got != want {
		t.Errorf("accounts after the sequence: %s, want %s", got, want)
	}
	for _, r := range c.Routes() {
		if strings.HasPrefix(r.Prefix, "test.x1") || strings.HasSuffix(r.Prefix, ".sub") {
			t.Errorf("route %s → %s still in force after its removal", r.Prefix, r.NextHop)
		}
	}
}

// waitTraffic waits (bounded) until n more packets were answered, or no sender is left.
func waitTraffic(l *stressLedger, sending *atomic.Int64, n int64) {
	from := l.answered.Load()
	poll(2000, func() bool { return sending.Load() == 0 || l.answered.Load() >= from+n })
}

// checkStressOutcome: every answer allowed, no drift between what the peers saw and the
// store, no reservation left, and the traffic accounts are the objects they were at start.
func checkStressOutcome(t *testing.T, c *Connector, l *stressLedger, traffic map[string]*account) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if total := l.answered.Load(); total != int64(len(stressSenders)*(stressPackets+1)) {
		t.Errorf("%d packets answered, want %d", total, len(stressSenders)*(stressPackets+1))
	}
	if len(l.unexpected) > 0 {
		t.Errorf("outcomes %v; unexplained answers:\n%s", l.codes, strings.Join(l.unexpected, "\n"))
	}
	t.Logf("outcomes: %v", l.codes)
	if l.codes["fulfill"] == 0 {
		t.Errorf("no packet fulfilled: %v", l.codes)
	}
	ctx := context.Background()
	for id, a := range traffic {
		if got := (*c.accounts.Load())[id]; got != a {
			t.Errorf("account %s was replaced (a reconnect or restart) during the reloads", id)
		}
		b, err := c.store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if b.Balance != l.fulfilled[id] || b.Pending != 0 {
			t.Errorf("account %s: store balance %d pending %d; the peers saw %d fulfilled", id, b.Balance, b.Pending, l.fulfilled[id])
		}
	}
}

// checkStoredBalances reads the balances back from the reopened persistent store.
func checkStoredBalances(t *testing.T, st store.Store, l *stressLedger) {
	t.Helper()
	defer st.Close()
	for _, id := range strings.Fields(stressTraffic) {
		b, err := st.Get(context.Background(), id)
		if err != nil || b.Balance != l.fulfilled[id] || b.Pending != 0 {
			t.Errorf("reopened store: account %s balance %d pending %d (%v); want %d", id, b.Balance, b.Pending, err, l.fulfilled[id])
		}
	}
}

// checkGoroutines polls (bounded) until the goroutines are back to about the start count.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	const slack = 2 // observed: back to the start count, or one above while the last conns unwind
	n := 0
	if poll(1000, func() bool { n = runtime.NumGoroutine(); return n <= base+slack }) {
		return
	}
	buf := make([]byte, 1<<20)
	t.Errorf("%d goroutines after Close, %d at start:\n%s", n, base, buf[:runtime.Stack(buf, true)])
}

// poll polls cond every testwait.Interval, at most tries times, and reports whether it held.
// Unlike testwait.Eventually it does not fail the test: the callers go on either way (or run
// outside the test's goroutine).
func poll(tries int, cond func() bool) bool {
	for range tries {
		if cond() {
			return true
		}
		time.Sleep(testwait.Interval)
	}
	return false
}
