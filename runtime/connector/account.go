package connector

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/textcut"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
	"github.com/ilpfleet/ilpfleet/runtime/rates"
	"github.com/ilpfleet/ilpfleet/runtime/routing"
)

// account is one account with its link. The link and asset never change for an account
// object (a change of either is a reconnect, which makes a new object); the pipelines and
// limits do, swapped through pipes.
type account struct {
	id       string
	self     func() ilp.Address // the connector's address, for triggeredBy
	life     context.Context    // what its incoming packets are handled in (packetContext)
	endLife  context.CancelFunc // ends life: close
	link     link.Link
	isClient bool // a dialing link, which keeps retrying after a failed Start
	asset    rates.Asset
	pipes    atomic.Pointer[pipes]
	inflight atomic.Int64  // packets from or to this account being handled
	closing  atomic.Uint32 // a closeReason: once not open, no new packets
	// pctx is the last packet context made (packetContext), reused by the next packet that
	// comes with the same link context: a BTP connection hands all its packets one. It keeps
	// that link context referenced until another replaces it or the account is dropped.
	pctx atomic.Pointer[detachedCtx]
}

// closeReason is why an account takes no new packets. It chooses the Reject they get: an
// account removed by a reload is gone from this connector, while one drained because the
// connector stops is still configured here and will be back when it runs again.
type closeReason uint32

const (
	open      closeReason = iota
	removing              // a reload removed the account
	relinking             // a reload replaced the account's link (a changed secret, port, URL…)
	stopping              // the connector is shutting down (Close)
)

// pipes are an account's config and built pipelines, swapped as one.
type pipes struct {
	cfg config.Account
	in  ilp.Handler // incoming pipeline, ending in the connector core
	out ilp.Handler // outgoing pipeline, ending in the link
	// activate puts the pipelines' limits and metric series in force (middleware.Pipelines
	// .Activate): once the config they belong to is, and before their first packet.
	activate func()
}

// newAccount builds an account's link and pipelines; it connects nothing.
func (c *Connector) newAccount(id string, ac config.Account, cfg *config.Config) (*account, error) {
	a := &account{id: id, self: c.self, asset: rates.Asset{Code: ac.AssetCode, Scale: ac.AssetScale}}
	a.life, a.endLife = context.WithCancel(c.life)
	var err error
	switch {
	case c.newLink != nil:
		a.link, err = c.newLink(id, ac)
	case ac.Plugin == ilphttp.Plugin:
		a.link, err = c.httpLink(id, ac)
	default:
		a.link, a.isClient, err = c.btpLink(id, ac)
	}
	if err != nil {
		a.endLife()
		return nil, err
	}
	p, err := c.buildPipes(a, ac, cfg)
	if err != nil {
		_ = a.close(context.Background())
		return nil, err
	}
	a.pipes.Store(p)
	return a, nil
}

// btpLink builds the BTP link of an account from its JS plugin options, filling in what only
// the connector knows: its address, the account's address and asset for children, the logger.
func (c *Connector) btpLink(id string, ac config.Account) (l link.Link, isClient bool, err error) {
	opts, err := btp.ParseOptions(ac.Plugin, ac.Options)
	if err != nil {
		return nil, false, fmt.Errorf("connector: account %s: %w", id, err)
	}
	common := btp.Common{Address: c.self, Logger: c.log.With("account", id)}
	switch o := opts.(type) {
	case *btp.ClientOptions:
		common.ResponseTimeout = o.ResponseTimeout
		o.Common = common
		isClient = true
	case *btp.PeerServerOptions:
		common.ResponseTimeout = o.ResponseTimeout
		o.Common = common
	case *btp.ChildServerOptions:
		o.Common = common
		o.AssetCode, o.AssetScale = ac.AssetCode, ac.AssetScale
		o.AccountAddress = func() ilp.Address { return ilp.Address(routing.ChildAddress(string(c.self()), id, ac)) }
		// The children's auth_username bindings live in the store with the balances: kept only
		// in memory, any token could take a child's account after a restart.
		o.Tokens = storeTokens{kv: c.store, account: id}
	}
	if l, err = btp.New(opts); err != nil {
		return nil, false, fmt.Errorf("connector: account %s: %w", id, err)
	}
	return l, isClient, nil
}

