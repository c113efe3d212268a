package connector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/rates"
	"github.com/ilpfleet/ilpfleet/runtime/routing"
)

// restartGlobals are settings a running connector cannot change: its identity and its store.
var restartGlobals = []string{"env", "ilpAddress", "ilpAddressInheritFrom", "store", "storePath", "storeConfig"}

// laterGlobals are settings read once: the admin API's by the command at process start, the
// settlement API's when it is first bound. Apply accepts a change of them and says in the log
// whether it waits for a restart (see restartPending).
var laterGlobals = []string{"adminApi", "adminApiHost", "adminApiPort", "collectDefaultMetrics", "settlementApiHost", "settlementApiPort"}

// logLaterGlobals says, for each setting read once that changed, whether its new value
// waits for a restart or is the one in force again (a change taken back needs none).
func (c *Connector) logLaterGlobals(changed []string, cfg *config.Config) {
	pending := c.restartPending(cfg)
	for _, g := range changed {
		switch {
		case slices.Contains(pending, g):
			c.log.Warn("setting takes effect at the next restart", "setting", g)
		case strings.HasPrefix(g, "settlementApi") && c.settleAPI.srv == nil:
			c.log.Info("setting takes effect when the settlement API first serves (an account with an engine)", "setting", g)
		case slices.Contains(laterGlobals, g):
			c.log.Info("setting is back to the value in force; no restart needed for it", "setting", g)
		}
	}
}

// restartPending lists the settings of cfg read once whose value differs from the one in
// force: the admin API's from the config Start ran with, the settlement API's from the
// config it was bound with (none while it is not bound: the first config that needs it
// binds it, with its own values).
func (c *Connector) restartPending(cfg *config.Config) []string {
	in := c.startCfg
	differs := map[string]bool{
		"adminApi":              cfg.AdminAPI != in.AdminAPI,
		"adminApiHost":          cfg.AdminAPIHost != in.AdminAPIHost,
		"adminApiPort":          cfg.AdminAPIPort != in.AdminAPIPort,
		"collectDefaultMetrics": cfg.CollectDefaultMetrics != in.CollectDefaultMetrics,
	}
	if b := c.settleAPI; b.srv != nil {
		differs["settlementApiHost"] = cfg.SettlementAPIHost != b.host
		differs["settlementApiPort"] = cfg.SettlementAPIPort != b.port
	}
	var out []string
	for _, g := range laterGlobals {
		if differs[g] {
			out = append(out, g)
		}
	}
	return out
}

// plan is everything a new config needs, built before anything running is touched.
type plan struct {
	cfg       *config.Config
	settings  *settings
	table     *routing.Table
	added     []*account          // new accounts, links not started
	reconnect []*account          // new objects for accounts whose link changed
	repiped   map[*account]*pipes // kept accounts with their new pipelines
	renewed   []renewal           // kept accounts whose listener takes new TLS material in place
	removed   []*account          // accounts to drain and close
	running   map[string]*account // the map the plan was made against
}

// Apply puts cfg in force as a diff against the running config (docs/configuration.md,
// "Reloading"): added accounts are connected, removed ones drained then closed, accounts whose
// link changed reconnected (but for a listener's new certificate or key, which its link takes
// in place, its peers staying connected: renewal), and everything else — limits, middleware
// settings, routes, rates, spread, expiry windows — swapped atomically while packets flow.
// A cfg that fails Validate, changes a setting that needs a restart, or whose accounts cannot
// be built or started is refused with an error and the running config stays in force; when
// only the links of added accounts could not start, the error is a *LinkStartError naming
// them. Apply must follow Start.
//
// Added accounts start before removed ones close, so that a refusal changes nothing; an added
// server that takes over the port of a removed one therefore needs two reloads (remove, then
// add). A reconnected account's new link starts once its old one and any other old link on a
// clashing port are closed (ports may be reused or swapped); if the new one then fails to start, that account stays unreachable and the error is
// logged, since the rest of the config is already in force (DownLinks lists such accounts).
func (c *Connector) Apply(ctx context.Context, cfg *config.Config) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	if c.closed || !c.started {
		return errors.New("connector: Apply needs a started, open connector")
	}
	if cfg == nil {
		return errors.New("connector: config is nil")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("connector: invalid config, keeping the running one: %w", err)
	}
	old := c.settings.Load().cfg
	ch := config.Diff(old, cfg)
	if ch.Empty() {
		return nil
	}
	for _, g := range ch.Globals {
		if slices.Contains(restartGlobals, g) {
			return fmt.Errorf("connector: %s cannot change while the connector runs (restart it); keeping the running config", g)
		}
	}
	c.logLaterGlobals(ch.Globals, cfg)
	p, err := c.plan(cfg, ch)
	if err != nil {
		return fmt.Errorf("connector: cannot apply the new config, keeping the running one: %w", err)
	}
	sp := c.speaker()
	if sp != nil {
		for _, a := range p.added { // their peers may ask for routes as soon as the links are up
			sp.Expect(a.id, a.pipes.Load().cfg)
		}
	}
	// Bound before anything is in force (see syncSettlement). If a start below then fails, the
	// API stays listening: fine, it is kept until Close and the next config would need it.
	err = c.serveSettlementAPI(cfg)
	if err == nil {
		for _, a := range p.added { // their packets may come as soon as the links are up
			a.pipes.Load().activate()
		}
		err = c.startLinks(ctx, p.added, reloadConnectWait(cfg))
	}
	if err != nil {
		p.discard(c)
		if sp != nil {
			sp.Reload() // forgets the accounts expected above
		}
		return fmt.Errorf("connector: cannot apply the new config, keeping the running one: %w", err)
	}
	c.commit(ctx, p)
	if err := c.settler.Update(settlementAccounts(cfg)); err != nil {
		c.log.Error("settlement not in force for the new config", "error", err)
	}
	c.log.Info("config applied", "added", ch.Added, "removed", ch.Removed, "changed", len(ch.Changed), "globals", ch.Globals)
	return nil
}

