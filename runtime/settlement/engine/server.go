package engine

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"
)

// Defaults of Config.
const (
	DefaultConnectorURL   = "http://127.0.0.1:7771"
	DefaultAddr           = "127.0.0.1:3000"
	DefaultRetryBase      = time.Second
	DefaultRequestTimeout = 30 * time.Second
)

// Config configures Start. Zero fields take the defaults, but AssetScale's.
type Config struct {
	// ConnectorURL is the connector's RFC 38 API for this engine (DefaultConnectorURL).
	ConnectorURL string
	// Addr is the listen address of the engine's API (DefaultAddr; ":0" picks a port).
	Addr string
	// AssetScale is the scale of the credits reported to the connector, rounded down (the
	// rest waits for the next credit): the assetScale of its accounts for this engine (a
	// lower one holds back more). Required: Start refuses 0 unless WholeUnits is set, because
	// a forgotten scale would round every credit down to whole units, silently.
	AssetScale uint8
	// WholeUnits says that an AssetScale of 0 is meant (the accounts count whole units).
	WholeUnits bool
	// Log receives the framework's log (slog.Default()).
	Log *slog.Logger
	// RetryBase and RetryMax shape the exponential backoff (DefaultRetryBase;
	// MaxRetryInterval, which RetryMax never exceeds) of every retry: credits the connector
	// did not acknowledge, and settlements whose Settle returned ErrNotSettled or
	// ErrOutcomeUnknown. Backoff, when set, replaces it; its waits are still capped at
	// RetryMax.
	RetryBase, RetryMax time.Duration
	Backoff             Backoff
	// RequestTimeout bounds each request to the connector, and each call of Settle (its
	// ctx's deadline) (DefaultRequestTimeout).
	RequestTimeout time.Duration
	// HTTPClient sends them (a client of its own).
	HTTPClient *http.Client
	// Registerer, when set, receives the framework's metrics (the Metric… constants): what
	// is queued to settle, attempts and their outcomes, Settles running, credits not yet
	// acknowledged by the connector, retries. The gauges of stored state are read from the
	// store at each scrape (see QueueReader). Close unregisters them. nil (a nil
	// *prometheus.Registry in it too): no metrics, at no cost. Servers
	// on one registry need a label of their own each (prometheus.WrapRegistererWith, for
	// every one of them: a family's series all have the same label names).
	Registerer prometheus.Registerer
}