// httpLink builds the ILP-over-HTTP link of an account from its ilp-plugin-http options. It
// is never a dialing client: HTTP keeps no connection to retry, and a server that cannot
// listen is a hard error like a BTP listener's. Like a BTP link's address, its max hold time
// is read from the running settings when needed, not copied: maxHoldTime is swapped by Apply
// without a reconnect, and the link's Close must wait as long as the drain before it.
func (c *Connector) httpLink(id string, ac config.Account) (link.Link, error) {
	opts, err := ilphttp.ParseOptions(ac.Options)
	if err != nil {
		return nil, fmt.Errorf("connector: account %s: %w", id, err)
	}
	opts.Account, opts.Address, opts.Logger = id, c.self, c.log // the link names the account
	opts.CurrentMaxHold = func() time.Duration { return c.settings.Load().maxHold }
	ids, _ := c.requestIDs.LoadOrStore(id, &ilphttp.RequestIDs{})
	opts.RequestIDs = ids.(*ilphttp.RequestIDs)
	l, err := ilphttp.New(opts)
	if err != nil {
		return nil, fmt.Errorf("connector: account %s: %w", id, err)
	}
	return l, nil
}

// buildPipes builds an account's pipelines over the connector's shared State and store, so a
// rebuilt pipeline keeps the balances, token buckets and dedupe cache of the previous one.
// Building changes nothing the running pipelines use: see pipes.activate.
func (c *Connector) buildPipes(a *account, ac config.Account, cfg *config.Config) (*pipes, error) {
	env := middleware.Env{Address: c.self, Clock: c.clock, Store: c.store, State: c.state,
		Metrics: c.metrics, Alerts: c.alerts, Log: c.log, OnBalance: c.settler.BalanceChanged}
	mw, err := middleware.BuildPending(env, a.id, ac, cfg.DisableMiddleware)
	if err != nil {
		return nil, fmt.Errorf("connector: account %s: %w", a.id, err)
	}
	return &pipes{
		cfg: ac,
		in:  c.timed(c.scopePackets(a.id, mw.Incoming(func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) { return c.core(ctx, a, p) }))),
		out: mw.Outgoing(func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) { return c.send(ctx, a, p) }),

		activate: mw.Activate,
	}, nil
}

// timed records how long h takes to answer each packet (middleware.MetricIncomingDuration):
// the whole incoming path, the store's durable write at the packet's end included.
func (c *Connector) timed(h ilp.Handler) ilp.Handler {
	return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		start := c.clock.Now()
		f, err := h(ctx, p)
		c.metrics.ObserveDuration(c.clock.Now().Sub(start), f, err)
		return f, err
	}
}

// handle is the link's handler: every Prepare the account's peer sends.
func (a *account) handle(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if why := a.enter(); why != open {
		return nil, closedReject(a.self(), a.id, why, false, "")
	}
	defer a.inflight.Add(-1)
	f, err := a.pipes.Load().in(a.packetContext(ctx), p)
	return f, encodable(err)
}

// encodable is err with a Reject's message cut to what a Reject can carry (ilp.MaxMessageSize),
// between characters: a Reject that cannot be encoded would leave the sender with no answer at
// all until its packet expires. The messages the connector writes are short; one that quotes a
// peer (its error text) might not be, whatever the place that quotes it. A wrapped Reject is
// found as the links find it (errors.As), and answered cut, unwrapped.
func encodable(err error) error {
	var r *ilp.Reject
	if !errors.As(err, &r) || len(r.Message) <= ilp.MaxMessageSize {
		return err
	}
	cut := *r
	cut.Message = textcut.Cut(r.Message, ilp.MaxMessageSize)
	return &cut
}

// packetContext is packetContext(ctx, a.life), made once per link context instead of once
// per packet: a packet context holds no state of its own, so packets that arrive with the
// same link context can share one (and the expire middleware then shares its deadline context
// with no per-packet view either). Only a middleware.Comparable ctx is kept, so that comparing
// it with the next packet's ctx cannot panic.
func (a *account) packetContext(ctx context.Context) context.Context {
	if d := a.pctx.Load(); d != nil && d.values == ctx {
		return d
	}
	d := packetContext(ctx, a.life)
	if middleware.Comparable(ctx) {
		a.pctx.Store(d)
	}
	return d
}

// packetContext is the context a peer's Prepare is handled in: the values of the link's ctx
// (a store's packet scope, a BTP child's identity) but the account's life (a child of the
// connector's) instead of its cancellation. A link cancels ctx when the sender stops waiting
// (an ILP-over-HTTP request cancelled by a client disconnect or timeout): with it we would stop
// waiting for the next hop and release its reservation while the next hop may still fulfill,
// which it then counts paid and we do not. As in JS, the wait for the next hop is bounded by the
// packet's expiry (the expire middleware), and by the account's life, which ends when the
// account is closed: after its drain has let the packets in flight finish, or given up on them
// (max hold time, or the caller's deadline).
func packetContext(ctx, life context.Context) *detachedCtx {
	return &detachedCtx{Context: life, values: ctx}
}

