package settlement

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// Account is what the settler knows of one account that has a settlement engine.
type Account struct {
	ID         string
	EngineURL  string
	AssetScale uint8
	Threshold  *int64        // settle when the balance falls below it; nil: not on a threshold
	SettleTo   int64         // the balance a settlement raises it to
	Every      time.Duration // also settle whatever is owed beyond SettleTo this often; 0: never
}

func (a Account) equal(b Account) bool {
	sameThreshold := (a.Threshold == nil) == (b.Threshold == nil) && (a.Threshold == nil || *a.Threshold == *b.Threshold)
	return a.ID == b.ID && a.EngineURL == b.EngineURL && a.AssetScale == b.AssetScale && a.SettleTo == b.SettleTo &&
		a.Every == b.Every && sameThreshold
}

// Sender sends a Prepare to the peer of an account over the account's link.
type Sender func(ctx context.Context, account string, p *ilp.Prepare) (*ilp.Fulfill, error)

// Options configure a Settler.
type Options struct {
	Store   store.Store
	Send    Sender
	Log     *slog.Logger     // nil: discard
	HTTP    *http.Client     // requests to engines; nil: one with RequestTimeout
	Retry   Backoff          // zero: DefaultBackoff
	Now     func() time.Time // nil: time.Now
	Metrics *Metrics         // nil: none
	// OnSettled, if set, is told of an account whose balance a settlement changed (due, or
	// credited), so that what shows the balance (the connector's balance gauge) follows
	// without waiting for a packet. (Settler.BalanceChanged is the other way: the packet path
	// telling the settler of a balance.)
	OnSettled func(ctx context.Context, account string)
}

// Backoff is the wait between attempts of a request that must eventually succeed: exponential
// from Min, capped at Max, the second half of each wait random (RFC 38: back off, add jitter,
// at most an hour).
type Backoff struct{ Min, Max time.Duration }

// DefaultBackoff starts at a second and never waits more than RFC 38's hour.
var DefaultBackoff = Backoff{Min: time.Second, Max: time.Hour}

func (b Backoff) delay(attempt int) time.Duration {
	d := b.Max
	if attempt < 40 && b.Min<<attempt < b.Max && b.Min<<attempt > 0 {
		d = b.Min << attempt
	}
	return d/2 + mrand.N(d/2+1)
}

// Settler settles the balances of the accounts that have a settlement engine: when a balance
// falls below its threshold it records the settlement (store.Settlements.SettleDue) and asks
// the engine, with the same idempotency key until the engine answers. It also serves the API
// the engines call (Handler) and carries messages between an engine and its peer's
// (HandlePeer, and the /messages endpoint).
type Settler struct {
	o     Options
	log   *slog.Logger
	accts atomic.Pointer[map[string]*acct]

	mu sync.Mutex // Update, Start and Close
	// creditMu makes incoming credits one at a time: a credit reads the account's leftover,
	// then writes it. (Replicas sharing a Redis store do not share this lock: two credits of
	// one account at the same moment on two replicas may misplace a leftover, which is always
	// less than one unit of the account.)
	creditMu sync.Mutex
	ctx      context.Context
	cancel   context.CancelFunc
	started  bool
	wg       sync.WaitGroup
}

// acct is one account's settlement state. A changed config makes a new acct whose worker takes
// over once the previous one has stopped.
type acct struct {
	cfg    Account
	client *Client
	kick   chan struct{} // a balance fell below the threshold; buffered, one is enough
	stop   chan struct{} // closed when the account's config is replaced or removed
	done   chan struct{} // closed when the worker has stopped
}

