// Package loadgen is ilpfleet's ILP load generator. It speaks BTP to any connector (ilpfleet's
// or the JavaScript ilp-connector) through two accounts of that connector: it dials a sender
// account and a receiver account as a BTP client (both configured on the connector as
// ilp-plugin-btp listeners), sends N Prepares at concurrency C from the sender to an address
// the connector routes to the receiver, fulfills them on the receiver side and measures
// throughput, Reject codes and latency.
//
// The receiver fulfills exactly the packets of this run: each packet's data holds a nonce and
// its condition is sha256(HMAC-SHA256(run key, nonce)), the key being drawn at random per run.
// Both are derived for every packet of a phase before it is measured (see table), so that the
// measured phase spends its CPU on sending and answering, not hashing.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
)

// Bounds of a run, so that one always ends and its latency samples fit in memory.
const (
	MaxPackets     = 10_000_000 // 80 MB of latency samples at most
	MaxConcurrency = 10_000
)

// Config describes one run.
type Config struct {
	Sender      string        // btp+ws://user:token@host:port of the sender account
	Receiver    string        // btp+ws://user:token@host:port of the receiver account
	Destination ilp.Address   // where the Prepares go: the receiver account's address or below
	Packets     int           // measured packets (N)
	Concurrency int           // packets in flight at once (C)
	Amount      uint64        // amount of every Prepare, in the sender account's units
	Warmup      int           // packets sent and answered before measuring
	Timeout     time.Duration // bound on the whole run: connect, warmup and measure
	Expiry      time.Duration // expiresAt of each Prepare, from when it is sent
	Logger      *slog.Logger  // nil: slog.Default()
}

// Validate reports the first setting that makes the run impossible.
func (c *Config) Validate() error {
	switch {
	case c.Sender == "" || c.Receiver == "":
		return errors.New("both the sender and the receiver BTP URL are required (btp+ws://user:token@host:port)")
	case c.Packets < 1 || c.Packets > MaxPackets:
		return fmt.Errorf("packets = %d: must be between 1 and %d", c.Packets, MaxPackets)
	case c.Concurrency < 1 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("concurrency = %d: must be between 1 and %d", c.Concurrency, MaxConcurrency)
	case c.Warmup < 0 || c.Warmup > MaxPackets:
		return fmt.Errorf("warmup = %d: must be between 0 and %d", c.Warmup, MaxPackets)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout = %s: must be positive", c.Timeout)
	case c.Expiry < time.Second:
		return fmt.Errorf("expiry = %s: must be at least 1s (connectors keep a 1s message window per hop)", c.Expiry)
	}
	if err := c.Destination.Validate(); err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	return nil
}

// Run connects both clients, sends the warmup and then the measured packets, and returns what
// it measured. It stops by itself: after Packets answers, at Timeout, or when ctx ends; in
// the last two cases the Result is partial (TimedOut) and the error says why.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	key, err := newRunKey()
	if err != nil {
		return nil, err
	}
	rcv := &receiver{keys: newKeyring(key), address: cfg.Destination}
	recvLink, err := dial(ctx, cfg, cfg.Receiver, rcv.handle)
	if err != nil {
		return nil, fmt.Errorf("receiver %s: %w", redact(cfg.Receiver), err)
	}
	defer recvLink.Close()
	sendLink, err := dial(ctx, cfg, cfg.Sender, refuse(cfg.Destination))
	if err != nil {
		return nil, fmt.Errorf("sender %s: %w", redact(cfg.Sender), err)
	}
	defer sendLink.Close()

	s := &sender{link: sendLink, keys: rcv.keys, table: &rcv.table, cfg: cfg}
	if cfg.Warmup > 0 {
		s.phase(ctx, 0, cfg.Warmup)
	}
	rcv.reset()
	res := s.phase(ctx, uint64(cfg.Warmup), cfg.Packets)
	res.Received = rcv.counts()
	if ctx.Err() != nil {
		res.TimedOut = true
		return res, fmt.Errorf("run stopped before every packet was answered: %w", context.Cause(ctx))
	}
	return res, nil
}

