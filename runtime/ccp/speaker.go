package ccp

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/routing"
)

// Timing constants of the JS connector (ccp-sender.ts, ccp-receiver.ts).
const (
	// maxChangesPerUpdate bounds the changes (log entries) one update carries; the JS
	// connector bounds the epochs it spans instead (MAX_EPOCHS_PER_UPDATE). An update also spans
	// the epochs between its changes, whose entries were superseded or dropped and carry
	// nothing: otherwise a peer syncing from 0 after long churn would take epoch/50 updates
	// (hours) to reach a table of a few routes.
	maxChangesPerUpdate   = 50
	MinimumUpdateInterval = 150 * time.Millisecond // between two updates to the same peer
	ControlRetryInterval  = 30 * time.Second       // longest wait before a failed control is retried
	// sendTimeout bounds one CCP request on the wire, so that a silent peer cannot hold its
	// sender forever.
	sendTimeout = 10 * time.Second
	// firstRetry is the first back-off after a failed request; it doubles up to the limits
	// above.
	firstRetry = 500 * time.Millisecond
)

// Host is what the Speaker needs from its connector.
type Host interface {
	// Config is the config in force.
	Config() *config.Config
	// Address is the connector's ILP address; "" while it is not known.
	Address() ilp.Address
	// SendPeer sends a CCP Prepare straight over the link of account id (no pipeline).
	SendPeer(ctx context.Context, id string, p *ilp.Prepare) (*ilp.Fulfill, error)
	// Connected reports whether the link of account id is up.
	Connected(id string) bool
	// SetTable puts a new routing table in force (an atomic swap).
	SetTable(t *routing.Table)
}

// Clock is the time source; tests inject a fake one.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Options are the optional parts of a Speaker.
type Options struct {
	Clock   Clock        // nil: the real clock
	Log     *slog.Logger // nil: discard
	TableID *TableID     // nil: a random UUID (tests fix it)
}

// fwdRoute is a route of the forwarding table: what we advertise for a prefix.
type fwdRoute struct {
	nextHop  string
	relation config.Relation // of the next hop's account: what a parent may see depends on it
	path     []string        // starts with our own address
	auth     [32]byte
}

// logEntry is a change of the forwarding table at an epoch; a nil route is a withdrawal.
type logEntry struct {
	prefix string
	route  *fwdRoute
	epoch  uint32
	// superseded is set when a later entry for the prefix replaces it, or when it is a
	// withdrawal that was dropped (dropWithdrawals): it is never sent again.
	superseded bool
}

// withdrawalWindow is the least number of withdrawals the forwarding table keeps for peers
// that have not acknowledged them yet; it keeps at most max(withdrawalWindow, live routes).
// Without a cap, a withdrawn prefix would stay in the table for ever, and a peer announcing
// and withdrawing ever-new prefixes would grow it without bound. A peer that falls further
// behind gets the whole live table from epoch 0 again instead (dropWithdrawals,
// handleControl), and keeps the routes withdrawn meanwhile (see dropWithdrawals): what it
// costs us is one full table, so keeping as many withdrawals as live routes (the table at
// most doubles) is what makes catching up cheaper than that. 1000 (a few hundred KB at
// most) covers a peer that misses 20 full updates (maxChangesPerUpdate), a few seconds of
// heavy churn, however small our table.
const withdrawalWindow = 1000

