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

	"github.com/shopspring/decimal"
)

// Defaults of Config.
const (
	DefaultConnectorURL   = "http://127.0.0.1:7771"
	DefaultAddr           = "127.0.0.1:3000"
	DefaultRetryBase      = time.Second
	DefaultRequestTimeout = 30 * time.Second
)

// Config configures Start. Zero fields take the defaults.
type Config struct {
	// ConnectorURL is the connector's RFC 38 API for this engine (DefaultConnectorURL).
	ConnectorURL string
	// Addr is the listen address of the engine's API (DefaultAddr; ":0" picks a port).
	Addr string
	// AssetScale is the scale at which credits are reported to the connector.
	AssetScale uint8
	// Log receives the framework's log (slog.Default()).
	Log *slog.Logger
	// RetryBase and RetryMax shape the exponential backoff of credits (DefaultRetryBase;
	// MaxRetryInterval, which RetryMax never exceeds). Backoff, when set, replaces it; its
	// waits are still capped at RetryMax.
	RetryBase, RetryMax time.Duration
	Backoff             Backoff
	// RequestTimeout bounds each request to the connector (DefaultRequestTimeout).
	RequestTimeout time.Duration
	// HTTPClient sends them (a client of its own).
	HTTPClient *http.Client
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
	ln    net.Listener
	http  *http.Server

	ctx    context.Context // ends at Close: stops settling and retries
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	eng      Engine               // nil until Connect returned
	settling map[string]*bool     // account → settle again when the running one ends
	failures map[string]int       // account → failed attempts in a row (not settled, outcome unknown, kept attempt unreadable): the backoff's n
	later    map[string]time.Time // account → when the retry after the backoff is due: nothing settles before
	closed   bool
}

// Start listens on cfg.Addr, connects the engine, resumes the credits and settlements left
// queued in store by a previous run, and serves the engine's RFC 38 API. The store stays the
// caller's to close, after Server.Close.
func Start(ctx context.Context, connect Connect, store Store, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("settlement engine: %w", err)
	}
	s := &Server{cfg: cfg, store: store, log: cfg.Log, ln: ln, settling: map[string]*bool{}, failures: map[string]int{}, later: map[string]time.Time{},
		conn: &connector{base: cfg.ConnectorURL, http: cfg.HTTPClient, timeout: cfg.RequestTimeout}}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	eng, err := connect(ctx, services{s})
	if err != nil {
		s.cancel()
		s.wg.Wait()
		_ = ln.Close()
		return nil, fmt.Errorf("settlement engine: connect: %w", err)
	}
	s.mu.Lock()
	s.eng = eng
	s.mu.Unlock()
	if err := s.resume(ctx); err != nil {
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

// resume restarts the delivery of queued credits and settles what is queued (settlement-
// core's trySettlement of every account at start).
func (s *Server) resume(ctx context.Context) error {
	credits, err := s.store.Credits(ctx)
	if err != nil {
		return fmt.Errorf("settlement engine: queued credits: %w", err)
	}
	for _, c := range credits {
		s.deliver(c)
	}
	ids, err := s.store.Accounts(ctx)
	if err != nil {
		return fmt.Errorf("settlement engine: accounts: %w", err)
	}
	for _, id := range ids {
		s.trySettle(id)
	}
	return nil
}

// Addr is the address the API listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the API, the settling and the credit retries (queued credits stay in the store
// for the next start), waits for them within ctx, and closes the engine.
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
		errs = append(errs, fmt.Errorf("settlement engine: close: %w", ctx.Err()))
	}
	if c, ok := s.eng.(Closer); ok {
		errs = append(errs, c.Close(ctx))
	}
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
	if waiting {
		return // backing off after a failure: what is queued waits for the retry
	}
	// Store writes outlive Close: the amount is taken, and must be put back.
	bg := context.WithoutCancel(s.ctx)
	if !s.retryAttempt(bg, account) {
		return // queued amounts wait until the attempt's outcome is known
	}
	amount, err := s.store.TakeQueued(bg, account)
	if err != nil {
		s.log.Error("settlement engine: cannot read the amount to settle; it stays queued", "account", account, "err", err)
		return
	}
	if amount.Sign() <= 0 {
		return
	}
	s.settleAttempt(bg, account, Attempt{ID: rand.Text(), Amount: amount}, false)
}

// retryAttempt settles again the attempt of unknown outcome kept for account, if any, and
// reports whether there is none left.
func (s *Server) retryAttempt(ctx context.Context, account string) bool {
	at, err := s.store.Attempt(ctx, account)
	if err != nil {
		s.log.Error("settlement engine: cannot read the settlement of unknown outcome; trying again later", "account", account, "err", err)
		s.tryLater(account)
		return false
	}
	if at == nil {
		return true
	}
	return s.settleAttempt(ctx, account, *at, true)
}

