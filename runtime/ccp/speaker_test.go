package ccp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/routing"
)

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (n *net) node(name string) *node        { return n.nodes[name] }
func (h *node) Config() *config.Config       { h.mu.Lock(); defer h.mu.Unlock(); return h.cfg }
func (h *node) Address() ilp.Address         { return ilp.Address(h.addr) }
func (h *node) SetTable(t *routing.Table)    { h.table.Store(t) }
func (h *node) setConfig(cfg *config.Config) { h.mu.Lock(); h.cfg = cfg; h.mu.Unlock() }
func (h *node) lookup(dest string) (string, bool) {
	r, ok := h.table.Load().Lookup(dest)
	if !ok {
		return "", false
	}
	return r.NextHop, true
}

// net is an in-memory network of speakers: account "x" of node "y" is a link to node "x",
// whose account for it is "y".
type net struct {
	clock *fakeClock
	nodes map[string]*node
	down  map[[2]string]bool // links that are down, both directions
	mu    sync.Mutex
	sent  []string // "from→to dest" of every request, for assertions
}

type node struct {
	n     *net
	name  string
	addr  string
	mu    sync.Mutex
	cfg   *config.Config
	sp    *Speaker
	table atomic.Pointer[routing.Table]
}

func (h *node) Connected(id string) bool {
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	_, ok := h.n.nodes[id]
	return ok && !h.n.down[key(h.name, id)]
}

func key(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func (h *node) SendPeer(ctx context.Context, id string, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if !h.Connected(id) {
		return nil, link.ErrNotConnected
	}
	h.n.mu.Lock()
	h.n.sent = append(h.n.sent, fmt.Sprintf("%s→%s %s", h.name, id, p.Destination))
	other := h.n.nodes[id]
	h.n.mu.Unlock()
	return other.sp.Handle(ctx, h.name, p)
}

// newNet builds nodes with the given relations: rel[a][b] is the relation of account b on a.
func newNet(t *testing.T, rel map[string]map[string]config.Relation) *net {
	t.Helper()
	n := &net{clock: newClock(), nodes: map[string]*node{}, down: map[[2]string]bool{}}
	for name, accts := range rel {
		cfg := config.Defaults()
		cfg.ILPAddress = "test." + name
		cfg.RouteExpiry = 45 * time.Second
		cfg.Accounts = map[string]config.Account{}
		for id, r := range accts {
			cfg.Accounts[id] = config.Account{Relation: r, AssetCode: "USD", Plugin: "ilp-plugin-btp"}
		}
		n.nodes[name] = &node{n: n, name: name, addr: cfg.ILPAddress, cfg: cfg}
	}
	for _, h := range n.nodes {
		id := TableID{byte(len(h.name)), h.name[0]}
		h.sp = New(h, Options{Clock: n.clock, TableID: &id})
	}
	return n
}

// settle ticks every speaker, advancing the clock by step, until nothing is sent for a while
// (at most rounds rounds).
func (n *net) settle(t *testing.T, step time.Duration, rounds int) {
	t.Helper()
	quiet := 0
	for range rounds {
		n.mu.Lock()
		before := len(n.sent)
		n.mu.Unlock()
		n.step(step)
		n.mu.Lock()
		after := len(n.sent)
		n.mu.Unlock()
		if after == before {
			if quiet++; quiet > 3 {
				return
			}
		} else {
			quiet = 0
		}
	}
}

// step ticks every speaker once, waits for the requests they sent, and advances the clock by d.
func (n *net) step(d time.Duration) {
	for _, h := range n.nodes {
		h.sp.Tick(context.Background())
	}
	for _, h := range n.nodes {
		h.sp.Wait()
	}
	n.clock.advance(d)
}

// muteSpeaker turns off the routes node name's own speaker sends to its account peer
// (SendRoutes): the tests play that node's updates by hand.
func (n *net) muteSpeaker(name, peer string) {
	h := n.node(name)
	cfg := *h.Config()
	ac := cfg.Accounts[peer]
	no := false
	ac.SendRoutes = &no
	cfg.Accounts = maps.Clone(cfg.Accounts)
	cfg.Accounts[peer] = ac
	h.setConfig(&cfg)
	h.sp.Reload()
}

func (n *net) setDown(a, b string, down bool) {
	n.mu.Lock()
	n.down[key(a, b)] = down
	n.mu.Unlock()
}

const (
	child  = config.RelationChild
	peerR  = config.RelationPeer
	parent = config.RelationParent
)

func TestTwoPeersLearnEachOther(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR}, "b": {"a": peerR}})
	n.settle(t, 200*time.Millisecond, 50)
	for _, c := range []struct{ node, dest, hop string }{{"a", "test.b.x", "b"}, {"b", "test.a.y", "a"}} {
		if hop, ok := n.node(c.node).lookup(c.dest); !ok || hop != c.hop {
			t.Errorf("%s: route to %s = %q %v, want %s", c.node, c.dest, hop, ok, c.hop)
		}
	}
	st := n.node("a").sp.Status()
	if st.Peers["b"].Send == nil || st.Peers["b"].Send.Mode != "SYNC" || st.Peers["b"].Receive == nil ||
		st.Peers["b"].Receive.RoutingTableID != n.node("b").sp.TableID().String() {
		t.Errorf("status of peer b at a: %+v %+v", st.Peers["b"].Send, st.Peers["b"].Receive)
	}
	// a advertises test.a and, learned from b, test.b; to b itself test.b is withdrawn.
	if len(st.Forwarding) != 2 || st.Forwarding[1].Route.NextHop != "b" || !slices.Equal(st.Forwarding[1].Route.Path, []string{"test.a", "test.b"}) {
		t.Errorf("forwarding table of a: %+v", st.Forwarding)
	}
	// What a sends b from epoch 0: test.a new, test.b (learned from b) withdrawn.
	sp := n.node("a").sp
	sp.mu.Lock()
	u := sp.buildUpdate(sp.peers["b"], 0, 45000)
	sp.mu.Unlock()
	if len(u.NewRoutes) != 1 || u.NewRoutes[0].Prefix != "test.a" || !slices.Equal(u.WithdrawnRoutes, []string{"test.b"}) {
		t.Errorf("full update from a to b: new %+v withdrawn %v; want new test.a, withdrawn test.b", u.NewRoutes, u.WithdrawnRoutes)
	}
	if got := n.node("b").sp.Learned(); len(got) != 1 || got[0].Prefix != "test.a" {
		t.Errorf("b learned %+v, want only test.a (its own prefix must not come back)", got)
	}
}

