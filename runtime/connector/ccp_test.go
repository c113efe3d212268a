package connector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ccp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// fleet is a set of in-process connectors named n, with address test.<n>, a mini-accounts
// child server "kids" each, and BTP peer links for the edges: for an edge {x, y} (x < y), x
// dials y; the account of y on x is "y" and the account of x on y is "x".
type fleet struct {
	names []string
	conns map[string]*Connector
	kids  map[string]int // kids port by node
	edges map[[2]string]int
}

// ccpTiming makes CCP quick enough for tests (the JS defaults are 30 s and 1 s).
const ccpTiming = `
routeBroadcastInterval: 1000
routeCleanupInterval: 50
routeExpiry: 3000
`

func fleetConfig(name string, kidsPort int, edges map[[2]string]int, timing string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ilpAddress: test.%s\nbackend: one-to-one\nspread: 0\nminMessageWindow: 100\ninitialConnectTimeout: 5000\n%s\naccounts:\n", name, timing)
	fmt.Fprintf(&b, "  kids:\n    relation: child\n    plugin: ilp-plugin-mini-accounts\n    assetCode: USD\n    assetScale: 2\n    options: {wsOpts: {host: 127.0.0.1, port: %d}}\n", kidsPort)
	keys := slices.SortedFunc(maps.Keys(edges), func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) })
	for _, e := range keys {
		port := edges[e]
		var peer, opts string
		switch name {
		case e[0]:
			peer, opts = e[1], fmt.Sprintf(`{server: "btp+ws://%s:secret@127.0.0.1:%d"}`, e[0], port)
		case e[1]:
			peer, opts = e[0], fmt.Sprintf("{listener: {host: 127.0.0.1, port: %d, secret: secret}}", port)
		default:
			continue
		}
		fmt.Fprintf(&b, "  %s:\n    relation: peer\n    plugin: ilp-plugin-btp\n    assetCode: USD\n    assetScale: 2\n    options: %s\n", peer, opts)
	}
	return b.String()
}

func newFleet(t *testing.T, names []string, edges [][2]string, timing string) *fleet {
	t.Helper()
	f := &fleet{names: names, conns: map[string]*Connector{}, kids: map[string]int{}, edges: map[[2]string]int{}}
	for _, e := range edges {
		if e[0] > e[1] {
			e[0], e[1] = e[1], e[0]
		}
		f.edges[e] = freePort(t)
	}
	// Listeners first (a node listens for the edges to nodes before it in name order), so that
	// the dialing side's Start finds them; start in reverse name order.
	for i := len(names) - 1; i >= 0; i-- {
		n := names[i]
		f.kids[n] = freePort(t)
		f.conns[n] = startBTP(t, fleetConfig(n, f.kids[n], f.edges, timing), nil)
	}
	return f
}

// cut removes the edge {x, y} from x's config (y sees the link drop).
func (f *fleet) cut(t *testing.T, x, y string) {
	t.Helper()
	c := f.conns[x]
	cfg := *c.Config()
	cfg.Accounts = maps.Clone(cfg.Accounts)
	delete(cfg.Accounts, y)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Apply(ctx, &cfg); err != nil {
		t.Fatalf("removing %s from %s: %v", y, x, err)
	}
	k := [2]string{min(x, y), max(x, y)}
	delete(f.edges, k)
}

// distances are the hop counts between nodes over the fleet's edges (BFS); absent: unreachable.
func (f *fleet) distances() map[[2]string]int {
	adj := map[string][]string{}
	for e := range f.edges {
		adj[e[0]] = append(adj[e[0]], e[1])
		adj[e[1]] = append(adj[e[1]], e[0])
	}
	out := map[[2]string]int{}
	for _, src := range f.names {
		dist := map[string]int{src: 0}
		queue := []string{src}
		for len(queue) > 0 {
			n := queue[0]
			queue = queue[1:]
			for _, m := range adj[n] {
				if _, seen := dist[m]; !seen {
					dist[m] = dist[n] + 1
					queue = append(queue, m)
				}
			}
		}
		for dst, d := range dist {
			out[[2]string{src, dst}] = d
		}
	}
	return out
}