// Speaker is one connector's CCP route broadcaster and receiver. Its methods are safe for
// concurrent use. Incoming requests are handled under a mutex and never wait on the network;
// outgoing requests are sent by Run's goroutines.
type Speaker struct {
	host    Host
	clock   Clock
	log     *slog.Logger
	tableID TableID
	secret  []byte // routing secret: CONNECTOR_ROUTING_SECRET or random
	wake    chan struct{}
	sends   sync.WaitGroup // requests on the wire

	mu    sync.Mutex
	epoch uint32               // current epoch of the forwarding table (that of the next log entry)
	fwd   map[string]*logEntry // prefix → its latest log entry
	log_  []*logEntry          // in epoch order; superseded entries are dropped by compactLog
	dead  int                  // superseded entries still in log_
	// withdrawals holds the withdrawals of fwd in epoch order (and superseded ones until
	// compactLog or dropWithdrawals removes them); withdrawn counts those of fwd.
	withdrawals []*logEntry
	withdrawn   int
	// floor is one past the highest epoch of a dropped withdrawal (0: none dropped). A peer
	// that has not acknowledged the epochs below it may have missed a withdrawal we no longer
	// hold, and is sent the whole table from epoch 0 instead.
	floor uint32
	peers map[string]*peer
	table *routing.Table // the local table last built
	// stopped is set by Stop: the connector no longer uses this Speaker, which must not put
	// a table in force any more (it would bring back learned routes after CCP was disabled).
	stopped bool
}

// New returns a Speaker for host with one peer state per account of the config in force.
// Nothing is sent before Run.
func New(host Host, opts Options) *Speaker {
	s := &Speaker{host: host, clock: opts.Clock, log: opts.Log, wake: make(chan struct{}, 1),
		fwd: map[string]*logEntry{}, peers: map[string]*peer{}}
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.TableID != nil {
		s.tableID = *opts.TableID
	} else {
		_, _ = rand.Read(s.tableID[:])
		s.tableID[6] = s.tableID[6]&0x0f | 0x40 // UUID version 4
		s.tableID[8] = s.tableID[8]&0x3f | 0x80
	}
	s.secret = host.Config().RoutingSecret
	if len(s.secret) == 0 {
		// As JS: a random secret, so route auth values cannot be forged by peers.
		s.secret = make([]byte, 32)
		_, _ = rand.Read(s.secret)
	}
	s.Reload()
	return s
}

// TableID is the ID of this speaker's forwarding table.
func (s *Speaker) TableID() TableID { return s.tableID }

// Reload brings the peers and the routing table in line with the host's config and address:
// new accounts get a sender and a receiver (by their sendRoutes/receiveRoutes), removed ones
// lose theirs with the routes learned from them. The connector calls it after every Apply.
func (s *Speaker) Reload() {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.host.Config()
	for id := range s.peers {
		if _, ok := cfg.Accounts[id]; !ok {
			delete(s.peers, id)
		}
	}
	relogAll := false
	for id, ac := range cfg.Accounts {
		if s.peerLocked(id).configure(ac) {
			relogAll = true
		}
	}
	s.rebuildLocked(relogAll)
	s.dropWithdrawals() // a removed peer may have been the last to need some
}

// Stop makes the Speaker inert for good: it no longer puts a routing table in force, and
// refuses requests. The connector calls it when route broadcasting is turned off, before it
// stops Run, so that a request handled concurrently cannot bring learned routes back.
func (s *Speaker) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
}

// Expect adds the peer state of an account that Apply is about to start, before the config
// naming it is in force (Apply starts new links first), so that a route control its peer
// sends as soon as the link is up is kept. The next Reload keeps or drops it with the config.
func (s *Speaker) Expect(id string, ac config.Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peerLocked(id).configure(ac)
}

// peerLocked returns the state of peer id, added if new.
func (s *Speaker) peerLocked(id string) *peer {
	p := s.peers[id]
	if p == nil {
		p = &peer{id: id}
		s.peers[id] = p
	}
	return p
}

// Learned returns the routes learned from peers (the candidates, before selection).
func (s *Speaker) Learned() []routing.Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.learnedLocked()
}

func (s *Speaker) learnedLocked() []routing.Route {
	var out []routing.Route
	for _, p := range s.peers {
		if p.recv == nil {
			continue
		}
		for prefix, r := range p.recv.routes {
			out = append(out, routing.Route{Prefix: prefix, NextHop: p.id, Path: r.path, Auth: r.auth[:], Source: routing.SourceLearned})
		}
	}
	return out
}