func TestRouteSelection(t *testing.T) {
	// x is reachable from d through a parent p, a peer q and a child c; c and q also
	// reach it through one more hop in some cases.
	cases := []struct {
		name string
		rel  map[string]config.Relation // d's accounts
		want string
	}{
		{"child beats peer and parent", map[string]config.Relation{"p": parent, "q": peerR, "c": child}, "c"},
		{"peer beats parent", map[string]config.Relation{"p": parent, "q": peerR}, "q"},
		{"tie-break by account id", map[string]config.Relation{"q": peerR, "r": peerR}, "q"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rel := map[string]map[string]config.Relation{"d": c.rel}
			for id, r := range c.rel {
				back := peerR
				switch r {
				case parent:
					back = child
				case child:
					back = parent
				}
				rel[id] = map[string]config.Relation{"d": back}
			}
			n := newNet(t, rel)
			// Each neighbour advertises the same prefix as if it had it locally.
			for id := range c.rel {
				h := n.node(id)
				cfg := *h.cfg
				cfg.Accounts = map[string]config.Account{"d": h.cfg.Accounts["d"], "x": {Relation: child, AssetCode: "USD"}}
				cfg.Routes = []config.Route{{TargetPrefix: "test.x", PeerID: "x"}}
				ac := cfg.Accounts["d"]
				yes := true // children neither send nor take routes by default
				ac.SendRoutes, ac.ReceiveRoutes = &yes, &yes
				cfg.Accounts["d"] = ac
				h.setConfig(&cfg)
				h.sp.Reload()
			}
			d := n.node("d")
			dcfg := *d.cfg
			dcfg.Accounts = map[string]config.Account{}
			for id, ac := range d.cfg.Accounts {
				yes := true
				ac.SendRoutes, ac.ReceiveRoutes = &yes, &yes
				dcfg.Accounts[id] = ac
			}
			d.setConfig(&dcfg)
			d.sp.Reload()
			n.settle(t, 200*time.Millisecond, 60)
			if hop, ok := d.lookup("test.x.1"); !ok || hop != c.want {
				t.Errorf("route to test.x at d: %q %v, want %s (learned %+v)", hop, ok, c.want, d.sp.Learned())
			}
		})
	}
}

