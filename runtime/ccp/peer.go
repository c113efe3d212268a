package ccp

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/routing"
)

// peer is the CCP state with one account: a sender when we send it routes, a receiver when we
// take routes from it. The Speaker's mutex guards it.
type peer struct {
	id       string
	relation config.Relation
	send     *sender
	recv     *receiver
}

// configure applies the account's relation and sendRoutes/receiveRoutes; a sender or receiver
// that is turned off is dropped with its state (and its routes, at the next rebuild). It
// reports whether the relation of a peer we send routes to changed: what it may see changed.
func (p *peer) configure(ac config.Account) (sendRelationChanged bool) {
	sendRelationChanged = p.send != nil && p.relation != "" && p.relation != ac.Relation
	p.relation = ac.Relation
	switch {
	case !ac.SendsRoutes():
		p.send = nil
	case p.send == nil:
		p.send = &sender{}
	}
	switch {
	case !ac.ReceivesRoutes():
		p.recv = nil
	case p.recv == nil:
		p.recv = &receiver{routes: map[string]learned{}, needControl: true}
	}
	return sendRelationChanged
}

// sender is our route sender to one peer (JS CcpSender).
type sender struct {
	mode           Mode
	lastKnownEpoch uint32 // the first epoch the peer has not acknowledged
	lastSend       time.Time
	inFlight       bool
	inFlightFrom   uint32 // the epoch the update in flight starts at
	failures       int
	generation     uint64 // bumped by each route control
	// full is set when a withdrawal it had not acknowledged was dropped (dropWithdrawals):
	// the next update starts at epoch 0, the whole table.
	full bool
}

// acknowledged is the first epoch the peer has not acknowledged (0: none, it is sent the
// whole table): an update in flight counts from where it started, as it may fail, unless it
// started at 0 (a failure sends the whole table again; a success needs what follows it).
func (s *sender) acknowledged() uint32 {
	if s.inFlight && s.inFlightFrom != 0 {
		return min(s.lastKnownEpoch, s.inFlightFrom)
	}
	return s.lastKnownEpoch
}

// due reports whether an update should go now: at once (but at most every
// MinimumUpdateInterval) when the peer is behind or due for the whole table, every broadcast interval as a heartbeat
// otherwise, later after failures. Otherwise it returns when it will be due (zero: never).
func (s *sender) due(now time.Time, epoch uint32, interval time.Duration) (time.Time, bool) {
	if s.mode != ModeSync || s.inFlight {
		return time.Time{}, false
	}
	var at time.Time
	switch {
	case s.failures > 0:
		at = s.lastSend.Add(backoff(s.failures, interval))
	case s.lastKnownEpoch < epoch || s.full:
		at = s.lastSend.Add(MinimumUpdateInterval)
	default:
		at = s.lastSend.Add(interval)
	}
	return at, !now.Before(at)
}

