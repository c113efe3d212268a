// Package connector is the core of the connector runtime: it ties the accounts' links, their
// middleware pipelines, the routing table and the rate converter together, forwards packets
// between accounts, answers the peer protocols it knows (peer.config) and echo, and applies a
// new config as a diff without dropping packets in flight.
//
// The packet path takes no global lock: the accounts live in a copy-on-write map behind an
// atomic.Pointer, each account's pipelines behind another one, and the routing table and the
// global settings (spread, expiry windows, rates) behind their own. Apply builds new values
// beside the running ones and swaps them in.
package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ildcp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
	"github.com/ilpfleet/ilpfleet/runtime/rates"
	"github.com/ilpfleet/ilpfleet/runtime/routing"
	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// unknownAddress is the triggeredBy of Rejects made before IL-DCP has given the connector its
// address. The JS connector says "unknown", which is not a valid RFC 15 address and so could not
// be encoded in a Reject.
const unknownAddress ilp.Address = "local.unknown"

// Options are the parts of a Connector that do not come from the config.
type Options struct {
	Logger *slog.Logger // nil: discard
	// Registerer receives the packet metrics. nil: a private registry, see Gatherer.
	Registerer prometheus.Registerer
	Clock      middleware.Clock // nil: the real clock
	// Store overrides the store the config names (tests, or a store opened by the caller).
	// The connector does not close a store it was given.
	Store store.Store

	// newLink replaces the BTP links (tests of this package: in-memory links).
	newLink func(id string, ac config.Account) (link.Link, error)
}

// settings are the global values the packet path reads, swapped as one on Apply.
type settings struct {
	cfg       *config.Config
	env       string
	spread    decimal.Decimal
	minWindow time.Duration
	maxHold   time.Duration
	reflect   bool
	echo      bool
	conv      *rates.Converter
}

// Connector is one running ILP connector. Its methods are safe for concurrent use.
type Connector struct {
	log      *slog.Logger
	clock    middleware.Clock
	store    store.Store
	ownStore bool
	metrics  *middleware.Metrics
	gatherer prometheus.Gatherer
	state    *middleware.State
	// requestIDs are the async Request-Ids each ILP-over-HTTP account's peer used
	// (*ilphttp.RequestIDs by account id): they outlive the account's links, so that a retry
	// reaching the link of a reconnect, or of the account added back, is a repeat. A link's
	// Close empties them once expired; the (empty) set of an account id stays.
	requestIDs sync.Map
	alerts     *middleware.Alerts
	// life is the parent of the accounts' lives (packetContext). Each account's close ends its
	// own life, so ending this one (Close, New's failure) is only a backstop for an account
	// that escaped its close.
	life    context.Context
	endLife context.CancelFunc

	address  atomic.Pointer[ilp.Address]
	settings atomic.Pointer[settings]
	table    atomic.Pointer[routing.Table]
	accounts atomic.Pointer[map[string]*account]

	newLink func(id string, ac config.Account) (link.Link, error)

	routes    ccpState // CCP route exchange (ccp.go)
	settler   *settlement.Settler
	settleAPI settlementAPI // settlement.go
	applyMu   sync.Mutex    // serializes Start, Apply and Close
	started   bool
	closed    bool
	startCfg  *config.Config // the config Start ran with: the command read the admin API's from it

	// down are the accounts in force whose link a config change reconnected and that could
	// not start again (DownLinks).
	downMu sync.Mutex
	down   map[string]error
}