// rebuildLocked builds the local routing table from the config and the learned routes, puts
// it in force, and logs the changes of the forwarding table as new epochs. relogAll logs every
// forwarding route again, for when the relation of a peer we send routes to changed: the
// filter of what it may see (addEntry, exportable) applies only to the entries sent after the
// change.
func (s *Speaker) rebuildLocked(relogAll bool) {
	if s.stopped {
		return
	}
	cfg := s.host.Config()
	own := string(s.host.Address())
	t, err := routing.FromConfig(cfg, own, s.learnedLocked()...)
	if err != nil {
		s.log.Error("routing table not rebuilt after a route change; the previous one stays in force", "error", err)
		return
	}
	s.table = t
	s.host.SetTable(t)
	if own == "" {
		return
	}
	global, _ := routing.GlobalPrefix(cfg.Env)
	next := map[string]*fwdRoute{}
	for _, r := range t.Routes() {
		if f := s.forwardingRoute(&r, own, global); f != nil {
			next[r.Prefix] = f
		}
	}
	changed := false
	for prefix, e := range s.fwd {
		if e.route != nil && next[prefix] == nil {
			s.appendLog(prefix, nil)
			changed = true
		}
	}
	for prefix, f := range next {
		if cur := s.fwd[prefix]; relogAll || cur == nil || !sameRoute(cur.route, f) {
			s.appendLog(prefix, f)
			changed = true
		}
	}
	if changed {
		s.signal()
	}
}

// forwardingRoute is what we advertise for a selected route, or nil for a route we keep to
// ourselves: the default (global) prefix and anything outside it, and our children, which
// our own address already covers (JS route-broadcaster updateForwardingRoute).
func (s *Speaker) forwardingRoute(r *routing.Route, own, global string) *fwdRoute {
	if !routing.InNetwork(r.Prefix, global) {
		return nil
	}
	f := &fwdRoute{nextHop: r.NextHop, relation: r.Relation, path: append([]string{own}, r.Path...)}
	if strings.HasPrefix(r.Prefix, own+".") && len(f.path) == 1 {
		return nil
	}
	if r.Source == routing.SourceLearned && len(r.Auth) == 32 {
		f.auth = sha256.Sum256(r.Auth)
	} else {
		m := hmac.New(sha256.New, s.secret)
		m.Write([]byte(r.Prefix))
		f.auth = sha256.Sum256(m.Sum(nil))
	}
	return f
}

func sameRoute(a, b *fwdRoute) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.nextHop == b.nextHop && a.relation == b.relation && slices.Equal(a.path, b.path)
}

// appendLog records a change of prefix at a new epoch and marks the entry it supersedes (a
// peer that is behind gets only the latest state of each prefix).
func (s *Speaker) appendLog(prefix string, f *fwdRoute) {
	e := &logEntry{prefix: prefix, route: f, epoch: s.epoch}
	if cur := s.fwd[prefix]; cur != nil {
		cur.superseded = true
		s.dead++
		if cur.route == nil {
			s.withdrawn--
		}
	}
	s.fwd[prefix] = e
	s.log_ = append(s.log_, e)
	if f == nil {
		s.withdrawals = append(s.withdrawals, e)
		s.withdrawn++
	}
	s.epoch++
	s.dropWithdrawals()
}