func TestConfiguredRouteWins(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR, "c": peerR}, "b": {"a": peerR}, "c": {"a": peerR}})
	h := n.node("a")
	cfg := *h.cfg
	cfg.Routes = []config.Route{{TargetPrefix: "test.b", PeerID: "c"}}
	h.setConfig(&cfg)
	h.sp.Reload()
	n.settle(t, 200*time.Millisecond, 60)
	if hop, _ := h.lookup("test.b.z"); hop != "c" {
		t.Errorf("test.b goes to %q, want the configured c", hop)
	}
}

// triangle: a, b, c all peers of each other.
func triangle(t *testing.T) *net {
	return newNet(t, map[string]map[string]config.Relation{
		"a": {"b": peerR, "c": peerR}, "b": {"a": peerR, "c": peerR}, "c": {"a": peerR, "b": peerR}})
}

func TestTriangleWithdrawalAndLoopFreedom(t *testing.T) {
	n := triangle(t)
	n.settle(t, 200*time.Millisecond, 60)
	a := n.node("a")
	if hop, _ := a.lookup("test.c.z"); hop != "c" {
		t.Fatalf("a reaches test.c via %q, want the direct c", hop)
	}
	for _, r := range n.node("b").sp.Learned() {
		if slices.Contains(r.Path, "test.b") {
			t.Errorf("b kept a route with its own address on the path: %+v", r)
		}
	}
	// The a–c link goes down: a must switch to b (path b, c), c to b as well.
	n.setDown("a", "c", true)
	n.settle(t, 200*time.Millisecond, 60)
	if hop, _ := a.lookup("test.c.z"); hop != "b" {
		t.Errorf("after a–c went down, a reaches test.c via %q, want b", hop)
	}
	r, _ := a.table.Load().Lookup("test.c.z")
	if !slices.Equal(r.Path, []string{"test.b", "test.c"}) {
		t.Errorf("path to test.c at a: %v", r.Path)
	}
	if hop, _ := n.node("c").lookup("test.a.z"); hop != "b" {
		t.Errorf("c reaches test.a via %q, want b", hop)
	}
	// b–c also down: test.c is gone everywhere, nothing points back and forth.
	n.setDown("b", "c", true)
	n.settle(t, 200*time.Millisecond, 60)
	for _, name := range []string{"a", "b"} {
		if hop, ok := n.node(name).lookup("test.c.z"); ok {
			t.Errorf("%s still routes test.c via %q after c is cut off", name, hop)
		}
	}
	// The links come back: the routes return.
	n.setDown("a", "c", false)
	n.setDown("b", "c", false)
	n.settle(t, 200*time.Millisecond, 80)
	if hop, _ := a.lookup("test.c.z"); hop != "c" {
		t.Errorf("after the links came back, a reaches test.c via %q, want c", hop)
	}
}

func TestHeartbeatExpiry(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR}, "b": {"a": peerR}})
	n.settle(t, 200*time.Millisecond, 50)
	// b goes silent (its speaker stops ticking) while the link stays up.
	a := n.node("a")
	for range 300 { // 60 s of a alone, in 200 ms steps
		a.sp.Tick(context.Background())
		a.sp.Wait()
		n.clock.advance(200 * time.Millisecond)
	}
	if hop, ok := a.lookup("test.b.x"); ok {
		t.Errorf("a still routes test.b via %q after 60 s without heartbeats (hold-down 45 s)", hop)
	}
	// b comes back: the control a sends makes b resend its table.
	n.settle(t, 200*time.Millisecond, 80)
	if hop, _ := a.lookup("test.b.x"); hop != "b" {
		t.Errorf("after b came back, a routes test.b via %q", hop)
	}
}