// converged reports whether every node routes every other node's prefix along a shortest
// path (and has no route to an unreachable one); otherwise, the first discrepancy.
func (f *fleet) converged() (bool, string) {
	dist := f.distances()
	for _, src := range f.names {
		t := f.conns[src].table.Load()
		for _, dst := range f.names {
			if src == dst {
				continue
			}
			d, reachable := dist[[2]string{src, dst}]
			r, ok := t.Lookup("test." + dst + ".kids.x")
			switch {
			case !reachable && ok && r.NextHop != "":
				return false, fmt.Sprintf("%s still routes test.%s via %s", src, dst, r.NextHop)
			case reachable && (!ok || len(r.Path) != d):
				var path []string
				if ok {
					path = r.Path
				}
				return false, fmt.Sprintf("%s: route to test.%s has path %v, want %d hops", src, dst, path, d)
			}
		}
	}
	return true, ""
}

// waitConverged polls converged every 5 ms up to timeout and returns the time it took.
func (f *fleet) waitConverged(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var why string
	for time.Since(start) < timeout {
		var ok bool
		if ok, why = f.converged(); ok {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("not converged after %v: %s", timeout, why)
	return 0
}

func TestCCPTwoConnectorsLearnRoutes(t *testing.T) {
	f := newFleet(t, []string{"a", "b"}, [][2]string{{"a", "b"}}, ccpTiming)
	f.waitConverged(t, 10*time.Second)
	ri := f.conns["a"].Routing()
	if ri.TableID == "" || ri.Epoch == 0 || ri.Peers["b"].Send == nil || ri.Peers["b"].Send.Mode != "SYNC" ||
		ri.Peers["b"].Receive == nil || ri.Peers["b"].Receive.RoutingTableID != f.conns["b"].Routing().TableID {
		t.Errorf("a's /routing: %+v", ri)
	}
	if _, ok := ri.Peers["kids"]; ok {
		t.Error("a child account shows CCP state; children neither send nor receive routes by default")
	}
	var prefixes []string
	for _, u := range ri.Forwarding {
		prefixes = append(prefixes, u.Prefix)
	}
	if !slices.Equal(prefixes, []string{"test.a", "test.b"}) {
		t.Errorf("a advertises %v, want test.a and test.b (its children are covered by test.a)", prefixes)
	}
}

// TestCCPTriangle: a, b, c peered in a triangle. Each takes the direct link; when a–c goes
// down, a and c reroute through b; packets sent meanwhile are fulfilled or cleanly rejected,
// never looped.
func TestCCPTriangle(t *testing.T) {
	f := newFleet(t, []string{"a", "b", "c"}, [][2]string{{"a", "b"}, {"b", "c"}, {"a", "c"}}, ccpTiming)
	f.waitConverged(t, 10*time.Second)
	if r, _ := f.conns["a"].table.Load().Lookup("test.c.kids.bob"); r.NextHop != "c" || !slices.Equal(r.Path, []string{"test.c"}) {
		t.Fatalf("a's route to test.c: %+v, want the direct link", r)
	}

	bob := &fulfiller{}
	child(t, f.kids["c"], "bob", bob.handle)
	alice := child(t, f.kids["a"], "alice", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.a.kids.alice", "alice takes no payments")
	})
	waitFor(t, func() bool { return f.conns["c"].Connected("kids") && f.conns["a"].Connected("kids") })

	outcomes := map[string]int{}
	var mu sync.Mutex
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range 100000 {
			select {
			case <-stop:
				return
			default:
			}
			p := prepare("test.c.kids.bob", 1, time.Now(), 5*time.Second)
			p.Data = []byte(itoa(i))
			_, err := alice.Send(ctx, p)
			key := "fulfilled"
			if err != nil {
				var r *ilp.Reject
				if errors.As(err, &r) {
					key = string(r.Code) + " by " + string(r.TriggeredBy)
				} else {
					key = "error: " + err.Error()
				}
			}
			mu.Lock()
			outcomes[key]++
			mu.Unlock()
			sent.Add(1)
		}
	})
	waitFor(t, func() bool { return sent.Load() >= 50 })
	f.cut(t, "a", "c")
	d := f.waitConverged(t, 10*time.Second)
	t.Logf("triangle converged %v after the a–c link was removed", d)
	after := sent.Load()
	waitFor(t, func() bool { return sent.Load() >= after+50 })
	close(stop)
	wg.Wait()

	r, _ := f.conns["a"].table.Load().Lookup("test.c.kids.bob")
	if r.NextHop != "b" || !slices.Equal(r.Path, []string{"test.b", "test.c"}) {
		t.Errorf("a's route to test.c after the cut: %+v, want via b (path test.b test.c)", r)
	}
	t.Logf("outcomes of %d packets: %v", sent.Load(), outcomes)
	for k, n := range outcomes {
		switch {
		case k == "fulfilled":
		case strings.HasPrefix(k, string(ilp.CodeUnreachable)), strings.HasPrefix(k, string(ilp.CodePeerUnreachable)):
			// A clean reject while the route changes.
		default:
			t.Errorf("%d packets ended with %s: want only fulfills and clean F02/T01 rejects (R00/R02 would mean a loop)", n, k)
		}
	}
	if outcomes["fulfilled"] == 0 || int64(bob.n.Load()) != int64(outcomes["fulfilled"]) {
		t.Errorf("bob got %d packets, the sender saw %d fulfilled: each packet must arrive at most once", bob.n.Load(), outcomes["fulfilled"])
	}
	// The last packets went the new way.
	if _, err := alice.Send(context.Background(), prepare("test.c.kids.bob", 1, time.Now(), 5*time.Second)); err != nil {
		t.Errorf("payment via b after convergence: %v", err)
	}
}