// New returns a Settler with no accounts; Update gives it some, Start starts its work.
func New(o Options) *Settler {
	if o.Retry.Min <= 0 || o.Retry.Max < o.Retry.Min {
		o.Retry = DefaultBackoff
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Settler{o: o, log: o.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	empty := map[string]*acct{}
	s.accts.Store(&empty)
	return s
}

// Update sets the accounts that have a settlement engine. Accounts whose settings did not
// change keep their state; a changed or new one gets a worker (after Start).
func (s *Settler) Update(accounts []Account) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.accts.Load()
	next := make(map[string]*acct, len(accounts))
	for _, c := range accounts {
		if o := old[c.ID]; o != nil && o.cfg.equal(c) {
			next[c.ID] = o
			continue
		}
		cl, err := NewClient(c.EngineURL, s.o.HTTP)
		if err != nil {
			return err
		}
		next[c.ID] = &acct{cfg: c, client: cl, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	}
	s.accts.Store(&next)
	for id, o := range old {
		if next[id] != o {
			close(o.stop)
		}
		if next[id] == nil {
			s.forgetWhenStopped(o)
		}
	}
	if s.started {
		for id, a := range next {
			if old[id] != a {
				s.startWorker(a, old[id], nil, false)
			}
		}
	}
	return nil
}

// forgetWhenStopped deletes the metric series of a removed account once its worker has ended
// (it may still count a settlement until then), unless the account came back meanwhile: a
// connector whose accounts come and go must not keep a series for each one it ever had.
// Called with s.mu held.
func (s *Settler) forgetWhenStopped(a *acct) {
	if !s.started { // no worker ran
		s.o.Metrics.forget(a.cfg.ID)
		return
	}
	s.wg.Go(func() {
		<-a.done
		s.mu.Lock()
		defer s.mu.Unlock()
		if (*s.accts.Load())[a.cfg.ID] == nil {
			s.o.Metrics.forget(a.cfg.ID)
		}
	})
}

// Start starts the workers: each tells its engine about the account, resends the settlements
// recorded before a restart and then settles when the balance asks for it.
func (s *Settler) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.ctx.Err() != nil {
		return
	}
	s.started = true
	recs, err := s.records(ctx)
	if err != nil {
		s.log.Error("cannot list the recorded settlements; each account's worker tries again", "error", err)
	}
	accts := *s.accts.Load()
	for id, a := range accts {
		s.startWorker(a, nil, recs[id], err == nil)
	}
	for id := range recs {
		if accts[id] == nil {
			s.log.Warn("settlements recorded for an account without a settlement engine now; they are sent once it has one again", "account", id, "count", len(recs[id]))
		}
	}
	s.wg.Go(s.pruneLoop)
}

// Close stops the workers; settlements being retried stay recorded and are resent by the next
// Start.
func (s *Settler) Close() {
	s.cancel()
	s.wg.Wait()
}

func (s *Settler) account(id string) *acct { return (*s.accts.Load())[id] }

// BalanceChanged is the balance middleware's hook: it must not block, and is cheap for
// accounts without settlement (one map lookup).
func (s *Settler) BalanceChanged(account string, balance int64) {
	a := s.account(account)
	if a == nil || a.cfg.Threshold == nil || balance >= *a.cfg.Threshold {
		return
	}
	select {
	case a.kick <- struct{}{}:
	default: // a settlement check is already pending
	}
}

func (s *Settler) startWorker(a, prev *acct, recs []record, listed bool) {
	s.wg.Go(func() {
		defer close(a.done)
		if prev != nil {
			select {
			case <-prev.done:
			case <-s.ctx.Done():
				return
			}
		}
		s.work(a, recs, listed)
	})
}

// work sets the account up in its engine, resends what was recorded before (recs, or read
// now when not listed), then settles whenever the balance asks, until the account's config
// changes or the settler closes.
func (s *Settler) work(a *acct, recs []record, listed bool) {
	log := s.log.With("account", a.cfg.ID, "engine", RedactURL(a.cfg.EngineURL))
	if !s.retry(a, log, opAccount, func(ctx context.Context) error {
		return a.client.CreateAccount(ctx, a.cfg.ID)
	}) {
		return
	}
	if !listed {
		all, err := s.records(s.ctx)
		if err != nil {
			log.Error("cannot list the recorded settlements; they are resent at the next start", "error", err)
		}
		recs = all[a.cfg.ID]
	}
	// Records for another engine (the account moved) are resent beside the settle loop: that
	// engine may be gone for good, and must not hold up the account's settlements. Each
	// record is still sent by one goroutine at a time, and the worker ends after them, so the
	// next worker resends what they leave.
	var others sync.WaitGroup
	defer others.Wait()
	byEngine := map[string][]record{}
	for _, r := range recs {
		byEngine[r.engine] = append(byEngine[r.engine], r)
	}
	for engine, rs := range byEngine {
		if engine != a.cfg.EngineURL {
			others.Go(func() { s.resendAll(a, log, rs) })
		}
	}
	// The account's own engine's records go first: its new settlements queue behind them.
	if !s.resendAll(a, log, byEngine[a.cfg.EngineURL]) {
		return
	}
	s.settleLoop(a, log)
}

// resendAll resends recs in turn; false when the worker must stop.
func (s *Settler) resendAll(a *acct, log *slog.Logger, recs []record) bool {
	for _, r := range recs {
		if s.stopped(a) {
			return false
		}
		s.resend(a, log, r)
	}
	return !s.stopped(a)
}

// settleLoop settles whenever the balance falls below the threshold (and every settleEvery,
// whatever is owed beyond settleTo) until the worker must stop.
func (s *Settler) settleLoop(a *acct, log *slog.Logger) {
	var tick <-chan time.Time
	if a.cfg.Every > 0 {
		t := time.NewTicker(a.cfg.Every)
		defer t.Stop()
		tick = t.C
		// Also now: the ticker starts over with every worker (a pod start, a config change),
		// and a daily settlement must not wait for a day without rollouts.
		s.settlePeriodic(a, log)
	}
	for failures := 0; !s.stopped(a); {
		// Also at start: the balance may be below the threshold already.
		if err := s.settleDue(a, log, a.cfg.Threshold); err != nil {
			wait := s.o.Retry.delay(failures)
			failures++
			log.Error("cannot record a due settlement: the store refused it (a stopped store needs a restart); trying again later",
				"retryIn", wait.Round(time.Millisecond).String(), "error", err)
			if !s.pause(a, wait) {
				return
			}
			continue
		}
		failures = 0
		select {
		case <-a.kick:
		case <-tick:
			s.settlePeriodic(a, log)
		case <-a.stop:
		case <-s.ctx.Done():
		}
	}
}

// settlePeriodic settles whatever the balance is below settleTo, however little, once per
// interval slot (the time divided by the interval) whichever replica or worker gets there
// first: replicas sharing a store, and workers restarted within a slot, do not settle again.
// A failure waits for the next tick.
func (s *Settler) settlePeriodic(a *acct, log *slog.Logger) {
	now := s.o.Now()
	n := now.UnixNano() / int64(a.cfg.Every)
	// The slot is kept one interval past its end (replicas' clocks may differ that much),
	// then no worker can be in it any more.
	keep := time.Unix(0, (n+2)*int64(a.cfg.Every))
	v, _ := json.Marshal(slotRecord{At: now.Unix(), Until: keep.Unix()})
	first, err := s.o.Store.CreateKey(s.ctx, slotKey(n, a.cfg.ID), v)
	if err == nil && first {
		// Forget the slot before last now rather than at the hourly prune: at an interval
		// of a second, an hour of slots would be 3,600 keys per account.
		if derr := s.o.Store.DeleteKey(s.ctx, slotKey(n-2, a.cfg.ID)); derr != nil {
			log.Warn("cannot forget a past periodic settlement slot; the hourly prune will", "error", derr)
		}
		err = s.settleDue(a, log, &a.cfg.SettleTo)
	}
	if err != nil {
		log.Error("cannot record a periodic settlement; trying at the next one", "error", err)
	}
}

// slotRecord is what a periodic settlement's slot key holds.
type slotRecord struct {
	At    int64 `json:"at"`    // unix seconds: when it was taken
	Until int64 `json:"until"` // unix seconds: when it may be forgotten (0, written before: creditRetention after At)
}

func slotKey(n int64, account string) string {
	return everyPrefix + strconv.FormatInt(n, 10) + "/" + account
}

// stopped reports whether the worker of a must stop: its config changed, or the settler closed.
func (s *Settler) stopped(a *acct) bool {
	select {
	case <-a.stop:
		return true
	case <-s.ctx.Done():
		return true
	default:
		return false
	}
}

// pause waits d; false when the worker must stop instead.
func (s *Settler) pause(a *acct, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-a.stop:
	case <-s.ctx.Done():
	}
	return false
}