// backoff is the wait after n failures: firstRetry doubled per failure, at most limit.
func backoff(n int, limit time.Duration) time.Duration {
	d := firstRetry
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// learned is a route as a peer advertised it.
type learned struct {
	path []string
	auth [32]byte
}

// receiver is our route receiver from one peer (JS CcpReceiver).
type receiver struct {
	tableID TableID
	epoch   uint32
	expiry  time.Time // zero until the first update
	routes  map[string]learned

	needControl     bool
	controlInFlight bool
	controlFailures int
	nextControl     time.Time
	wasConnected    bool

	// Routes refused for their path or the per-peer limit, not yet logged (the log is rate
	// limited: a peer may send them in every update).
	refused        int
	lastRefusal    string // why the last one was refused
	lastRefusalLog time.Time
}

// Limits on what one peer may make us hold. The JS connector has none; without them a peer
// can make us store and re-advertise anything it likes.
const (
	// MaxPathHops bounds the path of a learned route. Real ILP paths are a handful of hops;
	// 32 leaves room for any plausible network and still bounds the work per route.
	MaxPathHops = 32
	// MaxPathBytes bounds the sum of the address lengths of a learned route's path. With our
	// own address (at most 1023 bytes) in front and the prefix (at most 1023), the route we
	// re-advertise stays near 10 KB, so any single route fits into the 32767 data bytes of an
	// ILP Prepare (sendUpdate relies on that).
	MaxPathBytes = 8192
	// MaxRoutesPerPeer bounds the prefixes learned from one peer: new prefixes beyond it are
	// refused (routes already held are still updated and withdrawn). It bounds the memory a
	// peer can take and the work of its first sync, in which each update of up to 50 routes
	// rebuilds the whole table under the Speaker's mutex: 2000 routes take ~0.15 s in all
	// here, 10000 took 7-9 s (quadratic).
	MaxRoutesPerPeer = 2000
)

// updateResult says what an update did.
type updateResult struct {
	changed bool // the peer's routes changed
	gap     bool // epochs are missing: a route control is needed
}

// update applies u (JS CcpReceiver.handleRouteUpdate, with the RS answer to a gap: ask again).
func (r *receiver) update(u *UpdateRequest, now time.Time, expiry time.Duration, own, global string) updateResult {
	var res updateResult
	hold := time.Duration(u.HoldDownTime) * time.Millisecond
	if hold == 0 {
		hold = expiry
	}
	// The later of the two, as JS (CcpReceiver.bump): a heartbeat with a shorter hold-down does
	// not cut short what an earlier update promised.
	if at := now.Add(hold); at.After(r.expiry) {
		r.expiry = at
	}
	if u.RoutingTableID != r.tableID {
		// The peer has a new table (it restarted): what we had from it is void.
		res.changed = len(r.routes) > 0
		clear(r.routes)
		r.tableID, r.epoch = u.RoutingTableID, 0
	}
	if u.FromEpochIndex > r.epoch {
		r.needControl, r.nextControl, r.controlFailures = true, now, 0
		res.gap = true
		return res
	}
	if r.epoch > u.ToEpochIndex {
		return res // stale
	}
	for _, prefix := range u.WithdrawnRoutes {
		if _, ok := r.routes[prefix]; ok {
			delete(r.routes, prefix)
			res.changed = true
		}
	}
	for _, rt := range u.NewRoutes {
		if r.learn(&rt, own, global) {
			res.changed = true
		}
	}
	r.epoch = u.ToEpochIndex
	return res
}

// learn holds rt, a route of the peer's update, unless it is refused. It reports whether the
// peer's routes changed.
func (r *receiver) learn(rt *Route, own, global string) (changed bool) {
	why := sizeRefusal(rt)
	if why != "" || !acceptable(rt, own, global) {
		// A route we must not use replaces any older one for the prefix.
		_, changed = r.routes[rt.Prefix]
		delete(r.routes, rt.Prefix)
		r.refuse(why)
		return changed
	}
	cur, ok := r.routes[rt.Prefix]
	if ok && slices.Equal(cur.path, rt.Path) && cur.auth == rt.Auth {
		return false
	}
	if !ok && len(r.routes) >= MaxRoutesPerPeer {
		r.refuse(fmt.Sprintf("the peer already has %d routes here (MaxRoutesPerPeer)", MaxRoutesPerPeer))
		return false
	}
	r.routes[rt.Prefix] = learned{path: slices.Clone(rt.Path), auth: rt.Auth}
	return true
}

// refuse counts a route refused for why ("": an ordinary filter, not worth a log).
func (r *receiver) refuse(why string) {
	if why != "" {
		r.refused++
		r.lastRefusal = why
	}
}

// sizeRefusal is why a route is refused for its size ("" if it is not): more than MaxPathHops
// hops or MaxPathBytes bytes of path.
func sizeRefusal(rt *Route) string {
	if len(rt.Path) > MaxPathHops {
		return fmt.Sprintf("path of %d hops (MaxPathHops %d)", len(rt.Path), MaxPathHops)
	}
	n := 0
	for _, h := range rt.Path {
		n += len(h)
	}
	if n > MaxPathBytes {
		return fmt.Sprintf("path of %d bytes (MaxPathBytes %d)", n, MaxPathBytes)
	}
	return ""
}

// acceptable filters incoming routes: a valid prefix of the network (routing.InNetwork), not
// our own address or below it (RS), and no loop: our address must not be on the path (JS PR
// #430).
func acceptable(rt *Route, own, global string) bool {
	p := rt.Prefix
	if routing.ValidatePrefix(p) != nil || !routing.InNetwork(p, global) {
		return false
	}
	if own != "" && (p == own || strings.HasPrefix(p, own+".") || slices.Contains(rt.Path, own)) {
		return false
	}
	return true
}

// check withdraws the routes of a peer whose link is down or whose routes have expired, and
// arranges a route control for when it is back. It reports whether routes were dropped.
func (r *receiver) check(now time.Time, connected bool) bool {
	lost := !connected || (!r.expiry.IsZero() && now.After(r.expiry))
	if connected && !r.wasConnected {
		r.needControl, r.nextControl, r.controlFailures = true, now, 0
	}
	r.wasConnected = connected
	if !lost {
		return false
	}
	dropped := len(r.routes) > 0
	clear(r.routes)
	// Forget where we were, so that the peer sends everything again when we ask.
	r.tableID, r.epoch, r.expiry = TableID{}, 0, time.Time{}
	if connected {
		r.needControl = true
	}
	return dropped
}

// controlDue reports whether a route control should go now; otherwise when it will be due.
func (r *receiver) controlDue(now time.Time, connected bool) (time.Time, bool) {
	if !r.needControl || r.controlInFlight || !connected {
		return time.Time{}, false
	}
	return r.nextControl, !now.Before(r.nextControl)
}

// controlDone records the outcome of a route control.
func (r *receiver) controlDone(now time.Time, err error) {
	r.controlInFlight = false
	if err == nil {
		r.needControl, r.controlFailures = false, 0
		return
	}
	r.controlFailures++
	r.nextControl = now.Add(backoff(r.controlFailures, ControlRetryInterval))
}