// TestCCPWithdrawalPropagates: in a line a – b – c, when c goes away b withdraws test.c and a
// loses it too.
func TestCCPWithdrawalPropagates(t *testing.T) {
	f := newFleet(t, []string{"a", "b", "c"}, [][2]string{{"a", "b"}, {"b", "c"}}, ccpTiming)
	f.waitConverged(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.conns["c"].Close(ctx); err != nil {
		t.Fatal(err)
	}
	gone := func() bool {
		_, a := f.conns["a"].table.Load().Lookup("test.c.x")
		_, b := f.conns["b"].table.Load().Lookup("test.c.x")
		return !a && !b
	}
	deadline := time.Now().Add(10 * time.Second)
	for !gone() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !gone() {
		t.Errorf("test.c is still routed after c disconnected from b: a %v, b %v", f.conns["a"].Routes(), f.conns["b"].Routes())
	}
	if _, ok := f.conns["a"].table.Load().Lookup("test.b.x"); !ok {
		t.Error("a lost its route to test.b as well")
	}
}

// TestCCPConvergence measures (and prints) how long a line of 10 and a full mesh of 10
// connectors take to converge after a link is removed, with the JS default timing
// (broadcast 30 s, cleanup 1 s). It asserts convergence, not speed. docs/benchmarks.md
// records its output.
func TestCCPConvergence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 20 connectors; run without -short to measure CCP convergence")
	}
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i)
	}
	topologies := []struct {
		name  string
		edges func() [][2]string
		cut   [2]string
	}{
		{"line of 10, middle link n4–n5 removed", func() (e [][2]string) {
			for i := 0; i+1 < len(names); i++ {
				e = append(e, [2]string{names[i], names[i+1]})
			}
			return e
		}, [2]string{"n4", "n5"}},
		{"full mesh of 10, link n0–n1 removed", func() (e [][2]string) {
			for i := range names {
				for j := i + 1; j < len(names); j++ {
					e = append(e, [2]string{names[i], names[j]})
				}
			}
			return e
		}, [2]string{"n0", "n1"}},
	}
	for _, top := range topologies {
		t.Run(top.name, func(t *testing.T) {
			start := time.Now()
			f := newFleet(t, names, top.edges(), "")
			boot := time.Since(start)
			initial := f.waitConverged(t, 60*time.Second)
			f.cut(t, top.cut[0], top.cut[1])
			d := f.waitConverged(t, 60*time.Second)
			t.Logf("CONVERGENCE %s: initial %v after start (%v to start), %v after the link change",
				top.name, initial.Round(time.Millisecond), boot.Round(time.Millisecond), d.Round(time.Millisecond))
		})
	}
}

// peersDoc is a connector with one peer; peerAccount adds another.
const peersDoc = `
ilpAddress: test.us
backend: one-to-one
accounts:
  first: {relation: peer, plugin: ilp-plugin-btp, assetCode: USD, assetScale: 2}
`

func peerAccount(id string) string {
	return "  " + id + ": {relation: peer, plugin: ilp-plugin-btp, assetCode: USD, assetScale: 2}\n"
}