// check refuses a Config whose AssetScale was forgotten.
func (c Config) check() error {
	switch {
	case c.AssetScale == 0 && !c.WholeUnits:
		return errors.New("settlement engine: Config.AssetScale is not set: set it to the assetScale of the connector's accounts for this engine (or WholeUnits, for a scale of 0)")
	case c.AssetScale != 0 && c.WholeUnits:
		return fmt.Errorf("settlement engine: Config.WholeUnits (a scale of 0) contradicts AssetScale %d", c.AssetScale)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ConnectorURL == "" {
		c.ConnectorURL = DefaultConnectorURL
	}
	c.ConnectorURL = strings.TrimRight(c.ConnectorURL, "/")
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.RetryBase <= 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax <= 0 || c.RetryMax > MaxRetryInterval {
		c.RetryMax = MaxRetryInterval
	}
	if c.Backoff == nil {
		c.Backoff = ExponentialBackoff(c.RetryBase, c.RetryMax)
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	return c
}

// Server is a running settlement engine: the engine, its RFC 38 API and the credits being
// reported to the connector.
type Server struct {
	cfg   Config
	store Store
	conn  *connector
	log   *slog.Logger
	m     *metrics // nil: none
	ln    net.Listener
	http  *http.Server

	ctx    context.Context // ends at Close: stops settling and retries
	cancel context.CancelFunc
	// settleCtx is Settle's: Close cancels it only once no Settle may run any more, or when
	// its own ctx ends first (a Settle cut short leaves its attempt to the next start).
	settleCtx     context.Context
	cancelSettles context.CancelFunc
	wg            sync.WaitGroup

	mu         sync.Mutex
	eng        Engine               // nil until Connect returned
	idempotent bool                 // eng pays a settlement id once: see IdempotentSettler
	settling   map[string]*bool     // account → settle again when the running one ends
	failures   map[string]int       // account → failures in a row (not settled, outcome unknown, a store read or write that failed): the backoff's n
	later      map[string]time.Time // account → when the retry after the backoff is due: nothing settles before
	unrecorded map[string]outcome   // account → an outcome this process knows and could not write yet
	closed     bool
}

// outcome is the known outcome of an attempt, to write to the store: ended (EndAttempt, with
// what to queue again) or kept as it is now (UpdateAttempt, its outcome unknown). One that
// could not be written is kept in memory and written before anything else is done for the
// account: the attempt stays in the store as in progress meanwhile, and must not be taken for
// one a stopped process left behind.
type outcome struct {
	at      Attempt
	end     bool
	requeue decimal.Decimal
}

// Start listens on cfg.Addr, connects the engine, resumes the credits and settlements left
// queued in store by a previous run, and serves the engine's RFC 38 API. The store stays the
// caller's to close, after Server.Close.
func Start(ctx context.Context, connect Connect, store Store, cfg Config) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("settlement engine: %w", err)
	}
	s := &Server{cfg: cfg, store: store, log: cfg.Log, ln: ln, settling: map[string]*bool{}, failures: map[string]int{}, later: map[string]time.Time{}, unrecorded: map[string]outcome{},
		conn: &connector{base: cfg.ConnectorURL, http: cfg.HTTPClient, timeout: cfg.RequestTimeout},
		m:    newMetrics(cfg.Registerer, cfg.AssetScale, store, cfg.Log)}
	if err := s.m.register(); err != nil {
		_ = ln.Close()
		return nil, err
	}
	// The credits to resume are read before Connect: a credit the engine reports during
	// Connect is delivered by CreditSettlement alone, and one read here by resume alone
	// (read after, it could be in the list, and acknowledged already, or being delivered).
	credits, err := store.Credits(ctx)
	if err != nil {
		_ = ln.Close()
		s.m.unregister()
		return nil, fmt.Errorf("settlement engine: queued credits: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.settleCtx, s.cancelSettles = context.WithCancel(context.WithoutCancel(ctx))
	eng, err := connect(ctx, services{s})
	if err != nil {
		s.cancel()
		s.cancelSettles()
		s.wg.Wait()
		_ = ln.Close()
		s.m.unregister()
		return nil, fmt.Errorf("settlement engine: connect: %w", err)
	}
	s.mu.Lock()
	s.eng = eng
	if is, ok := eng.(IdempotentSettler); ok {
		s.idempotent = is.SettlesOncePerID()
	}
	s.mu.Unlock()
	if err := s.resume(ctx, credits); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Go(func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("settlement engine: serve", "err", err)
		}
	})
	s.log.Info("settlement engine listening", "addr", s.Addr(), "connector", cfg.ConnectorURL)
	return s, nil
}

// resume restarts the delivery of credits, the ones queued before Connect, and settles what
// is queued (settlement-core's trySettlement of every account at start).
func (s *Server) resume(ctx context.Context, credits []Credit) error {
	for _, c := range credits {
		s.deliver(c)
	}
	ids, err := s.store.Accounts(ctx)
	if err != nil {
		return fmt.Errorf("settlement engine: accounts: %w", err)
	}
	for _, id := range ids {
		s.m.track(id)
		s.trySettle(id)
	}
	return nil
}

// Addr is the address the API listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the API, the settling and the credit retries (queued credits stay in the store
// for the next start), waits for them, and closes the engine (Closer). When ctx ends first,
// the running Settles' ctx is cancelled, and Close still waits for them to return (their
// attempts stay in the store for the next start): it never returns, nor closes the engine,
// while a Settle runs, so that the caller may close the store after it.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	var errs []error
	if s.http != nil {
		errs = append(errs, s.http.Shutdown(ctx))
	} else {
		errs = append(errs, s.ln.Close())
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("settlement engine: close: %w; settlements in progress cancelled, kept for the next start", ctx.Err()))
		s.cancelSettles()
		<-done // Settle returns once its ctx is done (see Engine)
	}
	s.cancelSettles()
	if c, ok := s.eng.(Closer); ok {
		errs = append(errs, c.Close(ctx))
	}
	s.m.unregister()
	return errors.Join(errs...)
}

// trySettle starts the settle loop of account, or, if it runs, asks it to go round again.
func (s *Server) trySettle(account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eng == nil || s.closed {
		return // before Connect returned: resume tries every account
	}
	if again, running := s.settling[account]; running {
		*again = true
		return
	}
	again := new(bool)
	s.settling[account] = again
	s.wg.Go(func() { s.settleLoop(account, again) })
}