// New checks cfg and builds the connector's accounts, links and pipelines. It connects nothing:
// see Start.
func New(cfg *config.Config, opts Options) (*Connector, error) {
	if cfg == nil {
		return nil, errors.New("connector: config is nil")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("connector: invalid config: %w", err)
	}
	c := &Connector{log: opts.Logger, clock: opts.Clock, store: opts.Store,
		state: middleware.NewState(), newLink: opts.newLink}
	c.life, c.endLife = context.WithCancel(context.Background())
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = middleware.RealClock{}
	}
	c.alerts = middleware.NewAlerts(c.clock)
	if c.store == nil {
		st, err := openStore(cfg, c.log)
		if err != nil {
			return nil, err
		}
		c.store, c.ownStore = st, true
	}
	built := false
	defer func() {
		if !built && c.ownStore {
			_ = c.store.Close() // release the file lock or the Redis connections
		}
		if !built {
			c.endLife()
		}
	}()
	reg := opts.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, c.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		c.gatherer = g
	}
	m, err := middleware.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("connector: metrics: %w", err)
	}
	c.metrics = m
	if _, shared := c.store.(*store.Redis); shared {
		m.ReadBalancesOnScrape(c.store) // other replicas move the balances too
	}
	sm, err := settlement.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("connector: metrics: %w", err)
	}
	for _, col := range []prometheus.Collector{newRatesAge(c), newAccountsConnected(c)} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("connector: metrics: %w", err)
		}
	}
	c.settler = c.newSettler(sm)
	s, err := newSettings(cfg)
	if err != nil {
		return nil, err
	}
	c.settings.Store(s)
	if cfg.ILPAddress != "" {
		a := ilp.Address(cfg.ILPAddress)
		c.address.Store(&a)
	}
	c.table.Store(routing.NewBuilder().Build())
	accts := make(map[string]*account, len(cfg.Accounts))
	for id, ac := range cfg.Accounts {
		a, err := c.newAccount(id, ac, cfg)
		if err != nil {
			c.closeAccounts(accts)
			return nil, err
		}
		a.pipes.Load().activate()
		accts[id] = a
	}
	c.accounts.Store(&accts)
	built = true
	return c, nil
}

func newSettings(cfg *config.Config) (*settings, error) {
	b, err := rates.New(cfg.Backend, cfg.BackendConfig)
	if err != nil {
		return nil, fmt.Errorf("connector: backend: %w", err)
	}
	echo := true
	for _, n := range cfg.DisableMiddleware {
		if n == middleware.NameEcho {
			echo = false
		}
	}
	return &settings{cfg: cfg, env: cfg.Env, spread: cfg.Spread, minWindow: cfg.MinMessageWindow,
		maxHold: cfg.MaxHoldTime, reflect: cfg.ReflectPayments, echo: echo, conv: rates.NewConverter(b)}, nil
}

// Address is the connector's ILP address, or "" before IL-DCP has answered.
func (c *Connector) Address() ilp.Address {
	if a := c.address.Load(); a != nil {
		return *a
	}
	return ""
}

// self is the address for triggeredBy: never empty.
func (c *Connector) self() ilp.Address {
	if a := c.address.Load(); a != nil {
		return *a
	}
	return unknownAddress
}

// Config is the config in force.
func (c *Connector) Config() *config.Config { return c.settings.Load().cfg }

// Gatherer gathers the connector's metrics: the private registry, or Options.Registerer when
// it is also a Gatherer; nil otherwise.
func (c *Connector) Gatherer() prometheus.Gatherer { return c.gatherer }

// Start connects every account's link. When the address is inherited, it first connects the
// parent and asks it over IL-DCP. Each link gets CONNECTOR_INITIAL_CONNECT_TIMEOUT to connect;
// a client that is not connected by then keeps trying in the background (as in JS, which logs
// and goes on), while a server that cannot listen fails Start (a *LinkStartError naming the
// accounts when nothing else failed).
func (c *Connector) Start(ctx context.Context) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	if c.started || c.closed {
		return errors.New("connector: Start called twice or after Close")
	}
	s := c.settings.Load()
	rates.Prefetch(s.conv.Backend()) // while the links connect
	accts := *c.accounts.Load()
	started := map[string]bool{}
	if c.address.Load() == nil {
		parent := s.cfg.InheritFrom()
		a := accts[parent]
		if a == nil {
			return fmt.Errorf("connector: no ilpAddress and no parent account %q to inherit it from", parent)
		}
		if err := c.startLink(ctx, a, s.cfg.InitialConnectTimeout); err != nil {
			return linkErrors(ctx, []*account{a}, []error{err})
		}
		started[parent] = true
		if err := c.inheritAddress(ctx, a, s.cfg.InitialConnectTimeout); err != nil {
			c.closeAccounts(accts)
			return err
		}
	}
	t, err := routing.FromConfig(s.cfg, string(c.self()))
	if err != nil {
		c.closeAccounts(accts)
		return fmt.Errorf("connector: routing table: %w", err)
	}
	c.table.Store(t)
	// The Speaker runs before the links start: a peer may send peer.route.control as soon as
	// its link is up, and the JS ccp-receiver asks again only 30 s after a reject.
	c.syncCCP()
	var todo []*account
	for id, a := range accts {
		if !started[id] {
			todo = append(todo, a)
		}
	}
	if err := c.startLinks(ctx, todo, s.cfg.InitialConnectTimeout); err != nil {
		c.stopCCP()
		c.closeAccounts(accts)
		return err
	}
	if err := c.syncSettlement(s.cfg); err != nil {
		c.stopCCP()
		c.closeAccounts(accts)
		return err
	}
	c.settler.Start(ctx)
	c.started, c.startCfg = true, s.cfg
	c.log.Info("connector started", "address", c.self(), "accounts", len(accts))
	return nil
}