// dropWithdrawals drops from the forwarding table (and the log, with compactLog) the
// withdrawals that no peer needs any more: those below the first epoch every peer we send
// routes to has not acknowledged (acknowledgedLocked), and then the oldest ones beyond
// max(withdrawalWindow, live routes), however far behind a peer is. A peer that had not
// acknowledged a dropped withdrawal is sent the whole table from epoch 0 next (sender.full),
// and so is one whose route control asks to resume below floor, one past the highest
// dropped (handleControl). Neither our receiver nor JS's (ccp-receiver.js) clears anything on
// an update from epoch 0 of the same table, so such a peer keeps the routes withdrawn while
// it lagged beyond the cap, until its link drops (both forget our routes then, JS in
// route-broadcaster remove), our routes expire there, or it resyncs on a new table ID (our
// restart); the packets it sends us for them get F02. That is a few stale routes at one slow
// peer, against memory growing without bound at ours. It then compacts the log.
func (s *Speaker) dropWithdrawals() {
	acked := s.acknowledgedLocked()
	keep := max(withdrawalWindow, len(s.fwd)-s.withdrawn)
	n, dropped := 0, false
	for ; n < len(s.withdrawals); n++ {
		e := s.withdrawals[n]
		if e.superseded {
			continue // a later entry of the prefix replaced it
		}
		if e.epoch >= acked && s.withdrawn <= keep {
			break
		}
		delete(s.fwd, e.prefix)
		e.superseded = true
		s.dead++
		s.withdrawn--
		s.floor, dropped = max(s.floor, e.epoch+1), true
	}
	clear(s.withdrawals[:n]) // let the collector have the dropped entries
	s.withdrawals = s.withdrawals[n:]
	if dropped {
		for _, p := range s.peers {
			if p.send != nil && !p.send.full {
				if e := p.send.acknowledged(); e != 0 && e < s.floor {
					p.send.full = true
				}
			}
		}
	}
	s.compactLog()
}

// acknowledgedLocked is the first epoch that some peer we send routes to has not
// acknowledged. A peer at 0, or due for the whole table, does not count: it is sent the
// whole table from 0, as a new peer is, whatever we drop.
func (s *Speaker) acknowledgedLocked() uint32 {
	acked := s.epoch
	for _, p := range s.peers {
		if p.send == nil || p.send.full {
			continue
		}
		if e := p.send.acknowledged(); e != 0 {
			acked = min(acked, e)
		}
	}
	return acked
}

// compactLog drops the superseded entries once they are the larger part of the log, so that
// the log holds at most about twice the entries of s.fwd however often routes change (a
// flapping peer would grow it one entry per change otherwise). Nothing is lost: a superseded
// entry is never sent, and an update spans epochs, not entries.
func (s *Speaker) compactLog() {
	if s.dead < 64 || s.dead < len(s.log_)/2 {
		return
	}
	superseded := func(e *logEntry) bool { return e.superseded }
	s.log_ = slices.DeleteFunc(s.log_, superseded)
	clear(s.log_[len(s.log_):cap(s.log_)]) // let the collector have the dropped entries
	s.withdrawals = slices.DeleteFunc(s.withdrawals, superseded)
	clear(s.withdrawals[len(s.withdrawals):cap(s.withdrawals)])
	s.dead = 0
}

// signal wakes Run without blocking.
func (s *Speaker) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Handle answers a peer.route.control or peer.route.update Prepare from account id.
func (s *Speaker) Handle(_ context.Context, id string, p *ilp.Prepare) (*ilp.Fulfill, error) {
	self := s.self()
	if rej := checkRequest(p, s.clock.Now(), self); rej != nil {
		return nil, rej
	}
	switch p.Destination {
	case ControlDestination:
		req, err := ParseControlRequest(p.Data)
		if err != nil {
			return nil, ilp.Rejectf(ilp.CodeBadRequest, self, "%v", err)
		}
		return s.handleControl(id, req)
	case UpdateDestination:
		req, err := ParseUpdateRequest(p.Data)
		if err != nil {
			return nil, ilp.Rejectf(ilp.CodeBadRequest, self, "%v", err)
		}
		return s.handleUpdate(id, req)
	}
	return nil, ilp.Rejectf(ilp.CodeUnreachable, self, "%s is not a CCP address (peer.route.control, peer.route.update)", p.Destination)
}

func (s *Speaker) self() ilp.Address {
	if a := s.host.Address(); a != "" {
		return a
	}
	return "local.unknown"
}