// plan builds the new settings, accounts, pipelines and routing table. It changes nothing: the
// pipelines' limits and metric series take effect when they are activated (pipes.activate),
// the added accounts' before their links start, the others' in commit.
func (c *Connector) plan(cfg *config.Config, ch config.Changes) (*plan, error) {
	s, err := newSettings(cfg)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(ch.Globals, "backend") && !slices.Contains(ch.Globals, "backendConfig") {
		_ = rates.Close(s.conv.Backend())
		s.conv = c.settings.Load().conv // keep its rate cache (and the ecb backend's rates)
	}
	p := &plan{cfg: cfg, settings: s, repiped: map[*account]*pipes{}, running: *c.accounts.Load()}
	if p.table, err = routing.FromConfig(cfg, string(c.self()), c.learnedRoutes(cfg)...); err != nil {
		return nil, fmt.Errorf("routing table: %w", err)
	}
	reconnect, changed, renewTLS := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, chg := range ch.Changed {
		reconnect[chg.ID], changed[chg.ID], renewTLS[chg.ID] = chg.Reconnect, true, chg.RenewTLS
	}
	allPipes := slices.Contains(ch.Globals, "disableMiddleware")
	fail := func(err error) (*plan, error) { p.discard(c); return nil, err }
	for _, id := range ch.Added {
		a, err := c.newAccount(id, cfg.Accounts[id], cfg)
		if err != nil {
			return fail(err)
		}
		p.added = append(p.added, a)
	}
	for id, a := range p.running {
		ac, keep := cfg.Accounts[id]
		if keep && !reconnect[id] && renewTLS[id] {
			r, ok, err := c.planRenewal(a, ac)
			if err != nil {
				return fail(err)
			}
			if ok {
				p.renewed = append(p.renewed, r)
			} else {
				reconnect[id] = true
			}
		}
		switch {
		case !keep:
			p.removed = append(p.removed, a)
		case reconnect[id]:
			na, err := c.newAccount(id, ac, cfg)
			if err != nil {
				return fail(err)
			}
			p.reconnect = append(p.reconnect, na)
		case changed[id] || allPipes:
			np, err := c.buildPipes(a, ac, cfg)
			if err != nil {
				return fail(err)
			}
			p.repiped[a] = np
		}
	}
	return p, nil
}

// discard closes the links a plan built (none of them was started by the connector, or
// their start failed), and drops the middleware state and metric series of the added accounts,
// which no running pipeline uses. The kept accounts' pipelines were built but never activated,
// so their limits and series are the running ones still.
func (p *plan) discard(c *Connector) {
	for _, a := range slices.Concat(p.added, p.reconnect) {
		_ = a.close(context.Background())
	}
	for _, a := range p.added {
		c.forget(a.id)
	}
	if p.settings.conv != c.settings.Load().conv {
		_ = rates.Close(p.settings.conv.Backend())
	}
}

// forget drops what the connector keeps of an account beyond its objects: middleware state and
// metric series. (Not the Request-Ids of an ILP-over-HTTP peer: an account added back must
// still know the retries of the Prepares it took; its link's Close empties them once expired.)
func (c *Connector) forget(id string) {
	c.state.Forget(id)
	c.metrics.Forget(id)
}