func TestReceiverEpochs(t *testing.T) {
	own, global := "test.me", "test"
	id1, id2 := TableID{1}, TableID{2}
	route := func(p string, path ...string) Route { return Route{Prefix: p, Path: path} }
	r := &receiver{routes: map[string]learned{}}
	now := time.Unix(1000, 0)
	steps := []struct {
		name        string
		u           UpdateRequest
		wantChanged bool
		wantGap     bool
		wantEpoch   uint32
		wantRoutes  []string
	}{
		{"first full update", UpdateRequest{RoutingTableID: id1, FromEpochIndex: 0, ToEpochIndex: 3,
			NewRoutes: []Route{route("test.p", "test.p"), route("test.q", "test.p", "test.q")}}, true, false, 3, []string{"test.p", "test.q"}},
		{"heartbeat", UpdateRequest{RoutingTableID: id1, FromEpochIndex: 3, ToEpochIndex: 3}, false, false, 3, []string{"test.p", "test.q"}},
		{"gap", UpdateRequest{RoutingTableID: id1, FromEpochIndex: 5, ToEpochIndex: 7, NewRoutes: []Route{route("test.r", "test.p")}}, false, true, 3, []string{"test.p", "test.q"}},
		{"stale", UpdateRequest{RoutingTableID: id1, FromEpochIndex: 0, ToEpochIndex: 2, WithdrawnRoutes: []string{"test.p"}}, false, false, 3, []string{"test.p", "test.q"}},
		{"withdraw and loop", UpdateRequest{RoutingTableID: id1, FromEpochIndex: 3, ToEpochIndex: 5, WithdrawnRoutes: []string{"test.q"},
			NewRoutes: []Route{route("test.l", "test.p", "test.me"), route("test.me.kid", "test.p"), route("test", "test.p"), route("g.x", "test.p"), route("peer.x", "test.p")}},
			true, false, 5, []string{"test.p"}},
		{"new table id: resync from 0", UpdateRequest{RoutingTableID: id2, FromEpochIndex: 0, ToEpochIndex: 1, NewRoutes: []Route{route("test.z", "test.p")}},
			true, false, 1, []string{"test.z"}},
		{"new table id with a gap: cleared, control needed", UpdateRequest{RoutingTableID: id1, FromEpochIndex: 9, ToEpochIndex: 10},
			true, true, 0, nil},
	}
	for _, s := range steps {
		res := r.update(&s.u, now, 45*time.Second, own, global)
		var got []string
		for p := range r.routes {
			got = append(got, p)
		}
		slices.Sort(got)
		if res.changed != s.wantChanged || res.gap != s.wantGap || r.epoch != s.wantEpoch || !slices.Equal(got, s.wantRoutes) {
			t.Errorf("%s: changed %v gap %v epoch %d routes %v; want %v %v %d %v", s.name, res.changed, res.gap, r.epoch, got,
				s.wantChanged, s.wantGap, s.wantEpoch, s.wantRoutes)
		}
		if s.wantGap && !r.needControl {
			t.Errorf("%s: no route control requested", s.name)
		}
	}
}

func TestSenderFiltersAndBatches(t *testing.T) {
	// m has a parent p, a peer q and a child k. What goes to p must leave out q's routes.
	n := newNet(t, map[string]map[string]config.Relation{
		"m": {"p": parent, "q": peerR, "k": child}, "p": {"m": child}, "q": {"m": peerR}, "k": {"m": parent}})
	// A child sends routes only when told to.
	yes := true
	for _, name := range []string{"p", "k"} {
		h := n.node(name)
		cfg := *h.cfg
		ac := cfg.Accounts["m"]
		ac.SendRoutes, ac.ReceiveRoutes = &yes, &yes
		cfg.Accounts = map[string]config.Account{"m": ac}
		h.setConfig(&cfg)
		h.sp.Reload()
	}
	withAllRoutes(n.node("m"))
	n.settle(t, 200*time.Millisecond, 60)
	if hop, _ := n.node("p").lookup("test.q.1"); hop != "" {
		t.Errorf("parent p learned q's route via %q: a peer's routes must not go to a parent", hop)
	}
	if hop, _ := n.node("p").lookup("test.k.1"); hop != "m" {
		t.Errorf("parent p reaches child k's prefix via %q, want m", hop)
	}
	if hop, _ := n.node("q").lookup("test.k.1"); hop != "m" {
		t.Errorf("peer q reaches test.k via %q, want m", hop)
	}
}