// inheritAddress asks the parent for the connector's address over IL-DCP.
func (c *Connector) inheritAddress(ctx context.Context, parent *account, timeout time.Duration) error {
	fctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	const maxTries = 50 // bounded: the parent's link may come up a little after Start returns
	var err error
	for range maxTries {
		var info ildcp.Info
		info, err = ildcp.Fetch(fctx, parent.link.Send)
		if err == nil {
			a := info.Address
			if env := c.settings.Load().cfg.Env; ilp.CheckNetwork(a, env) != nil {
				// Test and live networks never mix (RFC 34), whoever gives the address; the
				// parent's answer will not change by asking again.
				return fmt.Errorf("connector: parent account %q gave the ILP address %s over IL-DCP, which is not an address of this connector's network (env %q): check the parent, or env", parent.id, a, env)
			}
			c.address.Store(&a)
			c.log.Info("inherited ILP address from parent", "parent", parent.id, "address", a)
			return nil
		}
		if fctx.Err() != nil {
			break
		}
		select {
		case <-fctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("connector: cannot get the ILP address from parent account %q over IL-DCP: %w", parent.id, err)
}

// startLinks starts links concurrently, each bounded by timeout. Only hard failures (a server
// that cannot listen, a context cancelled) are returned: a *LinkStartError naming the accounts
// when only their links failed, the plain errors when ctx ended (a stop is no account's fault).
func (c *Connector) startLinks(ctx context.Context, as []*account, timeout time.Duration) error {
	errs := make([]error, len(as))
	var wg sync.WaitGroup
	for i, a := range as {
		wg.Go(func() { errs[i] = c.startLink(ctx, a, timeout) })
	}
	wg.Wait()
	return linkErrors(ctx, as, errs)
}

// linkErrors gathers the start errors of as (errs, by index) into one error, nil for none.
func linkErrors(ctx context.Context, as []*account, errs []error) error {
	failed := map[string]error{}
	for i, err := range errs {
		if err != nil {
			failed[as[i].id] = err
		}
	}
	switch {
	case len(failed) == 0:
		return nil
	case ctx.Err() != nil:
		return errors.Join(errs...)
	}
	return &LinkStartError{Accounts: failed}
}

func (c *Connector) startLink(ctx context.Context, a *account, timeout time.Duration) error {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := a.link.Start(sctx, a.handle)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("connector: starting account %s: %w", a.id, ctx.Err())
	case a.isClient:
		// The client keeps reconnecting in the background; the packet path answers T01 meanwhile.
		c.log.Warn("account not connected yet; retrying in the background", "account", a.id, "error", err)
		return nil
	}
	return fmt.Errorf("connector: starting account %s: %w", a.id, err)
}

// closeAccounts closes accts at once, without a drain: New and Start use it to undo what they
// built when they fail.
func (c *Connector) closeAccounts(accts map[string]*account) {
	var wg sync.WaitGroup
	for _, a := range accts {
		wg.Go(func() { _ = a.close(context.Background()) })
	}
	wg.Wait()
}

// StoreFailed is closed when the store failed for good (store.Failer: another runtime took
// the Redis store's instance over), with the reason; never, for a store that cannot fail so.
// The process must then stop: every balance write is refused.
func (c *Connector) StoreFailed() (<-chan struct{}, func() error) {
	if f, ok := c.store.(store.Failer); ok {
		return f.Failed(), f.Err
	}
	return nil, func() error { return nil }
}

// Close stops accepting packets, waits for those in flight (until ctx is done, and at most the
// max hold time), and closes every account and the store the connector opened.
func (c *Connector) Close(ctx context.Context) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.stopCCP()
	accts := *c.accounts.Load()
	// All at once before any drain: a packet between two accounts is refused as a stop on
	// both sides, never as an account removed, which is final for its sender (F02).
	for _, a := range accts {
		a.stopTaking(stopping)
	}
	maxHold := c.settings.Load().maxHold
	var wg sync.WaitGroup
	for _, a := range accts {
		wg.Go(func() { c.drain(ctx, a, maxHold) })
	}
	wg.Wait()
	c.endLife()
	c.stopSettlement()
	_ = rates.Close(c.settings.Load().conv.Backend())
	if c.ownStore {
		return c.store.Close()
	}
	return nil
}