// settleDue records and sends a settlement if the balance is below threshold (nil: never).
func (s *Settler) settleDue(a *acct, log *slog.Logger, threshold *int64) error {
	if threshold == nil {
		return nil
	}
	r := record{key: newKey(), engine: a.cfg.EngineURL, account: a.cfg.ID}
	r.storeKey = outKey(r.key, r.engine, r.account)
	amount, err := s.o.Store.SettleDue(s.ctx, a.cfg.ID, *threshold, a.cfg.SettleTo, r.storeKey)
	if err != nil || amount == 0 {
		return err
	}
	log.Info("settlement due: balance raised to settleTo, asking the engine", "amount", amount, "settleTo", a.cfg.SettleTo, "idempotencyKey", r.key)
	s.onSettled(s.ctx, a.cfg.ID)
	s.send(a, log, a.client, r, amount)
	return nil
}

func (s *Settler) onSettled(ctx context.Context, account string) {
	if s.o.OnSettled != nil {
		s.o.OnSettled(ctx, account)
	}
}

// resend sends a settlement recorded before, to the engine it was recorded for: that engine
// may have accepted it already, and only it knows the key. (An account moved to another
// engine meanwhile gets the record sent to the old one, beside its new settlements; if that
// engine is gone, the settlement stays pending — see the metric — until an operator settles
// it by hand.)
func (s *Settler) resend(a *acct, log *slog.Logger, r record) {
	v, err := s.o.Store.GetKey(s.ctx, r.storeKey)
	if errors.Is(err, store.ErrNotFound) {
		return // sent by another replica, or forgotten by an operator, since the listing
	}
	amount, perr := strconv.ParseInt(string(v), 10, 64)
	if err != nil || perr != nil || amount <= 0 {
		// Named by its idempotency key: the store key holds the engine URL, password included.
		log.Error("unreadable settlement record; left in place for an operator (DELETE /settlements/:idempotencyKey)", "idempotencyKey", r.key, "value", string(v), "error", errors.Join(err, perr))
		return
	}
	cl := a.client
	if r.engine != a.cfg.EngineURL {
		log.Warn("a settlement recorded for the account's previous engine is sent to that engine", "previousEngine", RedactURL(r.engine), "idempotencyKey", r.key)
		if cl, err = NewClient(r.engine, s.o.HTTP); err != nil {
			log.Error("unusable engine URL in a settlement record; left in place for an operator (DELETE /settlements/:idempotencyKey)", "idempotencyKey", r.key, "error", err)
			return
		}
	}
	log.Info("resending a settlement recorded before", "amount", amount, "idempotencyKey", r.key)
	s.send(a, log, cl, r, amount)
}