func TestHandleRejects(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR, "k": child}, "b": {"a": peerR}, "k": {"a": parent}})
	a := n.node("a")
	exp := n.clock.Now().Add(time.Minute)
	cases := []struct {
		name string
		from string
		p    *ilp.Prepare
		want ilp.ErrorCode
	}{
		{"control from a child", "k", ControlPrepare(&ControlRequest{Mode: ModeSync}, exp), ilp.CodeBadRequest},
		{"update from a child", "k", UpdatePrepare(&UpdateRequest{Speaker: "test.k"}, exp), ilp.CodeBadRequest},
		{"garbage", "b", &ilp.Prepare{Destination: UpdateDestination, ExecutionCondition: ilp.PeerCondition, ExpiresAt: exp, Data: []byte{1, 2}}, ilp.CodeBadRequest},
		{"unknown ccp address", "b", &ilp.Prepare{Destination: "peer.route.other", ExecutionCondition: ilp.PeerCondition, ExpiresAt: exp}, ilp.CodeUnreachable},
		{"control from a peer", "b", ControlPrepare(&ControlRequest{Mode: ModeSync}, exp), ""},
	}
	for _, c := range cases {
		f, err := a.sp.Handle(context.Background(), c.from, c.p)
		var rej *ilp.Reject
		switch {
		case c.want == "" && (err != nil || f.Fulfillment != ilp.PeerFulfillment):
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (!errors.As(err, &rej) || rej.Code != c.want || rej.TriggeredBy != "test.a"):
			t.Errorf("%s: got %v, want %s by test.a", c.name, err, c.want)
		}
	}
}

// withAllRoutes turns sendRoutes and receiveRoutes on for every account of node h (a child or
// a parent neither sends nor takes routes by default).
func withAllRoutes(h *node) {
	yes := true
	cfg := *h.cfg
	cfg.Accounts = map[string]config.Account{}
	for id, ac := range h.cfg.Accounts {
		ac.SendRoutes, ac.ReceiveRoutes = &yes, &yes
		cfg.Accounts[id] = ac
	}
	h.setConfig(&cfg)
	h.sp.Reload()
}

// withRelation reloads node h with account id in relation r.
func withRelation(h *node, id string, r config.Relation) {
	cfg := *h.cfg
	cfg.Accounts = maps.Clone(h.cfg.Accounts)
	ac := cfg.Accounts[id]
	ac.Relation = r
	cfg.Accounts[id] = ac
	h.setConfig(&cfg)
	h.sp.Reload()
}

// A reload that changes a relation changes what a parent may see (Gao-Rexford), although the
// forwarding routes stay the same: the routes must be sent again, filtered anew.
func TestRelationChangeWithdrawsFromParent(t *testing.T) {
	cases := []struct {
		name       string
		account    string          // account of m whose relation changes
		to         config.Relation // its new relation
		node, dest string          // node that must no longer reach dest through m
	}{
		// m's child k becomes a peer: its route must go from m's parent p.
		{"next hop becomes a peer", "k", peerR, "p", "test.k.1"},
		// m's peer q becomes a parent: the route of m's parent p must go from q.
		{"receiver becomes a parent", "q", parent, "q", "test.p.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNet(t, map[string]map[string]config.Relation{
				"m": {"p": parent, "q": peerR, "k": child}, "p": {"m": child}, "q": {"m": peerR}, "k": {"m": parent}})
			for _, name := range []string{"m", "p", "q", "k"} {
				withAllRoutes(n.node(name))
			}
			n.settle(t, 200*time.Millisecond, 60)
			if hop, _ := n.node(c.node).lookup(c.dest); hop != "m" {
				t.Fatalf("setup: %s reaches %s via %q, want m", c.node, c.dest, hop)
			}
			withRelation(n.node("m"), c.account, c.to)
			n.settle(t, 200*time.Millisecond, 60)
			if hop, ok := n.node(c.node).lookup(c.dest); ok && hop == "m" {
				t.Errorf("%s still reaches %s via m after m's account %s became a %s", c.node, c.dest, c.account, c.to)
			}
		})
	}
}

// encodingHost sends as a real link does: the Prepare is encoded first (as btp's
// conn.writePacket), so data over ilp.MaxDataSize fails.
type encodingHost struct{ *node }

func (h encodingHost) SendPeer(ctx context.Context, id string, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if _, err := p.MarshalBinary(); err != nil {
		return nil, err
	}
	return h.node.SendPeer(ctx, id, p)
}

// longPath is a path of hops hops of about size bytes each, starting at speaker.
func longPath(speaker string, hops, size int) []string {
	p := []string{speaker}
	for i := range hops - 1 {
		p = append(p, fmt.Sprintf("test.h%02d.%s", i, strings.Repeat("x", size-9)))
	}
	return p
}

// pathOfBytes is a path of n bytes in all, in hops of at most 1000 bytes, from test.p.
func pathOfBytes(n int) []string {
	p := []string{"test.p"}
	for n -= len(p[0]); n > 0; {
		size := min(n, 1000)
		p = append(p, "test."+strings.Repeat("y", size-5))
		n -= size
	}
	return p
}