func (s *Speaker) handleControl(id string, req *ControlRequest) (*ilp.Fulfill, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, s.stoppedReject(ControlDestination)
	}
	p := s.peers[id]
	if p == nil || p.send == nil {
		return nil, ilp.Rejectf(ilp.CodeBadRequest, s.self(),
			"this connector sends no routes to account %s (sendRoutes is false, or the account is a child)", id)
	}
	if p.send.mode != req.Mode {
		s.log.Debug("peer changed route sync mode", "account", id, "mode", req.Mode)
	}
	p.send.mode = req.Mode
	p.send.lastKnownEpoch = 0
	if req.LastKnownRoutingTableID == s.tableID && req.LastKnownEpoch <= s.epoch {
		if req.LastKnownEpoch < s.floor {
			// It missed withdrawals we no longer hold: the whole table again (dropWithdrawals).
			s.log.Info("peer is further behind than the withdrawals kept; sending it the whole routing table",
				"account", id, "epoch", req.LastKnownEpoch, "floor", s.floor)
		} else {
			p.send.lastKnownEpoch = req.LastKnownEpoch
		}
	}
	p.send.failures, p.send.full = 0, false
	p.send.generation++ // an update already on the wire must not roll this back
	s.resyncIfRestarted(p, req)
	s.signal()
	return Fulfill(), nil
}

// resyncIfRestarted asks p for its routes again when its control shows that it no longer knows
// our table although we hold one of its own: it has restarted (or lost its CCP state), so its
// new sender is IDLE towards us and would stay so until our hold-down expired. Its link may
// have dropped and come back between two Ticks, where Tick cannot see it.
func (s *Speaker) resyncIfRestarted(p *peer, req *ControlRequest) {
	r := p.recv
	if r == nil || req.Mode != ModeSync || req.LastKnownRoutingTableID == s.tableID || r.tableID == (TableID{}) || r.needControl {
		return
	}
	s.log.Debug("peer lost our routing table; asking it for its routes again", "account", p.id)
	r.needControl, r.nextControl, r.controlFailures = true, s.clock.Now(), 0
}

func (s *Speaker) stoppedReject(dest ilp.Address) *ilp.Reject {
	return ilp.Rejectf(ilp.CodeBadRequest, s.self(), "route broadcasting was turned off on this connector; %s is ignored", dest)
}

func (s *Speaker) handleUpdate(id string, u *UpdateRequest) (*ilp.Fulfill, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, s.stoppedReject(UpdateDestination)
	}
	p := s.peers[id]
	if p == nil || p.recv == nil {
		return nil, ilp.Rejectf(ilp.CodeBadRequest, s.self(),
			"this connector takes no routes from account %s (receiveRoutes is false, or the account is a child)", id)
	}
	cfg := s.host.Config()
	global, _ := routing.GlobalPrefix(cfg.Env)
	res := p.recv.update(u, s.clock.Now(), cfg.RouteExpiry, string(s.host.Address()), global)
	s.logRefusals(p)
	if res.gap {
		s.log.Debug("epoch gap in route update; asking for a resync", "account", id,
			"from", u.FromEpochIndex, "known", p.recv.epoch)
		s.signal()
	}
	if res.changed {
		s.rebuildLocked(false)
	}
	return Fulfill(), nil
}

// refusalLogInterval is the least time between two logs of the routes refused from one peer.
const refusalLogInterval = time.Minute

// logRefusals logs the routes refused from p (too long a path, too many routes) at most once
// per refusalLogInterval, with the count since the last log.
func (s *Speaker) logRefusals(p *peer) {
	r := p.recv
	now := s.clock.Now()
	if r.refused == 0 || (!r.lastRefusalLog.IsZero() && now.Sub(r.lastRefusalLog) < refusalLogInterval) {
		return
	}
	s.log.Warn("refused routes from a peer", "account", p.id, "count", r.refused, "last reason", r.lastRefusal)
	r.refused, r.lastRefusalLog = 0, now
}