// detachedCtx is a packetContext.
type detachedCtx struct {
	context.Context // the account's life: Deadline, Done, Err
	values          context.Context
}

// Value asks the account's life first: it has no values of its own, but it answers the
// context package's internal lookup of the nearest cancellable parent with itself, so that
// context.Cause and the contexts derived from this one (the expire middleware's deadlines)
// follow the account's life, registered on it as on a standard context, and the link's
// cancellation never shows through.
func (c *detachedCtx) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.values.Value(key)
}

// closedReject is the Reject of a Prepare that account id's peer sends (nextHop false) or
// that would leave through it to dest (nextHop true) once the account takes no more packets
// (why is not open). An account drained because the connector stops or its link is replaced
// is not gone, and the sender should retry (T01); a removed next hop is a route that is gone
// (F02, final).
func closedReject(self ilp.Address, id string, why closeReason, nextHop bool, dest ilp.Address) *ilp.Reject {
	switch why {
	case stopping:
		return shuttingDown(self)
	case relinking:
		return relinkingReject(self, id)
	}
	if nextHop {
		return ilp.Rejectf(ilp.CodeUnreachable, self, "no route to %s: next hop account %s is being removed", dest, id)
	}
	return ilp.Rejectf(ilp.CodePeerUnreachable, self, "account %s is being removed from this connector", id)
}

// relinkingReject is the Reject of a Prepare from or to an account whose link a reload is
// replacing: the account stays, on its new link in a moment, so the sender should retry (T01),
// where a removed next hop is final (F02).
func relinkingReject(self ilp.Address, id string) *ilp.Reject {
	return ilp.Rejectf(ilp.CodePeerUnreachable, self, "account %s is reconnecting after a configuration change; retry", id)
}

// shuttingDown is the Reject of a Prepare that arrives, or would leave, while the connector
// drains for a stop. T01 Peer Unreachable, not T00: RFC 27 keeps T00 Internal Error for an
// unexpected exception, usually a bug, and a requested stop is neither; nor T03 Connector Busy,
// which says overloaded and invites a retry here. To the peer that sent the Prepare we are a
// next hop it cannot use, which is what it will answer itself (T01) once our link is closed a
// moment later; like every T error it tells the sender to retry, and triggeredBy names us.
func shuttingDown(self ilp.Address) *ilp.Reject {
	return ilp.Rejectf(ilp.CodePeerUnreachable, self, "connector %s is shutting down; retry on another connector or later", self)
}

// enter counts a packet in flight unless the account is closing, and returns why it is
// (open: counted). The count is raised before closing is read, so drain, which sets closing
// before it reads the count, never misses it.
func (a *account) enter() closeReason {
	a.inflight.Add(1)
	if why := closeReason(a.closing.Load()); why != open {
		a.inflight.Add(-1)
		return why
	}
	return open
}

// stopTaking makes a refuse new packets for the reason why, unless it already does for
// another: Close marks every account stopping before it drains them.
func (a *account) stopTaking(why closeReason) {
	a.closing.CompareAndSwap(uint32(open), uint32(why))
}

// drain stops new packets from and to a (as removing, unless a reason was set before: see
// stopTaking), waits for those in flight (at most maxWait or until ctx is done), then closes
// the account.
func (c *Connector) drain(ctx context.Context, a *account, maxWait time.Duration) {
	a.stopTaking(removing)
	deadline := time.NewTimer(maxWait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for a.inflight.Load() > 0 {
		select {
		case <-tick.C:
			continue
		case <-deadline.C:
		case <-ctx.Done():
		}
		c.log.Warn("closing account with packets still in flight", "account", a.id, "inFlight", a.inflight.Load())
		break
	}
	if err := a.close(ctx); err != nil {
		c.log.Warn("closing account", "account", a.id, "error", err)
	}
}

// close ends the account's life, then closes its link: a packet still handled stops waiting
// for its next hop first, since a link's Close waits for its handlers. A link that can
// (link.ContextCloser) gives up on what it still owes its peer once ctx ends.
func (a *account) close(ctx context.Context) error {
	a.endLife()
	if cc, ok := a.link.(link.ContextCloser); ok {
		return cc.CloseContext(ctx)
	}
	return a.link.Close()
}
