// Package middleware is the connector's packet pipeline and its built-in middlewares, the Go
// counterparts of the JS connector's (ilp-connector v23), in its order except for deduplicate,
// which comes first on the outgoing side (a copy answered from its cache is not sent, so the
// next hop's balance and throughput must not count it):
//
//	incoming (source account):  errorHandler → rateLimit → maxPacketAmount → throughput →
//	                            balance → stats → (connector core: echo, peer.*, routing)
//	outgoing (next-hop account): deduplicate → throughput → balance → expire →
//	                            validateFulfillment → stats → alert → (link)
//
// A pipeline is composed once per account configuration, never per packet. State that must
// outlive a configuration change (token buckets, the dedupe cache, alerts) lives in a State
// shared by every Build, and balances live in the store; so a rebuilt pipeline that the
// connector swaps in atomically keeps counting where the old one stopped. Building changes
// nothing in force: the new limits and metric series take effect when the pipeline is
// activated (BuildPending, Pipelines.Activate), so a config that is built and then refused
// leaves the running pipelines as they were.
//
// Balance rules are DESIGN.md's, which differ from JS on purpose: the outgoing side reserves
// at Prepare time (T04 before forwarding), commits on Fulfill and releases on Reject; and a
// Fulfill from downstream always goes upstream, even when the store fails.
package middleware

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// Names of the built-in middlewares, as CONNECTOR_DISABLE_MIDDLEWARE spells them.
const (
	NameErrorHandler        = "errorHandler"
	NameRateLimit           = "rateLimit"
	NameMaxPacketAmount     = "maxPacketAmount"
	NameThroughput          = "throughput"
	NameBalance             = "balance"
	NameDeduplicate         = "deduplicate"
	NameExpire              = "expire"
	NameValidateFulfillment = "validateFulfillment"
	NameStats               = "stats"
	NameAlert               = "alert"
	// NameEcho is accepted in the disable list for JS compatibility; echo lives in the
	// connector core, which reads the list itself.
	NameEcho = "echo"
)

// Builtins lists every name Build accepts in its disabled list.
var Builtins = []string{
	NameErrorHandler, NameRateLimit, NameMaxPacketAmount, NameThroughput, NameBalance,
	NameDeduplicate, NameExpire, NameValidateFulfillment, NameStats, NameAlert, NameEcho,
}

// Middleware is one named stage: it wraps the rest of the pipeline.
type Middleware struct {
	Name string
	Wrap func(next ilp.Handler) ilp.Handler
}

// Chain composes mws, first = outermost, into one wrapper.
func Chain(mws []Middleware) func(ilp.Handler) ilp.Handler {
	return func(h ilp.Handler) ilp.Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i].Wrap(h)
		}
		return h
	}
}

// Clock tells the time; tests inject a fake one.
type Clock interface{ Now() time.Time }

// RealClock is the system clock, Env.Clock's default. The expire middleware recognises it:
// its deadlines, which run on the system clock, then reuse the time it read.
type RealClock struct{}

func (RealClock) Now() time.Time { return time.Now() }

// Env is what the built-ins need from the connector. Address and State are required; Store is
// required when an account has balance limits. Metrics and Alerts are optional: without them
// the stats and alert middlewares are left out.
type Env struct {
	Address func() ilp.Address // this connector's address, for triggeredBy
	Clock   Clock              // nil: RealClock
	Store   store.Balances
	State   *State // per-account runtime state that survives rebuilds; see NewState
	Metrics *Metrics
	Alerts  *Alerts
	Log     *slog.Logger // nil: discard
	// OnBalance, when set, is called after every committed balance change (incoming Prepare,
	// refund, outgoing Fulfill), e.g. to trigger settlement. It must not block.
	OnBalance func(account string, balance int64)
}

// Pipelines are one account's built middlewares.
type Pipelines struct {
	In  []Middleware // incoming: packets this account sends us
	Out []Middleware // outgoing: packets we send this account

	activate func()
}

// Activate puts the pipelines' settings in force in the shared State and Metrics: the token
// bucket limits and the account's metric series (replacing those of another asset). Call it
// when the pipelines go into service, before their first packet: until then their buckets may
// refuse everything and their stats have nowhere to count. Calling it again is harmless.
func (p *Pipelines) Activate() { p.activate() }

// Incoming wraps h (the connector core) with the incoming pipeline.
func (p *Pipelines) Incoming(h ilp.Handler) ilp.Handler { return Chain(p.In)(h) }

// Outgoing wraps h (the link's Send) with the outgoing pipeline.
func (p *Pipelines) Outgoing(h ilp.Handler) ilp.Handler { return Chain(p.Out)(h) }

// Build returns the incoming and outgoing pipeline wrappers of one account, activated. See
// BuildPipelines.
func Build(env Env, accountID string, acct config.Account, disabled []string) (incoming, outgoing func(ilp.Handler) ilp.Handler, err error) {
	p, err := BuildPipelines(env, accountID, acct, disabled)
	if err != nil {
		return nil, nil, err
	}
	return Chain(p.In), Chain(p.Out), nil
}

// BuildPipelines builds one account's middlewares and activates them at once: see
// BuildPending, for a caller that may discard them instead.
func BuildPipelines(env Env, accountID string, acct config.Account, disabled []string) (*Pipelines, error) {
	p, err := BuildPending(env, accountID, acct, disabled)
	if err != nil {
		return nil, err
	}
	p.Activate()
	return p, nil
}