// askAtOnce is a memLink onStart that plays a peer asking for routes as soon as the link is up;
// the answer goes to *answer (set to an error until then).
func askAtOnce(answer *error) func(ilp.Handler) {
	*answer = errors.New("no route control was sent")
	return func(h ilp.Handler) {
		req := &ccp.ControlRequest{Mode: ccp.ModeSync}
		_, *answer = h(context.Background(), ccp.ControlPrepare(req, time.Now().Add(ccp.RequestExpiry)))
	}
}

// TestCCPControlAsSoonAsLinked: a peer that asks for routes the moment its link is up, at Start
// or when Apply adds it, is answered and gets updates. (The JS ccp-receiver asks again only
// 30 s after a reject.)
func TestCCPControlAsSoonAsLinked(t *testing.T) {
	var first, added error
	ml := &memLinks{onStart: map[string]func(ilp.Handler){"first": askAtOnce(&first), "added": askAtOnce(&added)}}
	c := start(t, peersDoc, Options{newLink: ml.factory})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Apply(ctx, mustConfig(t, peersDoc+peerAccount("added"))); err != nil {
		t.Fatal(err)
	}
	for id, answer := range map[string]error{"first": first, "added": added} {
		if answer != nil {
			t.Errorf("route control from %s, sent as its link came up: %v", id, answer)
		}
		if s := c.Routing().Peers[id].Send; s == nil || s.Mode != "SYNC" {
			t.Errorf("send state for %s: %+v, want SYNC", id, s)
		}
	}
}

// TestCCPRefusedApplyForgetsPeer: an account whose link came up and asked for routes, in an
// Apply refused because another new account could not start, leaves no CCP state behind.
func TestCCPRefusedApplyForgetsPeer(t *testing.T) {
	var answer error
	ml := &memLinks{broken: map[string]bool{"carol": true}, onStart: map[string]func(ilp.Handler){"dave": askAtOnce(&answer)}}
	c := start(t, peersDoc, Options{newLink: ml.factory})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Apply(ctx, mustConfig(t, peersDoc+peerAccount("dave")+peerAccount("carol"))); err == nil {
		t.Fatal("Apply with an account whose link cannot start succeeded")
	}
	if answer != nil {
		t.Fatalf("dave's link did not start and get an answer to its route control: %v", answer)
	}
	if _, ok := c.Routing().Peers["dave"]; ok {
		t.Error("the refused account dave still has CCP state")
	}
}

// peerUpdate is a route update from the peer "first" for epochs [from, to) with one new route.
func peerUpdate(from, to uint32, prefix string) *ilp.Prepare {
	u := &ccp.UpdateRequest{RoutingTableID: ccp.TableID{9}, CurrentEpochIndex: to, FromEpochIndex: from, ToEpochIndex: to,
		HoldDownTime: 45000, Speaker: "test.first",
		NewRoutes: []ccp.Route{{Prefix: prefix, Path: []string{"test.first"}}}}
	return ccp.UpdatePrepare(u, time.Now().Add(ccp.RequestExpiry))
}

// TestCCPDisabledDropsLearnedRoutes: a route update handled while an Apply turns route
// broadcasting off (handleCCP took the Speaker just before) must not put learned routes back
// into the table after the Speaker is stopped: nothing would ever remove or expire them.
func TestCCPDisabledDropsLearnedRoutes(t *testing.T) {
	ml := &memLinks{}
	ml.setRemote("first", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return ccp.Fulfill(), nil })
	c := start(t, peersDoc, Options{newLink: ml.factory})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ml.get("first").inject(ctx, peerUpdate(0, 1, "test.far")); err != nil {
		t.Fatal(err)
	}
	if r, ok := c.table.Load().Lookup("test.far.x"); !ok || r.NextHop != "first" {
		t.Fatalf("setup: test.far not learned: %v %v", r, ok)
	}
	sp := c.speaker() // what handleCCP holds while the Apply below runs
	if err := c.Apply(ctx, mustConfig(t, peersDoc+"routeBroadcastEnabled: false\n")); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.table.Load().Lookup("test.far.x"); ok {
		t.Fatalf("setup: learned route kept right after CCP was disabled")
	}
	if _, err := sp.Handle(ctx, "first", peerUpdate(1, 2, "test.far2")); err == nil {
		t.Errorf("the stopped Speaker fulfilled a route update")
	}
	for _, d := range []string{"test.far.x", "test.far2.x"} {
		if r, ok := c.table.Load().Lookup(d); ok {
			t.Errorf("CCP is disabled, but %s routes to %q through a route learned by the stopped Speaker", d, r.NextHop)
		}
	}
}