// send asks the engine to settle until it answers 2xx, then forgets the record.
func (s *Settler) send(a *acct, log *slog.Logger, cl *Client, r record, amount int64) {
	q := NewQuantity(uint64(amount), a.cfg.AssetScale)
	s.o.Metrics.addPending(a.cfg.ID, 1)
	defer s.o.Metrics.addPending(a.cfg.ID, -1) // if not sent, the next worker or start counts it again
	if !s.retry(a, log.With("amount", amount, "idempotencyKey", r.key), opSettle, func(ctx context.Context) error {
		// Each attempt checks that the record is still there: an operator may have forgotten
		// it (DELETE /settlements/:key, on any replica), or another replica sharing the store
		// may have sent it.
		if _, err := s.o.Store.GetKey(ctx, r.storeKey); errors.Is(err, store.ErrNotFound) {
			return errGone
		}
		err := cl.Settle(ctx, a.cfg.ID, r.key, q)
		var se *StatusError
		if errors.As(err, &se) && se.Status == http.StatusNotFound && cl.CreateAccount(ctx, a.cfg.ID) == nil {
			// The engine lost the account (restarted on a memory store): set up again, it
			// takes the settlement at once, under its idempotency key, rather than after a
			// backoff that the engine's downtime may have grown to 30 s.
			err = cl.Settle(ctx, a.cfg.ID, r.key, q)
		}
		return err
	}) {
		return // still recorded: the next worker or the next start sends it
	}
	s.o.Metrics.settled("outgoing", a.cfg.ID, amount)
	log.Info("settlement accepted by the engine", "amount", amount, "scale", a.cfg.AssetScale, "idempotencyKey", r.key)
	if err := s.o.Store.DeleteKey(s.ctx, r.storeKey); err != nil {
		log.Warn("cannot forget a sent settlement; it will be sent again, with its idempotency key, at the next start", "error", err)
	}
}