// commit swaps the plan in. Order matters for packets in flight: new accounts become reachable
// before routes point at them; removed accounts lose their routes before they are drained.
func (c *Connector) commit(ctx context.Context, p *plan) {
	next := maps.Clone(p.running)
	for _, a := range p.added {
		next[a.id] = a
	}
	c.accounts.Store(&next)
	for a, np := range p.repiped {
		np.activate() // first: the new pipeline's buckets are configured before its first packet
		a.pipes.Store(np)
	}
	for _, r := range p.renewed {
		r.running.Renew(r.next)
	}
	for _, na := range p.reconnect { // their links start in relink
		na.pipes.Load().activate()
	}
	if old := c.settings.Swap(p.settings); old.conv != p.settings.conv {
		// Packets in flight may still convert with the old backend: its Close keeps its rates.
		_ = rates.Close(old.conv.Backend())
		rates.Prefetch(p.settings.conv.Backend())
	}
	c.table.Store(p.table)
	c.syncCCP() // rebuilds the table with the routes learned meanwhile, and advertises the change
	if !p.cfg.RouteBroadcastEnabled {
		// The Speaker syncCCP stopped may have handled an update after the Store above and put
		// its own table, with the learned routes, in force. p.table has none (learnedRoutes).
		c.table.Store(p.table)
	}

	c.relink(ctx, p)
	final := maps.Clone(*c.accounts.Load())
	c.downMu.Lock()
	for _, a := range p.removed {
		delete(final, a.id)
		delete(c.down, a.id)
	}
	c.downMu.Unlock()
	for _, na := range p.reconnect {
		final[na.id] = na
	}
	c.accounts.Store(&final)
}

// relink drains and closes the removed accounts and the old links of the reconnected ones,
// and starts each new link once the old links it could clash with are closed: its own, and any
// other listening on an overlapping port (two accounts may swap ports, or one take a removed
// one's). A reconnected account waits for no other drain, so one slow packet elsewhere does not
// hold it down.
func (c *Connector) relink(ctx context.Context, p *plan) {
	type old struct {
		a    *account
		done chan struct{}
	}
	var olds []old
	var wg sync.WaitGroup
	for _, a := range p.removed {
		o := old{a, make(chan struct{})}
		olds = append(olds, o)
		wg.Go(func() {
			defer close(o.done)
			c.drain(ctx, a, p.settings.maxHold)
			c.forget(a.id)
		})
	}
	for _, na := range p.reconnect {
		o := old{p.running[na.id], make(chan struct{})}
		olds = append(olds, o)
		o.a.stopTaking(relinking)
		wg.Go(func() {
			defer close(o.done)
			c.drain(ctx, o.a, p.settings.maxHold)
		})
	}
	for _, na := range p.reconnect {
		newCfg := na.pipes.Load().cfg
		wg.Go(func() {
			for _, o := range olds {
				if o.a.id == na.id || config.ListenersOverlap(o.a.pipes.Load().cfg, newCfg) {
					<-o.done
				}
			}
			c.restart(context.WithoutCancel(ctx), na, p.cfg)
		})
	}
	wg.Wait()
}

// restart starts the new link of a reconnected account. It does not end with the Apply that
// asked for it: the old link is gone, and an account left without one stays unreachable. A
// link that fails to start is logged and left retrying (a client) or closed (a server): the
// config is valid, so the fault is outside the connector.
func (c *Connector) restart(ctx context.Context, na *account, cfg *config.Config) {
	err := c.startLink(ctx, na, reloadConnectWait(cfg))
	if err != nil {
		c.log.Error("reconnecting account failed; it stays unreachable until a config changes or removes it", "account", na.id, "error", err)
	}
	c.downMu.Lock()
	defer c.downMu.Unlock()
	if err == nil {
		delete(c.down, na.id)
		return
	}
	if c.down == nil {
		c.down = map[string]error{}
	}
	c.down[na.id] = err
}

// maxReloadConnectWait bounds how long a reload waits for a client link it adds or reconnects
// to connect. At start-up a client gets initialConnectTimeout (10 s by default), as in JS; a
// reload that waited as long for a peer that is down would hold every later change back (the
// reloads are serial), while a reachable peer connects in milliseconds. A client not
// connected by then goes on trying in the background, as after a start.
const maxReloadConnectWait = 2 * time.Second

func reloadConnectWait(cfg *config.Config) time.Duration {
	return min(cfg.InitialConnectTimeout, maxReloadConnectWait)
}

// DownLinks are the accounts in force whose link a config change reconnected (a new port,
// new credentials) and that could not start again, with the error: they stay unreachable
// until a config changes them again or removes them. Apply does not fail for them, since the
// rest of the config is in force; a source that can leave an account out (the Kubernetes one)
// asks after each Apply and does. nil when there are none.
func (c *Connector) DownLinks() map[string]error {
	c.downMu.Lock()
	defer c.downMu.Unlock()
	if len(c.down) == 0 {
		return nil
	}
	return maps.Clone(c.down)
}