// settleLoop settles what is queued for account, again while more was queued meanwhile.
// A leftover alone does not make it go round: it waits for more or for TrySettlement.
func (s *Server) settleLoop(account string, again *bool) {
	for {
		s.settleOnce(account)
		s.mu.Lock()
		if !*again || s.closed {
			delete(s.settling, account)
			s.mu.Unlock()
			return
		}
		*again = false
		s.mu.Unlock()
	}
}

func (s *Server) settleOnce(account string) {
	s.mu.Lock()
	_, waiting := s.later[account]
	s.mu.Unlock()
	if waiting || s.isClosed() {
		return // backing off after a failure (what is queued waits for the retry), or closed
	}
	// Store writes outlive Close: an attempt's outcome must be recorded.
	bg := context.WithoutCancel(s.ctx)
	if !s.retryAttempt(bg, account) || s.isClosed() {
		return // queued amounts wait until the attempt's outcome is known
	}
	// Taken and kept as the attempt in one step, before Settle: a stop during Settle
	// leaves it in the store.
	at, err := s.store.StartAttempt(bg, account, rand.Text())
	if err != nil {
		wait := s.tryLater(account, s.m.incarnation(account))
		s.log.Error("settlement engine: cannot take the amount to settle; it stays queued and is tried again", "account", account, "retryIn", wait, "err", err)
		return
	}
	if at != nil {
		s.settleAttempt(bg, account, *at, true)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// retryAttempt writes the outcome this process could not write for account, then settles
// again the attempt kept for account, if any — of unknown outcome, or left in progress by a
// stopped process — and reports whether there is none left.
func (s *Server) retryAttempt(ctx context.Context, account string) bool {
	s.mu.Lock()
	o, unwritten := s.unrecorded[account]
	delete(s.unrecorded, account)
	s.mu.Unlock()
	if unwritten && !s.writeOutcome(ctx, account, s.m.incarnation(account), o) {
		return false
	}
	at, err := s.store.Attempt(ctx, account)
	if err != nil {
		s.log.Error("settlement engine: cannot read the settlement attempt kept; trying again later", "account", account, "err", err)
		s.tryLater(account, s.m.incarnation(account))
		return false
	}
	if at == nil {
		return true
	}
	if at.InProgress && !s.idempotent {
		return s.abandonAttempt(ctx, account, *at)
	}
	if at.InProgress {
		s.log.Warn("settlement engine: a settlement was in progress when the engine stopped; settling it again with its id", "account", account, "amount", at.Amount.String(), "id", at.ID)
	}
	return s.settleAttempt(ctx, account, *at, false)
}

// abandonAttempt takes as settled an attempt left in progress (the engine stopped during
// Settle, or its outcome could not be recorded) by an engine that may pay an id twice:
// settlement-core's rule, said loudly so that a person checks the ledger.
func (s *Server) abandonAttempt(ctx context.Context, account string, at Attempt) bool {
	r := s.m.incarnation(account)
	s.log.Error("SETTLEMENT INTERRUPTED: a settlement was in progress when the engine stopped, and this engine does not declare that a settlement id pays once (IdempotentSettler): "+
		"it is taken as settled, in case it was paid; check the ledger for this settlement id and settle the difference by hand if it was not paid",
		"account", account, "amount", at.Amount.String(), "id", at.ID)
	if err := s.store.EndAttempt(ctx, account, at.ID, decimal.Zero); err != nil {
		s.log.Error("settlement engine: cannot forget the interrupted settlement; trying again later", "account", account, "id", at.ID, "err", err)
		s.tryLater(account, r)
		return false
	}
	s.m.outcome(r, OutcomeInterrupted, decimal.Zero)
	return true
}

// settleAttempt calls Settle for at, kept in the store (fresh: taken from the queue just
// now, rather than tried again), and reports whether it is done with, settled or taken as
// settled.
func (s *Server) settleAttempt(ctx context.Context, account string, at Attempt, fresh bool) bool {
	sctx, cancel := context.WithTimeout(withSettlementID(s.settleCtx, at.ID), s.cfg.RequestTimeout)
	defer cancel()
	r := s.m.incarnation(account)
	s.m.settling(r, 1)
	settled, err := s.eng.Settle(sctx, account, at.Amount)
	s.m.settling(r, -1)
	switch {
	case errors.Is(err, ErrOutcomeUnknown), !fresh && errors.Is(err, ErrNotSettled):
		// Tried again as it is: an attempt tried before stays one even when it paid nothing
		// now, so that it can never be paid under two ids.
		said := OutcomeNotSettled
		if errors.Is(err, ErrOutcomeUnknown) {
			said = OutcomeUnknown
		}
		s.m.outcome(r, said, decimal.Zero)
		s.keepAttempt(ctx, account, r, at, err)
		return false
	case errors.Is(err, ErrNotSettled):
		s.m.outcome(r, OutcomeNotSettled, decimal.Zero)
		s.settleLater(ctx, account, r, at, err)
		return false
	case err != nil && s.settleCtx.Err() != nil:
		s.m.outcome(r, OutcomeCancelled, decimal.Zero)
		s.log.Warn("settlement engine: Settle cut short by Close; its attempt is kept for the next start", "account", account, "amount", at.Amount.String(), "id", at.ID, "err", err)
		return false
	case err != nil:
		s.m.outcome(r, OutcomeFailed, decimal.Zero)
		s.log.Error("SETTLEMENT FAILED: the whole amount is taken as settled, in case it was paid; check the ledger and settle the difference by hand if it was not",
			"account", account, "amount", at.Amount.String(), "id", at.ID, "err", err)
		s.endAttempt(ctx, account, r, at, decimal.Zero)
		return true
	}
	s.recordSettled(ctx, account, r, at, settled)
	return true
}

// endAttempt forgets at, an attempt of r, whose outcome is known, and queues requeue again,
// in one step.
func (s *Server) endAttempt(ctx context.Context, account string, r incarnation, at Attempt, requeue decimal.Decimal) {
	s.writeOutcome(ctx, account, r, outcome{at: at, end: true, requeue: requeue})
}

// writeOutcome writes o, of an attempt of r, to the store and reports whether it could. If
// not, o is kept in memory and written again, after the backoff, before the account settles
// again (see outcome).
func (s *Server) writeOutcome(ctx context.Context, account string, r incarnation, o outcome) bool {
	var err error
	if o.end {
		err = s.store.EndAttempt(ctx, account, o.at.ID, o.requeue)
	} else {
		err = s.store.UpdateAttempt(ctx, account, o.at)
	}
	if err == nil {
		return true
	}
	s.mu.Lock()
	s.unrecorded[account] = o
	s.mu.Unlock()
	wait := s.tryLater(account, r)
	s.log.Error("settlement engine: cannot record the outcome of a settlement; written again before the account settles again",
		"account", account, "amount", o.at.Amount.String(), "id", o.at.ID, "ended", o.end, "requeue", o.requeue.String(), "retryIn", wait, "err", err)
	return false
}

// recordSettled takes note of a Settle of at that returned settled: clamped to [0, at.Amount],
// it ends the account's backoff, and what it left unpaid is queued again. A Settle that paid
// nothing (0 and no error) counts as not settled: all of it is queued again.
func (s *Server) recordSettled(ctx context.Context, account string, r incarnation, at Attempt, settled decimal.Decimal) {
	amount := at.Amount
	switch {
	case settled.Sign() < 0:
		s.log.Error("settlement engine: Settle returned a negative amount; taken as 0", "account", account, "settled", settled.String())
		settled = decimal.Zero
	case settled.GreaterThan(amount):
		s.log.Error("settlement engine: Settle returned more than asked; taken as the amount asked", "account", account, "amount", amount.String(), "settled", settled.String())
		settled = amount
	}
	if settled.IsZero() {
		s.m.outcome(r, OutcomeNotSettled, decimal.Zero)
	} else {
		s.m.outcome(r, OutcomeSettled, settled)
	}
	s.log.Info("settled", "account", account, "amount", amount.String(), "settled", settled.String(), "id", at.ID)
	s.mu.Lock()
	delete(s.failures, account)
	s.mu.Unlock()
	s.endAttempt(ctx, account, r, at, amount.Sub(settled))
}

// keepAttempt keeps at, an attempt of r, to be settled again, with its id, after the backoff.
func (s *Server) keepAttempt(ctx context.Context, account string, r incarnation, at Attempt, err error) {
	if at.InProgress {
		at.InProgress = false
		s.writeOutcome(ctx, account, r, outcome{at: at})
	}
	wait := s.tryLater(account, r)
	s.log.Warn("settlement outcome unknown; tried again with the same id", "account", account,
		"amount", at.Amount.String(), "id", at.ID, "retryIn", wait, "err", err)
}

// tryLater settles account again after the backoff: nothing else would (a connector asks
// once). Until then the account is not settled, whatever is queued meanwhile (each request
// would otherwise retry at once, and add a timer of its own). It returns the wait until the
// retry: the pending one's, if there is one already. The retry is counted for r, the account
// as it was when what failed started: not for the account created again under its id, once
// it was deleted meanwhile.
func (s *Server) tryLater(account string, r incarnation) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[account]++
	if due, pending := s.later[account]; pending {
		return time.Until(due)
	}
	wait := s.cfg.Backoff(s.failures[account])
	s.later[account] = time.Now().Add(wait)
	s.m.retry(r)
	time.AfterFunc(wait, func() {
		s.mu.Lock()
		delete(s.later, account)
		s.mu.Unlock()
		s.trySettle(account)
	})
	return wait
}

// settleLater queues the amount of at, an attempt of r, again after a Settle that paid nothing
// (ErrNotSettled), and tries the account again after the backoff: nothing else would (a
// connector asks once).
func (s *Server) settleLater(ctx context.Context, account string, r incarnation, at Attempt, err error) {
	s.endAttempt(ctx, account, r, at, at.Amount)
	wait := s.tryLater(account, r)
	s.log.Warn("nothing settled; the amount stays queued and is tried again", "account", account,
		"amount", at.Amount.String(), "retryIn", wait, "err", err)
}

// deliver reports c to the connector, retrying with the same key until it is acknowledged or
// the server closes (c then stays queued for the next start). A credit is never dropped: the
// money arrived, and a connector that refuses it now (an account it does not settle yet, a
// bug) may take it after an operator's fix; refusals are logged as errors.
func (s *Server) deliver(c Credit) {
	s.wg.Go(func() {
		for n := 1; ; n++ {
			status, err := s.conn.credit(s.ctx, c)
			if err == nil {
				s.ack(c)
				return
			}
			s.m.creditFailed(c, status)
			wait := min(s.cfg.Backoff(n), s.cfg.RetryMax)
			log := s.log.Warn
			if refused(status) {
				log = s.log.Error
			}
			log("settlement engine: credit not acknowledged by the connector; kept and retried", "account", c.Account,
				"key", c.Key, "status", status, "attempt", n, "retryIn", wait, "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	})
}

func (s *Server) ack(c Credit) {
	s.log.Info("credit acknowledged", "account", c.Account, "key", c.Key, "amount", c.Quantity.Amount, "scale", c.Quantity.Scale)
	err := s.store.AckCredit(context.WithoutCancel(s.ctx), c.Key)
	s.m.creditAcked(c)
	if err != nil {
		s.log.Error("settlement engine: cannot forget an acknowledged credit; it will be resent with its key", "key", c.Key, "err", err)
	}
}

// services is the Services of s.
type services struct{ s *Server }

func (v services) SendMessage(ctx context.Context, account string, msg any) (json.RawMessage, error) {
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("settlement engine: message: %w", err)
	}
	resp, err := v.s.conn.message(ctx, account, b)
	if err != nil {
		return nil, fmt.Errorf("settlement engine: message to the peer of %s: %w", account, err)
	}
	if !json.Valid(resp) {
		return nil, fmt.Errorf("settlement engine: the peer of %s answered a message with no JSON: %.100q", account, resp)
	}
	return resp, nil
}

func (v services) CreditSettlement(account string, amount decimal.Decimal, settlementID string) error {
	if amount.Sign() < 0 {
		return fmt.Errorf("settlement engine: negative credit %s for %s", amount, account)
	}
	s := v.s
	c, ok, err := s.store.QueueCredit(context.WithoutCancel(s.ctx), account, amount, s.cfg.AssetScale, rand.Text(), settlementID)
	if errors.Is(err, ErrCreditedBefore) {
		s.log.Info("settlement credited before; not again", "account", account, "amount", amount.String(), "settlementId", settlementID)
		return nil
	}
	if err != nil {
		s.log.Error("CREDIT NOT QUEUED", "account", account, "amount", amount.String(), "settlementId", settlementID, "err", err)
		return fmt.Errorf("settlement engine: queue credit: %w", err)
	}
	if !ok {
		s.log.Info("credit below one unit kept for the next one", "account", account, "amount", amount.String())
		return nil
	}
	s.m.creditQueued(c)
	s.mu.Lock() // under the lock, so that Close does not wait before this delivery is counted
	defer s.mu.Unlock()
	if !s.closed { // once closed it waits in the store for the next start
		s.deliver(c)
	}
	return nil
}

func (v services) TrySettlement(account string) { v.s.trySettle(account) }