// Run sends route controls and updates, heartbeats, and withdraws the routes of peers that
// are gone or silent, until ctx is done. It then waits for the requests on the wire.
func (s *Speaker) Run(ctx context.Context) {
	defer s.sends.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		next := s.Tick(ctx)
		d := max(next.Sub(s.clock.Now()), 10*time.Millisecond)
		timer.Reset(d)
	}
}

// Tick does what is due at the clock's now: expire routes, send controls and updates. The
// requests go out on their own goroutines. It returns when it next has something to do.
// Run calls it; tests call it with a fake clock and then Wait.
func (s *Speaker) Tick(ctx context.Context) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	cfg := s.host.Config()
	next := now.Add(cfg.RouteCleanupInterval)
	changed := false
	for _, p := range s.peers {
		connected := s.host.Connected(p.id)
		if p.recv != nil {
			if p.recv.check(now, connected) {
				s.log.Info("withdrawing the routes of a peer that disconnected or stopped sending heartbeats", "account", p.id)
				changed = true
			}
			if at, ok := p.recv.controlDue(now, connected); ok {
				s.sendControl(ctx, p)
			} else if !at.IsZero() && at.Before(next) {
				next = at
			}
		}
		if p.send != nil && connected && s.host.Address() != "" {
			at, due := p.send.due(now, s.epoch, cfg.RouteBroadcastInterval)
			if due {
				s.sendUpdate(ctx, p, cfg)
			} else if !at.IsZero() && at.Before(next) {
				next = at
			}
		}
	}
	if changed {
		s.rebuildLocked(false)
	}
	return next
}

// Wait waits for the requests Tick sent.
func (s *Speaker) Wait() { s.sends.Wait() }

func (s *Speaker) sendControl(ctx context.Context, p *peer) {
	r := p.recv
	r.controlInFlight = true
	req := &ControlRequest{Mode: ModeSync, LastKnownRoutingTableID: r.tableID, LastKnownEpoch: r.epoch}
	prep := ControlPrepare(req, s.clock.Now().Add(RequestExpiry))
	s.sends.Go(func() {
		err := s.send(ctx, p.id, prep)
		s.mu.Lock()
		defer s.mu.Unlock()
		r.controlDone(s.clock.Now(), err)
		if err != nil {
			s.log.Debug("route control failed; retrying later", "account", p.id, "error", err)
		}
	})
}

func (s *Speaker) sendUpdate(ctx context.Context, p *peer, cfg *config.Config) {
	snd := p.send
	from := snd.lastKnownEpoch
	if snd.full {
		// We dropped withdrawals it had not acknowledged (dropWithdrawals).
		s.log.Info("peer fell further behind than the withdrawals kept; sending it the whole routing table",
			"account", p.id, "epoch", from, "floor", s.floor)
		from, snd.full = 0, false
	}
	u := s.buildUpdate(p, from, uint32(cfg.RouteExpiry.Milliseconds()))
	to := u.ToEpochIndex
	prep := UpdatePrepare(u, s.clock.Now().Add(RequestExpiry))
	// Optimistic, as JS: the next update starts at to; a failure rolls it back.
	snd.lastKnownEpoch, snd.inFlight, snd.inFlightFrom, snd.lastSend = to, true, from, s.clock.Now()
	gen := snd.generation
	s.sends.Go(func() {
		err := s.send(ctx, p.id, prep)
		s.mu.Lock()
		defer s.mu.Unlock()
		snd.inFlight = false
		if err == nil {
			snd.failures = 0
			s.dropWithdrawals() // what it acknowledged may be the last that held some
			return
		}
		snd.failures++
		if snd.generation == gen && snd.lastKnownEpoch == to {
			snd.lastKnownEpoch = from
		}
		s.log.Debug("route update failed; retrying later", "account", p.id, "error", err)
	})
}