// dial starts a BTP client and waits for its first authenticated connection.
func dial(ctx context.Context, cfg Config, url string, h ilp.Handler) (*btp.Client, error) {
	c, err := btp.NewClient(btp.ClientOptions{
		Server: url,
		Common: btp.Common{
			// Longer than the packet expiry, so that a late answer is the connector's to give.
			ResponseTimeout: cfg.Expiry + 5*time.Second,
			Address:         func() ilp.Address { return cfg.Destination },
			Logger:          cfg.Logger,
		},
	})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx, h); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

// redact hides the user and token of a BTP URL in messages.
func redact(url string) string {
	scheme := strings.Index(url, "://")
	if scheme < 0 {
		return url
	}
	rest := url[scheme+3:]
	authority := rest
	if slash := strings.IndexByte(rest, '/'); slash >= 0 {
		authority = rest[:slash]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return url
	}
	return url[:scheme+3] + "…@" + rest[at+1:]
}

// refuse answers the Prepares a connector might send to the sender account: the load
// generator sends, it does not receive there.
func refuse(self ilp.Address) ilp.Handler {
	return func(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnexpectedPayment, self,
			"the load generator's sender account accepts no packets (got one for %s)", p.Destination)
	}
}

// receiver fulfills the packets of this run and counts them.
type receiver struct {
	keys      *keyring
	table     atomic.Pointer[table] // the current phase's precomputed pairs
	address   ilp.Address
	fulfilled atomic.Uint64
	amount    atomic.Uint64
}

func (r *receiver) handle(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	pr, ok := r.keys.pairOf(r.table.Load(), p.Data)
	if !ok {
		return nil, ilp.Rejectf(ilp.CodeUnexpectedPayment, r.address,
			"not a packet of this load generator run (data of %d bytes)", len(p.Data))
	}
	if pr.condition != p.ExecutionCondition {
		return nil, ilp.Rejectf(ilp.CodeWrongCondition, r.address,
			"condition does not match this run's key: the packet was altered or belongs to another run")
	}
	r.fulfilled.Add(1)
	addSaturating(&r.amount, p.Amount)
	return &pr.fulfill, nil
}

func (r *receiver) reset() {
	r.fulfilled.Store(0)
	r.amount.Store(0)
}

func (r *receiver) counts() ReceiverCounts {
	return ReceiverCounts{Fulfilled: r.fulfilled.Load(), Amount: r.amount.Load()}
}

// addSaturating adds v to a, stopping at 2^64-1 instead of wrapping.
func addSaturating(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		sum, carry := bits.Add64(old, v, 0)
		if carry != 0 {
			sum = math.MaxUint64
		}
		if a.CompareAndSwap(old, sum) {
			return
		}
	}
}

// sender sends the packets of one phase from Concurrency workers.
type sender struct {
	link  link.Link
	keys  *keyring
	table *atomic.Pointer[table] // shared with the receiver
	cfg   Config
}

// tally is one worker's counts; workers merge them at the end, so the hot loop shares
// nothing but the packet counter.
type tally struct {
	sent, fulfilled uint64
	rejected        map[string]uint64
	errors          map[string]uint64
	samples         map[string]string
	latencies       []time.Duration
}

// phase sends n packets with sequence numbers from base and returns the merged counts.
func (s *sender) phase(ctx context.Context, base uint64, n int) *Result {
	tab := s.keys.precompute(base, n) // before the clock starts
	s.table.Store(tab)
	var next atomic.Int64
	tallies := make([]*tally, s.cfg.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range tallies {
		t := &tally{
			rejected: map[string]uint64{}, errors: map[string]uint64{}, samples: map[string]string{},
			latencies: make([]time.Duration, 0, n/s.cfg.Concurrency+1),
		}
		tallies[i] = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx, t, tab, &next, base, int64(n))
		}()
	}
	wg.Wait()
	return s.merge(tallies, n, time.Since(start))
}