// The requests retry makes, for the log and the failure metric.
const (
	opAccount = "account" // POST /accounts
	opSettle  = "settle"  // POST /accounts/{id}/settlements
)

var opText = map[string]string{opAccount: "telling the settlement engine about the account", opSettle: "settling"}

// retry runs f until it succeeds, backing off between attempts; false when the worker stopped.
func (s *Settler) retry(a *acct, log *slog.Logger, op string, f func(context.Context) error) bool {
	for attempt := 0; !s.stopped(a); attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, RequestTimeout)
		err := f(ctx)
		cancel()
		if err == nil {
			return true
		}
		if errors.Is(err, errGone) {
			return false
		}
		s.o.Metrics.failed(op, a.cfg.ID)
		wait := s.o.Retry.delay(attempt)
		log.Warn(opText[op]+" failed; retrying", "attempt", attempt+1, "retryIn", wait.Round(time.Millisecond).String(), "error", err)
		if !s.pause(a, wait) {
			return false
		}
	}
	return false
}

// record is an outgoing settlement recorded in the store and not yet accepted by an engine.
type record struct {
	storeKey string
	key      string // the idempotency key
	engine   string // the URL of the engine it was recorded for
	account  string
}

// records lists the recorded settlements by account.
func (s *Settler) records(ctx context.Context) (map[string][]record, error) {
	keys, err := s.o.Store.Keys(ctx, outPrefix)
	if err != nil {
		return nil, err
	}
	out := map[string][]record{}
	for _, k := range keys {
		r, ok := parseOutKey(k)
		if !ok {
			s.log.Error("unreadable settlement record key; left in place for an operator", "key", k)
			continue
		}
		out[r.account] = append(out[r.account], r)
	}
	return out, nil
}

// Store keys. The hex fields hold no "/", so the account id, last, may hold any character.
const (
	outPrefix      = "settlement/out/"      // outPrefix + key + "/" + hex(engine URL) + "/" + account → amount (decimal)
	inPrefix       = "settlement/in/"       // inPrefix + the engine's Idempotency-Key → creditRecord (JSON)
	leftoverPrefix = "settlement/leftover/" // leftoverPrefix + account → standard units (decimal)
	everyPrefix    = "settlement/every/"    // everyPrefix + interval slot + "/" + account → slotRecord (JSON)
)

func outKey(key, engineURL, account string) string {
	return outPrefix + key + "/" + hex.EncodeToString([]byte(engineURL)) + "/" + account
}

func parseOutKey(k string) (record, bool) {
	rest, ok := strings.CutPrefix(k, outPrefix)
	parts := strings.SplitN(rest, "/", 3)
	if !ok || len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return record{}, false
	}
	u, err := hex.DecodeString(parts[1])
	if err != nil {
		return record{}, false
	}
	return record{storeKey: k, key: parts[0], engine: string(u), account: parts[2]}, true
}

// newKey is an idempotency key from a CSPRNG, as RFC 38 requires.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux (it panics if it cannot)
	return hex.EncodeToString(b[:])
}