// countSlack is what the two route counts of an update may grow by as routes are added
// (a count under 65536 takes at most 3 bytes, 1 when it is 0).
const countSlack = 2 * 2

// buildUpdate is the update to p from epoch from: as many log entries as fit, at most
// maxChangesPerUpdate (the epochs of superseded entries between them carry nothing and are
// spanned too), and no more than the data of one ILP Prepare (ilp.MaxDataSize) once
// encoded; the next update starts where it stops. An entry always fits on its own: learned
// paths are bounded (MaxPathBytes), and should a route still be too large to send, its prefix
// is sent as withdrawn instead (the peer then does not route it through us, which is safe),
// so that one entry can never hold up the sender. Each entry is shown as p may see it: a
// route whose next hop is p itself is withdrawn (never advertise a route back to where it
// came from), and a parent gets no route learned from a peer or another parent (Gao-Rexford).
func (s *Speaker) buildUpdate(p *peer, from, hold uint32) *UpdateRequest {
	u := &UpdateRequest{RoutingTableID: s.tableID, CurrentEpochIndex: s.epoch, FromEpochIndex: from, ToEpochIndex: from,
		HoldDownTime: hold, Speaker: string(s.host.Address())}
	head, _ := u.AppendBinary(nil)
	size := len(head) + countSlack
	u.ToEpochIndex = s.epoch
	i, _ := slices.BinarySearchFunc(s.log_, from, func(e *logEntry, epoch uint32) int { return cmp.Compare(e.epoch, epoch) })
	for entries := 0; i < len(s.log_); i++ {
		e := s.log_[i]
		if e.superseded {
			continue
		}
		if entries == maxChangesPerUpdate {
			u.ToEpochIndex = e.epoch // the next update starts with it
			break
		}
		n, ok := s.addEntry(u, e, p, ilp.MaxDataSize-size)
		if !ok {
			u.ToEpochIndex = e.epoch
			break
		}
		size += n
		entries++
	}
	return u
}

// addEntry adds log entry e to u if it takes at most room bytes, and returns its size.
func (s *Speaker) addEntry(u *UpdateRequest, e *logEntry, p *peer, room int) (int, bool) {
	withdrawn := ilp.LengthSize(len(e.prefix)) + len(e.prefix)
	if e.route != nil && e.route.nextHop != p.id && exportable(p.relation, e.route) {
		rt := Route{Prefix: e.prefix, Path: e.route.path, Auth: e.route.auth}
		n := len(appendRoute(nil, &rt))
		switch {
		case n <= room:
			u.NewRoutes = append(u.NewRoutes, rt)
			return n, true
		case e.epoch > u.FromEpochIndex:
			return 0, false // the next update starts with it
		}
		s.log.Warn("route too large for a route update; advertised as withdrawn", "prefix", e.prefix, "account", p.id, "bytes", n)
	}
	if withdrawn > room {
		return 0, false
	}
	u.WithdrawnRoutes = append(u.WithdrawnRoutes, e.prefix)
	return withdrawn, true
}

// exportable reports whether route f may be advertised to a peer of relation to: a parent
// gets no route through a peer or another parent. The relation is the one f was logged with,
// so that a change of relation is a new log entry (rebuildLocked) that every peer gets.
func exportable(to config.Relation, f *fwdRoute) bool {
	if to != config.RelationParent || f.nextHop == "" {
		return true
	}
	return f.relation != config.RelationParent && f.relation != config.RelationPeer
}

// send sends one CCP request and checks that it was fulfilled.
func (s *Speaker) send(ctx context.Context, id string, p *ilp.Prepare) error {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	f, err := s.host.SendPeer(ctx, id, p)
	if err != nil {
		return err
	}
	if f == nil || f.Fulfillment != ilp.PeerFulfillment {
		return fmt.Errorf("%w: %s answered with a wrong fulfillment", ErrNotFulfilled, p.Destination)
	}
	return nil
}