// BuildPending builds one account's middlewares from its config, leaving out the disabled
// built-ins and those whose setting is absent (no balance limits: no balance middleware, as in
// JS). Unknown names in disabled are an error, so that a typo does not silently keep a
// middleware on. It changes nothing a running pipeline of the account uses: the limits and
// metric series take effect on Activate. Pipelines dropped unactivated need nothing undone,
// except State.Forget when the account has no running pipeline (Build made its empty state).
func BuildPending(env Env, accountID string, acct config.Account, disabled []string) (*Pipelines, error) {
	if err := checkDisabled(disabled); err != nil {
		return nil, err
	}
	b, err := newBuilder(env, accountID, acct, disabled)
	if err != nil {
		return nil, err
	}
	p := &Pipelines{In: b.incoming(), Out: b.outgoing()}
	p.activate = b.activate
	return p, nil
}

func checkDisabled(disabled []string) error {
	for _, n := range disabled {
		if !slices.Contains(Builtins, n) {
			return fmt.Errorf("middleware: unknown middleware %q in the disable list (known: %s)", n, strings.Join(Builtins, ", "))
		}
	}
	return nil
}

// builder holds what every middleware constructor of one Build needs.
type builder struct {
	env      Env
	id       string
	acct     config.Account
	disabled []string
	st       *accountState
	stats    *accountStats // nil without Metrics
	// onActivate puts the built limits in force in st (Pipelines.Activate).
	onActivate []func(now time.Time)
}

// activate runs when the pipelines go into service.
func (b *builder) activate() {
	now := b.env.Clock.Now()
	for _, f := range b.onActivate {
		f(now)
	}
	if b.stats == nil {
		return
	}
	if b.env.Metrics.activate(b.id, b.stats) {
		b.observeStoredBalance()
	}
	minimum, maximum := b.limits()
	b.env.Metrics.observeLimits(b.stats, minimum, maximum)
}

// limits are the balance limits the balance middleware enforces (nil: none).
func (b *builder) limits() (minimum, maximum *int64) {
	if b.acct.Balance == nil || !b.on(NameBalance) {
		return nil, nil
	}
	return b.acct.Balance.Minimum, b.acct.Balance.Maximum
}

// storedBalanceWait bounds the store read of observeStoredBalance.
const storedBalanceWait = 5 * time.Second

// observeStoredBalance sets a new balance gauge to the stored balance: with a persistent store
// (after a restart) or an asset change, it would read 0 until the account's next packet. A
// store that cannot answer leaves it so.
func (b *builder) observeStoredBalance() {
	if b.env.Store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storedBalanceWait)
	defer cancel()
	b.env.Metrics.ObserveStoredBalance(ctx, b.env.Store, b.id)
}

func newBuilder(env Env, id string, acct config.Account, disabled []string) (*builder, error) {
	if env.Address == nil {
		return nil, fmt.Errorf("middleware: Env.Address is required")
	}
	if env.State == nil {
		return nil, fmt.Errorf("middleware: Env.State is required")
	}
	if env.Clock == nil {
		env.Clock = RealClock{}
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	env.Log = env.Log.With("account", id)
	b := &builder{env: env, id: id, acct: acct, disabled: disabled, st: env.State.account(id)}
	if acct.Balance != nil && env.Store == nil && b.on(NameBalance) {
		return nil, fmt.Errorf("middleware: account %s has balance limits but Env.Store is nil", id)
	}
	if env.Metrics != nil {
		// Resolved here, before any packet runs, so the hot path only reads it.
		b.stats = env.Metrics.pendingStats(id, acct)
	}
	return b, nil
}

func (b *builder) on(name string) bool { return !slices.Contains(b.disabled, name) }

// metrics returns the account's cached metric children, or nil without Env.Metrics.
func (b *builder) metrics() *accountStats { return b.stats }

func (b *builder) incoming() []Middleware {
	var mws []Middleware
	add := func(name string, make func() func(ilp.Handler) ilp.Handler) {
		if !b.on(name) {
			return
		}
		if wrap := make(); wrap != nil {
			mws = append(mws, Middleware{Name: name, Wrap: wrap})
		}
	}
	add(NameErrorHandler, b.errorHandler)
	add(NameRateLimit, b.rateLimit)
	add(NameMaxPacketAmount, b.maxPacketAmount)
	add(NameThroughput, b.throughputIn)
	add(NameBalance, b.balanceIn)
	add(NameStats, b.statsIn)
	return mws
}

func (b *builder) outgoing() []Middleware {
	var mws []Middleware
	add := func(name string, make func() func(ilp.Handler) ilp.Handler) {
		if !b.on(name) {
			return
		}
		if wrap := make(); wrap != nil {
			mws = append(mws, Middleware{Name: name, Wrap: wrap})
		}
	}
	// Deduplicate first: a copy answered from the cache is not sent to the peer, so it must not
	// count against the peer's balance (the peer counts only what it received, and the two
	// books would drift apart by the copy's amount) nor against the outgoing throughput.
	add(NameDeduplicate, b.deduplicate)
	add(NameThroughput, b.throughputOut)
	add(NameBalance, b.balanceOut)
	add(NameExpire, b.expire)
	add(NameValidateFulfillment, b.validateFulfillment)
	add(NameStats, b.statsOut)
	add(NameAlert, b.alert)
	return mws
}

// reject builds a Reject triggered by this connector.
func (b *builder) reject(code ilp.ErrorCode, msg string) *ilp.Reject {
	return &ilp.Reject{Code: code, TriggeredBy: b.env.Address(), Message: msg}
}