// work sends packets until n have been taken or ctx ends. Its Prepare is reused: the link
// has encoded it, and holds no reference to it, once Send returns.
func (s *sender) work(ctx context.Context, t *tally, tab *table, next *atomic.Int64, base uint64, n int64) {
	p := &ilp.Prepare{Amount: s.cfg.Amount, Destination: s.cfg.Destination, Data: make([]byte, 0, dataSize)}
	for ctx.Err() == nil {
		i := next.Add(1) - 1
		if i >= n {
			return
		}
		seq := base + uint64(i)
		p.Data = packetData(p.Data, seq)
		pr := s.keys.pairFor(tab, seq, p.Data)
		p.ExecutionCondition = pr.condition
		t.sent++
		began := time.Now()
		p.ExpiresAt = began.Add(s.cfg.Expiry)
		ful, err := s.link.Send(ctx, p)
		elapsed := time.Since(began)
		t.record(&pr.fulfill, ful, err, elapsed)
	}
}

// record classifies one answer. A Fulfill is checked against want, the answer derived for the
// packet: the same test as hashing it against the packet's condition, without the hash.
func (t *tally) record(want, f *ilp.Fulfill, err error, elapsed time.Duration) {
	var rej *ilp.Reject
	switch {
	case err == nil && f != nil && f.Fulfillment == want.Fulfillment:
		t.fulfilled++
		t.latencies = append(t.latencies, elapsed)
	case err == nil:
		t.count(t.errors, "bad-fulfill", "a Fulfill whose fulfillment does not match the condition")
	case errors.As(err, &rej):
		t.count(t.rejected, string(rej.Code), fmt.Sprintf("%s from %s: %s", rej.Code.Name(), rej.TriggeredBy, rej.Message))
	default:
		kind, msg := errorKind(err)
		t.count(t.errors, kind, msg)
	}
}

func (t *tally) count(m map[string]uint64, key, sample string) {
	m[key]++
	if _, ok := t.samples[key]; !ok {
		t.samples[key] = sample
	}
}

// errorKind names a failure that is not a Reject.
func errorKind(err error) (kind, msg string) {
	var be *btp.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "stopped", "in flight when the run was stopped: " + err.Error()
	case errors.Is(err, btp.ErrTimeout):
		return "timeout", "no answer within the response timeout: " + err.Error()
	case errors.Is(err, link.ErrNotConnected), errors.Is(err, btp.ErrClosed):
		return "disconnected", err.Error()
	case errors.As(err, &be):
		return "btp-" + be.Code, err.Error()
	default:
		return "other", err.Error()
	}
}

func (s *sender) merge(tallies []*tally, n int, elapsed time.Duration) *Result {
	r := &Result{
		Destination: string(s.cfg.Destination), Packets: n, Concurrency: s.cfg.Concurrency,
		Warmup: s.cfg.Warmup, Amount: s.cfg.Amount, Elapsed: elapsed,
		Rejected: map[string]uint64{}, Errors: map[string]uint64{}, Samples: map[string]string{},
	}
	total := 0
	for _, t := range tallies {
		total += len(t.latencies)
	}
	lat := make([]time.Duration, 0, total)
	for _, t := range tallies {
		r.Sent += t.sent
		r.Fulfilled += t.fulfilled
		mergeCounts(r.Rejected, t.rejected)
		mergeCounts(r.Errors, t.errors)
		for k, v := range t.samples {
			if _, ok := r.Samples[k]; !ok {
				r.Samples[k] = v
			}
		}
		lat = append(lat, t.latencies...)
	}
	r.Latency = summarize(lat)
	return r
}

func mergeCounts(dst, src map[string]uint64) {
	for k, v := range src {
		dst[k] += v
	}
}