// settleAttempt calls Settle for at (kept: at is a stored attempt of unknown outcome tried again)
// and reports whether it is done with, settled or taken as settled.
func (s *Server) settleAttempt(ctx context.Context, account string, at Attempt, kept bool) bool {
	// Not cut off by Close: a failed Settle counts as paid, so a shutdown in the middle of one
	// must let it finish (within the request timeout) rather than turn it into a failure.
	sctx, cancel := context.WithTimeout(withSettlementID(ctx, at.ID), s.cfg.RequestTimeout)
	defer cancel()
	amount := at.Amount
	settled, err := s.eng.Settle(sctx, account, amount)
	switch {
	case errors.Is(err, ErrOutcomeUnknown), kept && errors.Is(err, ErrNotSettled):
		// Tried again as it is: a kept attempt stays one even when it paid nothing, so
		// that it can never be paid under two ids.
		s.keepAttempt(ctx, account, at, kept, err)
		return false
	case errors.Is(err, ErrNotSettled):
		s.settleLater(ctx, account, amount, err)
		return false
	}
	if kept {
		// Forgotten before the leftover is queued: a crash between the two loses less than
		// the attempt, rather than paying it twice.
		if ferr := s.store.SetAttempt(ctx, account, nil); ferr != nil {
			s.log.Error("settlement engine: cannot forget a settlement of unknown outcome that is now known; it will be tried again with its id", "account", account, "id", at.ID, "err", ferr)
		}
	}
	if err != nil {
		s.log.Error("SETTLEMENT FAILED: the whole amount is taken as settled, in case it was paid; check the ledger and settle the difference by hand if it was not",
			"account", account, "amount", amount.String(), "id", at.ID, "err", err)
		return true
	}
	s.recordSettled(ctx, account, at, settled)
	return true
}

// recordSettled takes note of a Settle of at that returned settled: clamped to [0, at.Amount],
// it ends the account's backoff, and what it left unpaid is queued again.
func (s *Server) recordSettled(ctx context.Context, account string, at Attempt, settled decimal.Decimal) {
	amount := at.Amount
	switch {
	case settled.Sign() < 0:
		s.log.Error("settlement engine: Settle returned a negative amount; taken as 0", "account", account, "settled", settled.String())
		settled = decimal.Zero
	case settled.GreaterThan(amount):
		s.log.Error("settlement engine: Settle returned more than asked; taken as the amount asked", "account", account, "amount", amount.String(), "settled", settled.String())
		settled = amount
	}
	s.log.Info("settled", "account", account, "amount", amount.String(), "settled", settled.String(), "id", at.ID)
	s.mu.Lock()
	delete(s.failures, account)
	s.mu.Unlock()
	leftover := amount.Sub(settled)
	if leftover.IsZero() {
		return
	}
	if _, err := s.store.QueueSettlement(ctx, account, leftover, nil); err != nil && !errors.Is(err, ErrNoAccount) {
		s.log.Error("LEFTOVER LOST: cannot queue it again", "account", account, "leftover", leftover.String(), "err", err)
	}
}

// keepAttempt stores at (unless kept already) to be settled again, with its id, after the
// backoff. If it cannot be stored it is taken as settled, as a failed Settle is: sent again
// under a new id, it could be paid twice.
func (s *Server) keepAttempt(ctx context.Context, account string, at Attempt, kept bool, err error) {
	if !kept {
		if serr := s.store.SetAttempt(ctx, account, &at); serr != nil {
			s.log.Error("SETTLEMENT FAILED: its outcome is unknown and it cannot be kept to be tried again; taken as settled, in case it was paid: check the ledger",
				"account", account, "amount", at.Amount.String(), "id", at.ID, "err", errors.Join(err, serr))
			return
		}
	}
	wait := s.tryLater(account)
	s.log.Warn("settlement outcome unknown; tried again with the same id", "account", account,
		"amount", at.Amount.String(), "id", at.ID, "retryIn", wait, "err", err)
}

// tryLater settles account again after the backoff: nothing else would (a connector asks
// once). Until then the account is not settled, whatever is queued meanwhile (each request
// would otherwise retry at once, and add a timer of its own). It returns the wait until the
// retry: the pending one's, if there is one already.
func (s *Server) tryLater(account string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[account]++
	if due, pending := s.later[account]; pending {
		return time.Until(due)
	}
	wait := s.cfg.Backoff(s.failures[account])
	s.later[account] = time.Now().Add(wait)
	time.AfterFunc(wait, func() {
		s.mu.Lock()
		delete(s.later, account)
		s.mu.Unlock()
		s.trySettle(account)
	})
	return wait
}

// settleLater queues amount again after a Settle that paid nothing (ErrNotSettled), and
// tries the account again after the backoff: nothing else would (a connector asks once).
func (s *Server) settleLater(ctx context.Context, account string, amount decimal.Decimal, err error) {
	if _, qerr := s.store.QueueSettlement(ctx, account, amount, nil); qerr != nil {
		s.log.Error("UNSETTLED AMOUNT LOST: cannot queue it again", "account", account, "amount", amount.String(), "err", qerr)
		return
	}
	wait := s.tryLater(account)
	s.log.Warn("nothing settled; the amount stays queued and is tried again", "account", account,
		"amount", amount.String(), "retryIn", wait, "err", err)
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
	if err := s.store.AckCredit(context.WithoutCancel(s.ctx), c.Key); err != nil {
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
	s.mu.Lock() // under the lock, so that Close does not wait before this delivery is counted
	defer s.mu.Unlock()
	if !s.closed { // once closed it waits in the store for the next start
		s.deliver(c)
	}
	return nil
}

func (v services) TrySettlement(account string) { v.s.trySettle(account) }