// Routes that each fit into an update, but not all together, are spread over several updates:
// a peer's long (but allowed) paths must not stop our updates to other peers.
func TestUpdatesFitInAPrepare(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR, "c": peerR}, "b": {"a": peerR}, "c": {"a": peerR}})
	// b is played by hand below: its own speaker sends nothing.
	n.muteSpeaker("b", "a")
	a := n.node("a")
	id := TableID{7, 7}
	a.sp = New(encodingHost{a}, Options{Clock: n.clock, TableID: &id})
	far := []string{"test.far1", "test.far2", "test.far3", "test.far4", "test.far5"}
	for i, prefix := range far {
		// 8 hops of 1000 bytes: under MaxPathBytes, so a keeps and re-advertises them.
		u := &UpdateRequest{RoutingTableID: TableID{1}, FromEpochIndex: uint32(i), ToEpochIndex: uint32(i + 1), HoldDownTime: 45000,
			Speaker: "test.b", NewRoutes: []Route{{Prefix: prefix, Path: longPath("test.b", 8, 1000)}}}
		if _, err := a.sp.Handle(context.Background(), "b", UpdatePrepare(u, n.clock.Now().Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(a.sp.Learned()); got != len(far) {
		t.Fatalf("setup: a learned %d routes, want %d", got, len(far))
	}
	n.settle(t, 200*time.Millisecond, 80)
	c := n.node("c")
	for _, dest := range append([]string{"test.a"}, far...) {
		if hop, ok := c.lookup(dest + ".x"); !ok || hop != "a" {
			t.Errorf("c reaches %s via %q %v, want a: a's updates to c must fit into a Prepare", dest, hop, ok)
		}
	}
}

// A single log entry too large for any update is sent as a withdrawal, so that the sender
// moves past it instead of retrying it for ever.
func TestOversizedEntryWithdrawn(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR}, "b": {"a": peerR}})
	sp := n.node("a").sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	huge := &fwdRoute{nextHop: "x", relation: peerR, path: longPath("test.a", 40, 1000)}
	sp.appendLog("test.huge", huge)
	sp.appendLog("test.small", &fwdRoute{nextHop: "x", relation: peerR, path: []string{"test.a", "test.s"}})
	for from := uint32(0); from < sp.epoch; {
		u := sp.buildUpdate(sp.peers["b"], from, 45000)
		if _, err := UpdatePrepare(u, n.clock.Now().Add(time.Minute)).MarshalBinary(); err != nil {
			t.Fatalf("update from %d: %v", from, err)
		}
		if u.ToEpochIndex <= from {
			t.Fatalf("update from %d ends at %d: the sender is stuck", from, u.ToEpochIndex)
		}
		for _, r := range u.NewRoutes {
			if r.Prefix == "test.huge" {
				t.Errorf("test.huge advertised (%d hops)", len(r.Path))
			}
		}
		if slices.Contains(u.WithdrawnRoutes, "test.huge") != (from <= sp.fwd["test.huge"].epoch && sp.fwd["test.huge"].epoch < u.ToEpochIndex) {
			t.Errorf("update [%d, %d): withdrawn %v, want test.huge in it exactly when its epoch is", from, u.ToEpochIndex, u.WithdrawnRoutes)
		}
		from = u.ToEpochIndex
	}
}

func TestReceiverRefusesOversizedRoutes(t *testing.T) {
	cases := []struct {
		name string
		path []string
		keep bool
	}{
		{"short", []string{"test.p", "test.q"}, true},
		{"MaxPathHops hops", longPath("test.p", MaxPathHops, 20), true},
		{"too many hops", longPath("test.p", MaxPathHops+1, 20), false},
		{"MaxPathBytes bytes", pathOfBytes(MaxPathBytes), true},
		{"too many bytes", pathOfBytes(MaxPathBytes + 1), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &receiver{routes: map[string]learned{"test.x": {path: []string{"test.p"}}}}
			u := &UpdateRequest{RoutingTableID: TableID{}, FromEpochIndex: 0, ToEpochIndex: 1, NewRoutes: []Route{{Prefix: "test.x", Path: c.path}}}
			r.update(u, time.Unix(1000, 0), 45*time.Second, "test.me", "test")
			if _, ok := r.routes["test.x"]; ok != c.keep {
				t.Errorf("route with %d hops kept: %v, want %v", len(c.path), ok, c.keep)
			}
			if refused := r.refused == 1; refused == c.keep {
				t.Errorf("refused count %d (%q)", r.refused, r.lastRefusal)
			}
		})
	}
}

