package churn

import (
	"context"
	"crypto/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/admin"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ccp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// ccpPeer is the test's CCP speaker on one BTP connection to a peer account: it takes the
// connector's route controls and updates, and sends its own updates from epoch 0 of a table
// of its own.
type ccpPeer struct {
	cl    *btp.Client
	table ccp.TableID
	epoch uint32
	name  string // its ILP address
}

// speaksCCP fulfills the connector's peer.route.* requests and every payment.
func speaksCCP(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if strings.HasPrefix(string(p.Destination), "peer.route.") {
		return ccp.Fulfill(), nil
	}
	return fulfill(context.Background(), p)
}

func newCCPPeer(t *testing.T, port int, user string) *ccpPeer {
	t.Helper()
	p := &ccpPeer{cl: client(t, port, user, "tok-"+user, speaksCCP), name: "test." + user}
	_, _ = rand.Read(p.table[:])
	return p
}

// update announces add and withdraws withdraw, as the next epoch of the peer's table.
func (p *ccpPeer) update(t *testing.T, add, withdraw []string) {
	t.Helper()
	u := &ccp.UpdateRequest{RoutingTableID: p.table, CurrentEpochIndex: p.epoch + 1, FromEpochIndex: p.epoch,
		ToEpochIndex: p.epoch + 1, HoldDownTime: 45000, Speaker: p.name, WithdrawnRoutes: withdraw}
	for _, prefix := range add {
		u.NewRoutes = append(u.NewRoutes, ccp.Route{Prefix: prefix, Path: []string{p.name}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := p.cl.Send(ctx, ccp.UpdatePrepare(u, time.Now().Add(5*time.Second))); err != nil {
		t.Fatalf("route update from %s: %v", p.name, err)
	}
	p.epoch++
}

func hasRoute(r *rig, prefix string) bool {
	return slices.ContainsFunc(r.c.Routes(), func(x admin.RouteInfo) bool { return x.Prefix == prefix })
}

// TestChurnCCPRoutes: a CCP peer announces a new prefix and withdraws the previous one, over
// and over; then peers come and go — each a new account added by a reload, connecting,
// announcing a route and leaving, its account removed. The routing table, the forwarding
// table's log (bounded by design: withdrawalWindow), the CCP peers and the metric series must
// all be back where they were.
func TestChurnCCPRoutes(t *testing.T) {
	ps, pc, pq := port(t), port(t), port(t)
	base := []string{btpListener("sink", "child", ps, ""), btpListener("cp", "peer", pc, "")}
	r := newRig(t, doc(0, base, nil))
	sink := client(t, ps, "sink", "tok-sink", fulfill)
	defer sink.Close()
	cp := newCCPPeer(t, pc, "cp")
	defer cp.cl.Close()
	// Warm-up: one route learned and paid through, then withdrawn.
	cp.update(t, []string{"test.warm"}, nil)
	waitFor(t, "route learned", func() bool { return hasRoute(r, "test.warm") })
	mustFulfill(t, sink, prepare("test.warm.x", 5*time.Second))
	cp.update(t, nil, []string{"test.warm"})
	waitFor(t, "route withdrawn", func() bool { return !hasRoute(r, "test.warm") })
	r.baseline()

	prev := []string(nil)
	for i := range minIterations {
		prefix := "test.r" + strconv.Itoa(i)
		cp.update(t, []string{prefix}, prev)
		if i%20 == 0 { // a packet now and then: the route is used, not only held
			waitFor(t, "route learned", func() bool { return hasRoute(r, prefix) })
			mustFulfill(t, sink, prepare(prefix+".x", 5*time.Second))
		}
		prev = []string{prefix}
	}
	cp.update(t, nil, prev)
	waitFor(t, "last route withdrawn", func() bool { return !hasRoute(r, prev[0]) })
	r.check("route churn from one peer", same())
	checkForwardingLog(t, r, "route churn from one peer")

	// Peers coming and going, each under a new account id (per-id state must not stay).
	with := func(id string) string {
		return doc(0, append(append([]string{}, base...), btpListener(id, "peer", pq, "")), nil)
	}
	without := doc(0, base, nil)
	for i := range minIterations / 2 {
		id := "cq" + strconv.Itoa(i)
		r.apply(with(id))
		q := newCCPPeer(t, pq, id)
		prefix := "test.q" + strconv.Itoa(i)
		q.update(t, []string{prefix}, nil)
		waitFor(t, "route of a new peer learned", func() bool { return hasRoute(r, prefix) })
		if i%2 == 0 {
			_ = q.cl.Close() // leaves first, then is removed
			r.apply(without)
		} else {
			r.apply(without) // removed while connected
			_ = q.cl.Close()
		}
		if hasRoute(r, prefix) {
			t.Fatalf("route %s of removed peer %s still in the table", prefix, id)
		}
	}
	r.check("CCP peers coming and going", same())
	checkForwardingLog(t, r, "CCP peers coming and going")
	if left := seriesOf(t, r.c, func(id string) bool { return strings.HasPrefix(id, "cq") }); len(left) > 0 {
		t.Errorf("series of removed peers: %v", left)
	}
}

// checkForwardingLog: the forwarding table and its epoch log keep withdrawals only while a
// peer may still need them (runtime/ccp dropWithdrawals): with every peer having acknowledged
// every update, none of the churned prefixes may stay.
func checkForwardingLog(t *testing.T, r *rig, phase string) {
	t.Helper()
	ok := func() bool {
		ri := r.c.Routing()
		return len(ri.Forwarding) < minIterations/10 && len(ri.Log) < minIterations/10
	}
	for range settleTries {
		if ok() {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	ri := r.c.Routing()
	t.Logf("%s: forwarding table %d entries, log %d entries, epoch %d", phase, len(ri.Forwarding), len(ri.Log), ri.Epoch)
	if !ok() {
		t.Errorf("%s: forwarding table (%d) or its log (%d) kept the churned prefixes", phase, len(ri.Forwarding), len(ri.Log))
	}
}
