package ccp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// tapHost is node a's host in the churn tests: requests to a muted account fail (a peer that
// stopped answering, its link still up), and the updates delivered are tallied per account.
type tapHost struct {
	*node
	mu         sync.Mutex
	muted      map[string]bool
	record     bool                      // keep withdrawn, below
	withdrawn  map[string]map[string]int // account → prefix → how many updates withdrew it
	fromZero   map[string]int            // account → updates delivered from epoch 0
	deliveries map[string]int            // account → updates delivered
}

func (h *tapHost) SendPeer(ctx context.Context, id string, p *ilp.Prepare) (*ilp.Fulfill, error) {
	h.mu.Lock()
	muted := h.muted[id]
	h.mu.Unlock()
	if muted {
		return nil, errors.New("peer silent")
	}
	f, err := h.node.SendPeer(ctx, id, p)
	if err != nil || p.Destination != UpdateDestination {
		return f, err
	}
	u, perr := ParseUpdateRequest(p.Data)
	if perr != nil {
		return nil, perr
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deliveries[id]++
	if u.FromEpochIndex == 0 {
		h.fromZero[id]++
	}
	if h.record {
		if h.withdrawn[id] == nil {
			h.withdrawn[id] = map[string]int{}
		}
		for _, w := range u.WithdrawnRoutes {
			h.withdrawn[id][w]++
		}
	}
	return f, nil
}

func (h *tapHost) mute(id string, on bool) {
	h.mu.Lock()
	h.muted[id] = on
	h.mu.Unlock()
}

// churnNet is a network around speaker a: peers b and c take a's routes, and x is a fake
// peer played by hand, whose updates announce and withdraw prefixes through a.
type churnNet struct {
	t      *testing.T
	n      *net
	a      *node
	tap    *tapHost
	xEpoch uint32
	peak   [2]int // the most forwarding and log entries a held after an update of x
}

func newChurnNet(t *testing.T) *churnNet {
	t.Helper()
	n := newNet(t, map[string]map[string]config.Relation{
		"a": {"b": peerR, "c": peerR, "x": peerR}, "b": {"a": peerR}, "c": {"a": peerR}, "x": {"a": peerR}})
	// x's own speaker sends nothing: its updates are played by hand.
	n.muteSpeaker("x", "a")
	// A long hold-down, so that the routes a muted peer holds do not expire during the test.
	a := n.node("a")
	acfg := *a.cfg
	acfg.RouteExpiry = time.Hour
	a.setConfig(&acfg)
	tap := &tapHost{node: a, muted: map[string]bool{}, withdrawn: map[string]map[string]int{},
		fromZero: map[string]int{}, deliveries: map[string]int{}}
	id := TableID{0xa, 0xa}
	a.sp = New(tap, Options{Clock: n.clock, TableID: &id})
	c := &churnNet{t: t, n: n, a: a, tap: tap}
	c.sync()
	return c
}

// xUpdate hands a one update of x that announces and withdraws the given prefixes.
func (c *churnNet) xUpdate(announce, withdraw []string) {
	c.t.Helper()
	u := &UpdateRequest{RoutingTableID: TableID{0xf}, CurrentEpochIndex: c.xEpoch + 1, FromEpochIndex: c.xEpoch,
		ToEpochIndex: c.xEpoch + 1, HoldDownTime: uint32(time.Hour.Milliseconds()), Speaker: "test.x",
		WithdrawnRoutes: withdraw}
	for _, p := range announce {
		u.NewRoutes = append(u.NewRoutes, Route{Prefix: p, Path: []string{"test.x"}})
	}
	if _, err := c.a.sp.Handle(context.Background(), "x", UpdatePrepare(u, c.n.clock.Now().Add(time.Minute))); err != nil {
		c.t.Fatal(err)
	}
	c.xEpoch++
	fwd, log := c.counts()
	c.peak = [2]int{max(c.peak[0], fwd), max(c.peak[1], log)}
}

// batches hands a the prefixes in updates of 50.
func (c *churnNet) batches(prefixes []string, withdraw bool) {
	for chunk := range slices.Chunk(prefixes, 50) {
		if withdraw {
			c.xUpdate(nil, chunk)
		} else {
			c.xUpdate(chunk, nil)
		}
	}
}

// sync ticks until a's every unmuted peer has acknowledged a's current epoch.
func (c *churnNet) sync() {
	c.t.Helper()
	for range 2000 {
		c.n.step(200 * time.Millisecond)
		if c.synced() {
			return
		}
	}
	c.t.Fatalf("a's peers did not catch up with a")
}

func (c *churnNet) synced() bool {
	sp := c.a.sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for id, p := range sp.peers {
		if p.send == nil || c.tap.muted[id] {
			continue
		}
		if p.send.inFlight || p.send.lastKnownEpoch != sp.epoch {
			return false
		}
	}
	return true
}

// counts is the size of a's forwarding table and log.
func (c *churnNet) counts() (fwd, log int) {
	sp := c.a.sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return len(sp.fwd), len(sp.log_)
}

// churn announces and withdraws rounds×1000 new prefixes through x, in rounds of 1000,
// letting a's unmuted peers catch up after each half round; it checks a's entry counts
// after each round against bound (0: no check).
func (c *churnNet) churn(rounds, bound int) {
	c.t.Helper()
	for r := range rounds {
		batch := make([]string, 1000)
		for i := range batch {
			batch[i] = fmt.Sprintf("test.churn%d.p%04d", r, i)
		}
		c.batches(batch, false)
		c.sync()
		c.batches(batch, true)
		c.sync()
		c.n.mu.Lock()
		c.n.sent = nil // the harness's log of requests, which would grow the heap measured
		c.n.mu.Unlock()
		if fwd, log := c.counts(); bound > 0 && (fwd > bound || log > 2*fwd+128) {
			c.t.Fatalf("after %d churned prefixes: %d forwarding entries (bound %d), %d log entries (bound %d)",
				(r+1)*1000, fwd, bound, log, 2*fwd+128)
		}
	}
}

// learnedVia is the prefixes node h learned from account via.
func learnedVia(h *node, via string) []string {
	var out []string
	for _, r := range h.sp.Learned() {
		if r.NextHop == via {
			out = append(out, r.Prefix)
		}
	}
	slices.Sort(out)
	return out
}

func prefixes(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// A peer announcing and withdrawing ever-new prefixes does not grow a's memory without bound:
// withdrawals its peers have acknowledged are dropped, and those kept for a peer that lags
// (c, muted throughout) are capped.
func TestChurnBoundsForwardingTable(t *testing.T) {
	rounds := churnRounds
	if testing.Short() {
		rounds = 10
	}
	c := newChurnNet(t)
	stay := prefixes("test.stay.p%03d", 100)
	c.batches(stay, false)
	c.sync()
	c.tap.mute("c", true)
	fwd0, log0 := c.counts()
	heap0 := heapInuse()
	c.peak = [2]int{}
	live := fwd0
	c.churn(rounds, live+max(1000, live))
	fwd1, log1 := c.counts()
	heap1 := heapInuse()
	t.Logf("%d churned prefixes: forwarding entries %d → %d (peak %d), log entries %d → %d (peak %d), HeapInuse after GC %d KiB → %d KiB",
		rounds*1000, fwd0, fwd1, c.peak[0], log0, log1, c.peak[1], heap0>>10, heap1>>10)
	if got := learnedVia(c.n.node("b"), "a"); !slices.Equal(got, slices.Sorted(slices.Values(append(stay, "test.a", "test.c")))) {
		t.Errorf("b learned %d routes from a after the churn, want test.a, test.c and the 100 stay prefixes", len(got))
	}
}

// churnRounds is the rounds of 1000 prefixes TestChurnBoundsForwardingTable churns: 100 (the
// 100k of the figures in its log line), fewer under the race detector (race_test.go), where
// each of the 4000 route updates rebuilds the routing table ten times slower.
var churnRounds = 100

// lastKnownEpoch is the lastKnownEpoch of a's send state for account id: the epoch its next
// update to id starts from.
func (c *churnNet) lastKnownEpoch(id string) uint32 {
	c.a.sp.mu.Lock()
	defer c.a.sp.mu.Unlock()
	return c.a.sp.peers[id].send.lastKnownEpoch
}

func (c *churnNet) floor() uint32 {
	c.a.sp.mu.Lock()
	defer c.a.sp.mu.Unlock()
	return c.a.sp.floor
}

// A peer in sync gets every withdrawal exactly once, incrementally, while withdrawals are
// dropped and capped for a lagging one.
func TestChurnInSyncPeerGetsEveryWithdrawal(t *testing.T) {
	c := newChurnNet(t)
	stay := prefixes("test.stay.p%03d", 100)
	c.batches(stay, false)
	c.sync()
	c.tap.mute("c", true)
	c.tap.mu.Lock()
	c.tap.record, c.tap.fromZero = true, map[string]int{}
	c.tap.mu.Unlock()
	const rounds = 4
	c.churn(rounds, 0)
	if c.floor() == 0 {
		t.Fatalf("no withdrawal was dropped: the test does not test it")
	}
	c.tap.mu.Lock()
	defer c.tap.mu.Unlock()
	if n := c.tap.fromZero["b"]; n != 0 {
		t.Errorf("b, in sync, was sent the whole table %d times", n)
	}
	got := c.tap.withdrawn["b"]
	for r := range rounds {
		for i := range 1000 {
			if p := fmt.Sprintf("test.churn%d.p%04d", r, i); got[p] != 1 {
				t.Fatalf("b got the withdrawal of %s %d times, want once", p, got[p])
			}
		}
	}
	if len(got) != rounds*1000 {
		t.Errorf("b got %d withdrawals, want the %d churned prefixes", len(got), rounds*1000)
	}
}

// A peer that lags beyond the withdrawals kept is sent the whole live table from epoch 0 and
// gets every live route, whether it asks to resume (as JS does when its link comes back:
// same table ID, its epoch) or a's retries reach it; it keeps the routes withdrawn while it
// lagged (the documented cost, see dropWithdrawals).
func TestChurnLaggingPeerResyncsFromZero(t *testing.T) {
	for _, control := range []bool{true, false} {
		t.Run(fmt.Sprintf("control=%v", control), func(t *testing.T) { testLaggingPeer(t, control) })
	}
}

func testLaggingPeer(t *testing.T, control bool) {
	c := newChurnNet(t)
	stay := prefixes("test.stay.p%03d", 100)
	doomed := prefixes("test.doomed.p%03d", 100)
	c.batches(append(slices.Clone(stay), doomed...), false)
	c.sync()
	cn := c.n.node("c")
	if got := learnedVia(cn, "a"); len(got) != 202 {
		t.Fatalf("setup: c learned %d routes from a, want 202", len(got))
	}
	lagAt := c.lastKnownEpoch("c")
	c.tap.mute("c", true)
	c.batches(doomed, true)
	c.churn(3, 0)
	if f := c.floor(); f <= lagAt {
		t.Fatalf("floor %d, c lags at %d: no withdrawal c needs was dropped", f, lagAt)
	}
	late := prefixes("test.late.p%02d", 50)
	c.batches(late, false)

	c.tap.mute("c", false)
	if control {
		resume(t, c, lagAt)
	}
	c.tap.mu.Lock()
	c.tap.fromZero = map[string]int{}
	c.tap.mu.Unlock()
	c.sync()
	c.tap.mu.Lock()
	if c.tap.fromZero["c"] != 1 {
		t.Errorf("c was sent %d updates from epoch 0, want 1", c.tap.fromZero["c"])
	}
	c.tap.mu.Unlock()
	checkLaggingPeer(t, c, stay, doomed, late)
}

// resume has c ask a to resume where it stopped (lagAt), as a JS peer does when its link
// comes back; a must answer that it starts at 0.
func resume(t *testing.T, c *churnNet, lagAt uint32) {
	t.Helper()
	cn := c.n.node("c")
	cn.sp.mu.Lock()
	ctl := &ControlRequest{Mode: ModeSync, LastKnownRoutingTableID: cn.sp.peers["a"].recv.tableID, LastKnownEpoch: cn.sp.peers["a"].recv.epoch}
	cn.sp.mu.Unlock()
	if ctl.LastKnownRoutingTableID != c.a.sp.TableID() || ctl.LastKnownEpoch != lagAt {
		t.Fatalf("c holds a's table %s at %d, want %s at %d", ctl.LastKnownRoutingTableID, ctl.LastKnownEpoch, c.a.sp.TableID(), lagAt)
	}
	if _, err := c.a.sp.Handle(context.Background(), "c", ControlPrepare(ctl, c.n.clock.Now().Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if got := c.lastKnownEpoch("c"); got != 0 {
		t.Errorf("c resumes at %d, want 0 (below the floor %d)", got, c.floor())
	}
}

// checkLaggingPeer checks the routes of c, which lagged, and b, which did not.
func checkLaggingPeer(t *testing.T, c *churnNet, stay, doomed, late []string) {
	t.Helper()
	cn := c.n.node("c")
	live := append([]string{"test.a", "test.b"}, stay...)
	live = append(live, late...)
	// c keeps the doomed routes: their withdrawals were dropped while it lagged.
	want := slices.Sorted(slices.Values(append(slices.Clone(live), doomed...)))
	if got := learnedVia(cn, "a"); !slices.Equal(got, want) {
		t.Errorf("c learned %d routes from a, want %d: the live ones and the 100 withdrawn while it lagged", len(got), len(want))
	}
	for _, p := range append(stay, late...) {
		if hop, ok := cn.lookup(p + ".z"); !ok || hop != "a" {
			t.Fatalf("c routes %s via %q %v, want a", p, hop, ok)
		}
	}
	// b, in sync throughout, has exactly the live routes.
	wantB := slices.Sorted(slices.Values(append(append([]string{"test.a", "test.c"}, stay...), late...)))
	if got := learnedVia(c.n.node("b"), "a"); !slices.Equal(got, wantB) {
		t.Errorf("b learned %d routes from a, want %d", len(got), len(wantB))
	}
}

// A route control resumes at its epoch when no withdrawal after it was dropped, and from 0
// otherwise.
func TestControlBelowFloorResyncsFromZero(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR}, "b": {"a": peerR}})
	sp := n.node("a").sp
	sp.mu.Lock()
	route := &fwdRoute{nextHop: "x", relation: peerR, path: []string{"test.a", "test.s"}}
	sp.appendLog("test.s", route)
	sp.appendLog("test.s", nil) // b is at 0: nobody needs it, it is dropped
	wantFloor := sp.epoch
	sp.appendLog("test.t", route)
	epoch := sp.epoch
	sp.mu.Unlock()
	if sp.floor != wantFloor || sp.fwd["test.s"] != nil {
		t.Fatalf("floor %d, entry of test.s %+v; want %d and none", sp.floor, sp.fwd["test.s"], wantFloor)
	}
	for _, c := range []struct {
		name  string
		table TableID
		epoch uint32
		want  uint32
	}{
		{"below the floor", sp.TableID(), wantFloor - 1, 0},
		{"at the floor", sp.TableID(), wantFloor, wantFloor},
		{"current", sp.TableID(), epoch, epoch},
		{"other table", TableID{9}, epoch, 0},
	} {
		ctl := &ControlRequest{Mode: ModeSync, LastKnownRoutingTableID: c.table, LastKnownEpoch: c.epoch}
		if _, err := sp.Handle(context.Background(), "b", ControlPrepare(ctl, n.clock.Now().Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		if got := sp.Status().Peers["b"].Send.Epoch; got != c.want {
			t.Errorf("%s: control at %d resumes at %d, want %d", c.name, c.epoch, got, c.want)
		}
	}
}

// A withdrawal is kept while a peer that has not acknowledged it is within the cap, and
// dropped once every peer has acknowledged it.
func TestWithdrawalKeptUntilAcknowledged(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR, "c": peerR}, "b": {"a": peerR}, "c": {"a": peerR}})
	sp := n.node("a").sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	route := &fwdRoute{nextHop: "x", relation: peerR, path: []string{"test.a", "test.s"}}
	sp.appendLog("test.s", route)
	sp.peers["b"].send.lastKnownEpoch = sp.epoch // both acknowledged the route
	sp.peers["c"].send.lastKnownEpoch = sp.epoch
	sp.appendLog("test.s", nil)
	w := sp.fwd["test.s"]
	if w == nil || w.route != nil {
		t.Fatalf("the withdrawal of test.s was dropped before b and c acknowledged it")
	}
	sp.peers["b"].send.lastKnownEpoch = sp.epoch
	sp.dropWithdrawals()
	if sp.fwd["test.s"] == nil {
		t.Fatalf("the withdrawal of test.s was dropped before c acknowledged it")
	}
	u := sp.buildUpdate(sp.peers["c"], sp.peers["c"].send.lastKnownEpoch, 45000)
	if !slices.Equal(u.WithdrawnRoutes, []string{"test.s"}) || len(u.NewRoutes) != 0 {
		t.Errorf("c's next update: new %+v withdrawn %v, want test.s withdrawn", u.NewRoutes, u.WithdrawnRoutes)
	}
	// An update in flight does not count as acknowledged.
	sp.peers["c"].send.lastKnownEpoch, sp.peers["c"].send.inFlight, sp.peers["c"].send.inFlightFrom = sp.epoch, true, w.epoch
	sp.dropWithdrawals()
	if sp.fwd["test.s"] == nil {
		t.Fatalf("the withdrawal of test.s was dropped while the update to c carrying it was in flight")
	}
	// Nor does one from 0 (a full sync) make it need nothing: it needs what follows it.
	sp.peers["c"].send.inFlightFrom = 0
	sp.appendLog("test.u", route)
	sp.appendLog("test.u", nil)
	wu := sp.fwd["test.u"]
	sp.peers["c"].send.lastKnownEpoch = wu.epoch // c's full sync ends just before it
	sp.peers["b"].send.lastKnownEpoch = sp.epoch
	sp.dropWithdrawals()
	if sp.fwd["test.u"] == nil {
		t.Fatalf("the withdrawal of test.u was dropped while c's full sync in flight ends before it")
	}
	sp.peers["c"].send.inFlight = false
	sp.peers["c"].send.lastKnownEpoch = sp.epoch
	sp.dropWithdrawals()
	if sp.fwd["test.s"] != nil || sp.fwd["test.u"] != nil || sp.floor != wu.epoch+1 || !w.superseded || !wu.superseded {
		t.Errorf("after b and c acknowledged them: entries %+v %+v, floor %d (want %d), dropped from the log %v %v",
			sp.fwd["test.s"], sp.fwd["test.u"], sp.floor, wu.epoch+1, w.superseded, wu.superseded)
	}
	if sp.peers["b"].send.full || sp.peers["c"].send.full {
		t.Errorf("a peer that acknowledged the withdrawal is due for the whole table")
	}
}

// A peer due for the whole table is sent it soon, even when its send state is current (an
// update in flight when the withdrawals were dropped succeeded up to our epoch).
func TestFullResyncIsDueAtOnce(t *testing.T) {
	now := time.Unix(1000, 0)
	snd := &sender{mode: ModeSync, lastKnownEpoch: 7, lastSend: now, full: true}
	if at, _ := snd.due(now, 7, 30*time.Second); !at.Equal(now.Add(MinimumUpdateInterval)) {
		t.Errorf("due at %v, want %v", at, now.Add(MinimumUpdateInterval))
	}
}