func TestReceiverRouteLimit(t *testing.T) {
	r := &receiver{routes: map[string]learned{}}
	u := &UpdateRequest{ToEpochIndex: 1}
	for i := range MaxRoutesPerPeer + 5 {
		u.NewRoutes = append(u.NewRoutes, Route{Prefix: fmt.Sprintf("test.r%05d", i), Path: []string{"test.p"}})
	}
	r.update(u, time.Unix(1000, 0), 45*time.Second, "test.me", "test")
	if len(r.routes) != MaxRoutesPerPeer || r.refused != 5 {
		t.Fatalf("%d routes held, %d refused; want %d and 5", len(r.routes), r.refused, MaxRoutesPerPeer)
	}
	// At the limit, a route already held is still updated and withdrawn.
	u = &UpdateRequest{FromEpochIndex: 1, ToEpochIndex: 2, WithdrawnRoutes: []string{"test.r00001"},
		NewRoutes: []Route{{Prefix: "test.r00000", Path: []string{"test.p", "test.q"}}}}
	r.update(u, time.Unix(1000, 0), 45*time.Second, "test.me", "test")
	if _, ok := r.routes["test.r00001"]; ok || len(r.routes["test.r00000"].path) != 2 {
		t.Errorf("at the limit: withdrawn route kept %v, path of updated route %v", ok, r.routes["test.r00000"].path)
	}
}

// countHandler counts the log records at or above Warn.
type countHandler struct{ n *atomic.Int32 }

func (h countHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h countHandler) Handle(context.Context, slog.Record) error    { h.n.Add(1); return nil }
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h countHandler) WithGroup(string) slog.Handler                { return h }

// Refused routes are logged, at most once per refusalLogInterval per peer.
func TestRefusalLogRateLimited(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR}, "b": {"a": peerR}})
	a := n.node("a")
	var logs atomic.Int32
	a.sp = New(a, Options{Clock: n.clock, Log: slog.New(countHandler{&logs})})
	send := func(i int) {
		u := &UpdateRequest{RoutingTableID: TableID{1}, FromEpochIndex: uint32(i), ToEpochIndex: uint32(i + 1),
			NewRoutes: []Route{{Prefix: "test.x", Path: longPath("test.b", MaxPathHops+1, 20)}}}
		if _, err := a.sp.Handle(context.Background(), "b", UpdatePrepare(u, n.clock.Now().Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		send(i)
		n.clock.advance(time.Second)
	}
	if got := logs.Load(); got != 1 {
		t.Errorf("%d logs for 10 refusals within 10 s, want 1", got)
	}
	n.clock.advance(refusalLogInterval)
	send(10)
	if got := logs.Load(); got != 2 {
		t.Errorf("%d logs after refusalLogInterval, want 2", got)
	}
}

// On env test, the network's prefixes are those of the schemes test, test1, test2 and test3
// (RFC 15), as our own config allows: a JS peer at test1.js is learned and advertised.
func TestAcceptableNetworkPrefixes(t *testing.T) {
	cases := []struct {
		prefix, global string
		want           bool
	}{
		{"test.x", "test", true},
		{"test1.js", "test", true},
		{"test3.a.b", "test", true},
		{"test4.x", "test", false},
		{"testing.x", "test", false},
		{"test1", "test", false},
		{"test", "test", false},
		{"g.x", "test", false},
		{"g.x", "g", true},
		{"test1.x", "g", false},
		{"peer.x", "test", false},
	}
	for _, c := range cases {
		rt := Route{Prefix: c.prefix, Path: []string{c.prefix}}
		if got := acceptable(&rt, "test.me", c.global); got != c.want {
			t.Errorf("acceptable(%s) on %s = %v, want %v", c.prefix, c.global, got, c.want)
		}
		sp := &Speaker{secret: []byte("k")}
		r := routing.Route{Prefix: c.prefix, NextHop: "x", Path: []string{c.prefix}, Source: routing.SourceLearned}
		if got := sp.forwardingRoute(&r, "test.me", c.global) != nil; got != c.want {
			t.Errorf("forwardingRoute(%s) on %s advertised %v, want %v", c.prefix, c.global, got, c.want)
		}
	}
}

// A heartbeat with a shorter hold-down does not cut short what an earlier update promised
// (JS CcpReceiver.bump keeps the later expiry).
func TestHoldDownKeepsLaterExpiry(t *testing.T) {
	r := &receiver{routes: map[string]learned{}}
	now := time.Unix(1000, 0)
	r.update(&UpdateRequest{RoutingTableID: TableID{1}, ToEpochIndex: 1, HoldDownTime: 45000,
		NewRoutes: []Route{{Prefix: "test.p", Path: []string{"test.p"}}}}, now, 45*time.Second, "test.me", "test")
	r.update(&UpdateRequest{RoutingTableID: TableID{1}, FromEpochIndex: 1, ToEpochIndex: 1, HoldDownTime: 1000}, now, 45*time.Second, "test.me", "test")
	r.wasConnected = true
	if r.check(now.Add(10*time.Second), true) || len(r.routes) != 1 {
		t.Errorf("routes dropped 10 s after an update that held them 45 s")
	}
}

// A peer that restarts while its link is down for less than one Tick (so that Tick never
// sees it disconnected) gets a route control from us when its own control shows it lost our
// table: otherwise its new sender stays IDLE towards us until our hold-down expires.
func TestPeerRestartWithinATick(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR}, "b": {"a": peerR}})
	n.settle(t, 200*time.Millisecond, 50)
	b := n.node("b")
	id := TableID{9, 9}
	b.sp = New(b, Options{Clock: n.clock, TableID: &id}) // b restarted
	n.settle(t, 200*time.Millisecond, 20)                // 4 s, far less than the 45 s hold-down
	if st := b.sp.Status().Peers["a"].Send; st == nil || st.Mode != "SYNC" {
		t.Errorf("restarted b's sender to a: %+v, want SYNC", st)
	}
	if got := n.node("a").sp.Status().Peers["b"].Receive; got.RoutingTableID != id.String() {
		t.Errorf("a holds b's table %s, want the new %s", got.RoutingTableID, id)
	}
}

// A stopped Speaker puts no table in force and takes no requests: route broadcasting was
// turned off, and a request handled meanwhile must not bring learned routes back.
func TestStoppedSpeakerSetsNoTable(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR}, "b": {"a": peerR}})
	a := n.node("a")
	a.sp.Stop()
	before := a.table.Load()
	u := &UpdateRequest{RoutingTableID: TableID{1}, ToEpochIndex: 1, NewRoutes: []Route{{Prefix: "test.far", Path: []string{"test.b"}}}}
	if _, err := a.sp.Handle(context.Background(), "b", UpdatePrepare(u, n.clock.Now().Add(time.Minute))); err == nil {
		t.Errorf("a stopped Speaker fulfilled a route update")
	}
	a.sp.Reload()
	a.sp.Tick(context.Background())
	a.sp.Wait()
	if a.table.Load() != before {
		t.Errorf("a stopped Speaker put a routing table in force")
	}
}

// A flapping route does not grow the log: superseded entries are dropped, and a peer at any
// epoch still gets the latest state of every prefix changed since.
func TestLogCompaction(t *testing.T) {
	n := newNet(t, map[string]map[string]config.Relation{"a": {"b": peerR}, "b": {"a": peerR}})
	sp := n.node("a").sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	start := sp.epoch
	sp.appendLog("test.s", &fwdRoute{nextHop: "x", relation: peerR, path: []string{"test.a", "test.s"}})
	up := &fwdRoute{nextHop: "x", relation: peerR, path: []string{"test.a", "test.f"}}
	for i := range 10001 { // ends up
		f := up
		if i%2 == 1 {
			f = nil
		}
		sp.appendLog("test.flap", f)
	}
	if limit := 2*len(sp.fwd) + 64; len(sp.log_) > limit {
		t.Fatalf("log holds %d entries after 10001 changes of one prefix, want at most %d", len(sp.log_), limit)
	}
	for _, from := range []uint32{0, start, start + 1, sp.epoch - 1} {
		got := map[string]bool{} // prefix → advertised (false: withdrawn)
		for f := from; f < sp.epoch; {
			u := sp.buildUpdate(sp.peers["b"], f, 45000)
			for _, r := range u.NewRoutes {
				got[r.Prefix] = true
			}
			for _, w := range u.WithdrawnRoutes {
				got[w] = false
			}
			f = u.ToEpochIndex
		}
		if !got["test.flap"] || (from <= start) != got["test.s"] {
			t.Errorf("updates from epoch %d: %v; want test.flap advertised, test.s too when from <= %d", from, got, start)
		}
	}
}
