package rates

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"
)

// NameECB is the backend that fetches the European Central Bank's daily reference rates.
const NameECB = "ecb"

// ECB defaults. The ECB publishes once per business day (around 16:00 CET), so an hourly
// refresh picks a new day up within the hour without loading its site.
const (
	DefaultECBURL     = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
	DefaultECBRefresh = time.Hour
	// DefaultECBMaxAge tolerates a day of failed refreshes (24 attempts, more with the retries)
	// before the connector stops converting: a public site may be down for hours, but day-old
	// confirmations are the most a connector should trust for money.
	DefaultECBMaxAge  = 24 * time.Hour
	DefaultECBTimeout = 10 * time.Second
	// ecbMaxBody bounds the response: the daily file is ~2 KB, the 90-day history ~100 KB.
	ecbMaxBody = 1 << 20
	// ecbMinRetry is the first retry delay after a failed fetch; it doubles up to the refresh
	// interval.
	ecbMinRetry = 5 * time.Second
	ecbBase     = "EUR"
)

// ErrNoRates says that a backend that fetches its rates has none it may use: the first fetch
// has not succeeded yet, or the last good rates are older than their maximum age.
var ErrNoRates = errors.New("rates: no current exchange rates")

// NoRatesError says why a fetching backend cannot convert. Code maps it to T00: the sender did
// nothing wrong and the backend keeps retrying. Its text reaches the sender in the Reject, so
// it names neither the URL (a mirror's may hold credentials) nor the fetch error (internal
// addresses): both are in the connector's log at every failed fetch, and in Status.
type NoRatesError struct {
	Backend string
	Date    string        // the ECB date of the rates held, "" when none
	Age     time.Duration // since the rates held were fetched
	MaxAge  time.Duration
}

func (e *NoRatesError) Error() string {
	if e.Date == "" {
		return fmt.Sprintf("the %s backend has no exchange rates yet; it keeps fetching them, and packets between identical asset codes are unaffected", e.Backend)
	}
	return fmt.Sprintf("the %s backend's exchange rates (dated %s) were fetched %s ago, more than maxAge %s, so they are refused; it keeps fetching them",
		e.Backend, e.Date, e.Age.Round(time.Second), e.MaxAge)
}

// Is makes errors.Is(err, ErrNoRates) work.
func (e *NoRatesError) Is(target error) bool { return target == ErrNoRates }

// ecbConfig is CONNECTOR_BACKEND_CONFIG for the ecb backend. Durations are milliseconds, as
// every duration of the JS config. ratesApiUrl is the JS backend's name for url; mockData is
// the JS test hook, refused with a pointer to the static backend, which takes the same object.
type ecbConfig struct {
	URL             string          `json:"url"`
	RatesAPIURL     string          `json:"ratesApiUrl"`
	RefreshInterval *int64          `json:"refreshInterval"`
	MaxAge          *int64          `json:"maxAge"`
	Timeout         *int64          `json:"timeout"`
	MockData        json.RawMessage `json:"mockData"`
}

// ECB is the JS ecb backend: the European Central Bank's daily reference rates (units of each
// currency per euro), with the JS formula for scales and spread. Unlike JS, which fetches once
// at connect and fails the connector's start when the ECB cannot be reached, it fetches on
// demand and keeps its rates fresh:
//
//   - New does no I/O and starts no goroutine (the connector builds a backend for every config
//     reload and may discard it). The first rate asked for starts the first fetch and waits
//     for it, a packet no longer than its expiry (ScaledRateContext); later ones never wait:
//     when the rates are older than the refresh interval, a background fetch replaces them,
//     while the old ones keep serving.
//   - A failed fetch never replaces good rates; it is logged and retried after 5 s, doubling
//     up to the refresh interval.
//   - Rates fetched longer than maxAge ago are refused (*NoRatesError, T00), as are missing
//     ones: converting money at a stale rate is worse than not converting.
//   - Identical asset codes convert without a table (their price ratio is exactly 1 whatever
//     the price), so same-currency packets flow while the ECB is unreachable, and for codes the
//     ECB does not list (JS rejects those).
//
// At most one fetch runs at a time, bounded by the HTTP timeout whoever waits for it (a packet
// that gives up does not cancel it: the next packet finds its rates); Close cancels it and
// stops further fetches.
type ECB struct {
	url     string
	shown   string // url for logs and Status: without password or query
	refresh time.Duration
	maxAge  time.Duration
	maxBody int64
	client  *http.Client
	now     func() time.Time
	log     *slog.Logger

	snap atomic.Pointer[ecbSnapshot]

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the fetch in flight

	mu          sync.Mutex    // guards the fields below
	inflight    chan struct{} // closed when the fetch in flight ends; nil when none runs
	closed      bool
	failures    int       // consecutive failed fetches
	lastErr     string    // the last fetch error, "" after a success
	nextAttempt time.Time // no fetch before this, after a failure
}

// ecbSnapshot is one good fetch: immutable once stored.
type ecbSnapshot struct {
	table     *Static
	date      string
	fetchedAt time.Time
}

// NewECB parses an ecb backend's configuration. It does no I/O.
func NewECB(config json.RawMessage) (*ECB, error) {
	c, err := parseECBConfig(config)
	if err != nil {
		return nil, fmt.Errorf("backendConfig for ecb: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &ECB{
		url: c.URL, shown: shownURL(c.URL), refresh: ms(c.RefreshInterval, DefaultECBRefresh), maxAge: ms(c.MaxAge, DefaultECBMaxAge),
		maxBody: ecbMaxBody, client: &http.Client{Timeout: ms(c.Timeout, DefaultECBTimeout)},
		now: time.Now, log: slog.Default().With("component", "rates", "backend", NameECB),
		ctx: ctx, cancel: cancel,
	}, nil
}

// shownURL is u without its password and query (where API keys go), for logs and status.
func shownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}

func ms(v *int64, def time.Duration) time.Duration {
	if v == nil {
		return def
	}
	return time.Duration(*v) * time.Millisecond
}

func parseECBConfig(config json.RawMessage) (ecbConfig, error) {
	var c ecbConfig
	if t := bytes.TrimSpace(config); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return c, fmt.Errorf(`want {"url":"https://…/eurofxref-daily.xml","refreshInterval":3600000,"maxAge":86400000,"timeout":10000} (all optional): %w`, err)
		}
	}
	if len(c.MockData) > 0 {
		return c, errors.New(`"mockData" is the JS test hook; use the static backend with the same object as its backendConfig`)
	}
	if c.URL != "" && c.RatesAPIURL != "" && c.URL != c.RatesAPIURL {
		return c, errors.New(`"url" and "ratesApiUrl" (its JS name) differ; give one`)
	}
	if c.URL == "" {
		c.URL = c.RatesAPIURL
	}
	if c.URL == "" {
		c.URL = DefaultECBURL
	}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("url %q: want an absolute http or https URL", shownURL(c.URL))
	}
	for _, d := range []struct {
		name string
		v    *int64
	}{{"refreshInterval", c.RefreshInterval}, {"maxAge", c.MaxAge}, {"timeout", c.Timeout}} {
		if d.v != nil && *d.v <= 0 {
			return c, fmt.Errorf("%s %d: want a positive number of milliseconds", d.name, *d.v)
		}
	}
	if ms(c.MaxAge, DefaultECBMaxAge) <= ms(c.RefreshInterval, DefaultECBRefresh) {
		return c, fmt.Errorf("maxAge %s must be longer than refreshInterval %s, or the rates go stale between two refreshes",
			ms(c.MaxAge, DefaultECBMaxAge), ms(c.RefreshInterval, DefaultECBRefresh))
	}
	return c, nil
}

// Name is "ecb".
func (b *ECB) Name() string { return NameECB }

// Immutable is false: the rates change at every refresh, so the Converter must not cache them.
func (b *ECB) Immutable() bool { return false }

// Rate is price(dest)/price(source) from the ECB table, to 20 decimal places.
func (b *ECB) Rate(sourceAsset, destAsset string) (decimal.Decimal, error) {
	if sourceAsset == destAsset {
		return one, nil
	}
	t, err := b.table(context.Background())
	if err != nil {
		return decimal.Decimal{}, err
	}
	return t.Rate(sourceAsset, destAsset)
}

// ScaledRate is the JS ecb backend's formula, computed by the static table (see Static).
// Without usable rates it waits for a fetch up to the HTTP timeout; the packet path uses
// ScaledRateContext instead.
func (b *ECB) ScaledRate(src, dst Asset, spread decimal.Decimal) (decimal.Decimal, error) {
	return b.ScaledRateContext(context.Background(), src, dst, spread)
}

// ScaledRateContext is ScaledRate waiting no longer than ctx, which for a packet carries its
// expiry: rates that arrive after the packet has expired cannot help it. When ctx ends first
// the answer is the same *NoRatesError as after a failed fetch, and the fetch goes on for the
// packets that follow.
func (b *ECB) ScaledRateContext(ctx context.Context, src, dst Asset, spread decimal.Decimal) (decimal.Decimal, error) {
	if src.Code == dst.Code {
		// The prices cancel exactly: what JS computes for a listed code, without needing one.
		return OneToOne{}.ScaledRate(src, dst, spread)
	}
	t, err := b.table(ctx)
	if err != nil {
		return decimal.Decimal{}, err
	}
	return t.ScaledRate(src, dst, spread)
}

// Fetcher is a backend that fetches its rates (ecb): the admin API and the rates-age metric
// show its Status.
type Fetcher interface {
	Backend
	Status() FetchStatus
}

var (
	_ Fetcher        = (*ECB)(nil)
	_ ContextBackend = (*ECB)(nil)
)

// FetchStatus is what a fetching backend holds, for the admin API and the metrics.
type FetchStatus struct {
	URL         string
	Date        string                     // the ECB's date of the rates, "" when none
	FetchedAt   time.Time                  // zero when none
	Rates       map[string]decimal.Decimal // units per EUR, EUR included; nil when none
	Fresh       bool                       // the rates are younger than maxAge and usable
	LastError   string                     // the last fetch error, "" after a success
	NextAttempt time.Time                  // after a failure: the earliest retry
}

// Status reports the rates held and the state of the fetches. It starts no fetch.
func (b *ECB) Status() FetchStatus {
	st := FetchStatus{URL: b.shown}
	if s := b.snap.Load(); s != nil {
		st.Date, st.FetchedAt = s.date, s.fetchedAt
		st.Fresh = b.now().Sub(s.fetchedAt) <= b.maxAge
		st.Rates = make(map[string]decimal.Decimal, len(s.table.prices))
		for code, p := range s.table.prices {
			st.Rates[code] = p
		}
	}
	b.mu.Lock()
	st.LastError, st.NextAttempt = b.lastErr, b.nextAttempt
	b.mu.Unlock()
	return st
}

// Prefetch starts the first fetch now, so that the first packets need not wait for it.
func (b *ECB) Prefetch() {
	if b.snap.Load() == nil {
		b.startFetch(b.now())
	}
}

// Close cancels the fetch in flight, waits for it to end, and stops further fetches. The rates
// held keep answering (packets in flight may still convert with them).
func (b *ECB) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return nil
}

// table returns the rates to convert with, starting a refresh when they are due. It waits for
// the fetch only when it holds no usable rates (at start, and after an idle spell longer than
// maxAge), so that those packets are converted rather than refused; the wait ends with the
// fetch (bounded by the HTTP timeout), with Close, or with ctx (the packet's expiry), and
// whichever ends it, the rates are looked at again.
func (b *ECB) table(ctx context.Context) (*Static, error) {
	now := b.now()
	s := b.snap.Load()
	if s != nil && now.Sub(s.fetchedAt) < b.refresh {
		return s.table, nil
	}
	done := b.startFetch(now)
	if !b.usable(s, now) && done != nil {
		select {
		case <-done:
		case <-b.ctx.Done():
		case <-ctx.Done():
		}
		s, now = b.snap.Load(), b.now()
	}
	if !b.usable(s, now) {
		e := &NoRatesError{Backend: NameECB, MaxAge: b.maxAge}
		if s != nil {
			e.Date, e.Age = s.date, now.Sub(s.fetchedAt)
		}
		return nil, e
	}
	return s.table, nil
}

func (b *ECB) usable(s *ecbSnapshot, now time.Time) bool {
	return s != nil && now.Sub(s.fetchedAt) <= b.maxAge
}

// startFetch starts a background fetch unless the backend is closed or a failed fetch's retry
// delay has not passed, and returns the channel that the fetch in flight (this one, or one
// already running) closes when it ends; nil when none runs.
func (b *ECB) startFetch(now time.Time) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inflight != nil || b.closed || now.Before(b.nextAttempt) {
		return b.inflight
	}
	done := make(chan struct{})
	b.inflight = done
	b.wg.Add(1)
	go b.fetch(done)
	return done
}

func (b *ECB) fetch(done chan struct{}) {
	defer b.wg.Done()
	defer close(done)
	s, err := b.get(b.ctx)
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight = nil
	if err != nil {
		b.failures++
		b.lastErr = err.Error()
		b.nextAttempt = now.Add(retryDelay(b.failures, b.refresh))
		b.log.Warn("fetching exchange rates failed; keeping the previous rates, if any",
			"url", b.shown, "error", err, "failures", b.failures, "retryIn", retryDelay(b.failures, b.refresh))
		return
	}
	b.failures, b.lastErr, b.nextAttempt = 0, "", time.Time{}
	s.fetchedAt = now
	b.snap.Store(s)
	b.log.Info("exchange rates fetched", "url", b.shown, "date", s.date, "currencies", len(s.table.prices))
}

// retryDelay is ecbMinRetry doubled per consecutive failure, at most the refresh interval.
func retryDelay(failures int, refresh time.Duration) time.Duration {
	d := ecbMinRetry
	for i := 1; i < failures && d < refresh; i++ { // at most log2(refresh/5s) rounds
		d *= 2
	}
	return min(d, refresh)
}

// get fetches and parses the rates file.
func (b *ECB) get(ctx context.Context) (*ecbSnapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/xml, text/xml")
	resp, err := b.client.Do(req)
	if err != nil {
		var ue *url.Error // it repeats the URL, password and query included
		if errors.As(err, &ue) {
			ue.URL = b.shown
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, b.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(body)) > b.maxBody {
		return nil, fmt.Errorf("body larger than %d bytes; is the URL the daily rates file?", b.maxBody)
	}
	return parseECB(body)
}

// ecbEnvelope is the ECB file: gesmes:Envelope > Cube > Cube time=… > Cube currency=… rate=….
// Names match in any namespace, which is how encoding/xml treats a tag without one.
type ecbEnvelope struct {
	XMLName xml.Name `xml:"Envelope"`
	Days    []struct {
		Time  string `xml:"time,attr"`
		Rates []struct {
			Currency string `xml:"currency,attr"`
			Rate     string `xml:"rate,attr"`
		} `xml:"Cube"`
	} `xml:"Cube>Cube"`
}

// parseECB reads the file into a price table (units per EUR, EUR = 1, as JS). A history file
// (several days) gives its latest day. Rates are parsed as exact decimals.
func parseECB(body []byte) (*ecbSnapshot, error) {
	var env ecbEnvelope
	if err := xml.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("not an ECB rates file: %w", err)
	}
	day := -1
	for i, d := range env.Days {
		if _, err := time.Parse(time.DateOnly, d.Time); err != nil {
			return nil, fmt.Errorf("not an ECB rates file: day %q is not a date", d.Time)
		}
		if day < 0 || d.Time > env.Days[day].Time { // ISO dates order as strings
			day = i
		}
	}
	if day < 0 {
		return nil, errors.New("not an ECB rates file: no <Cube time=…> day")
	}
	d := env.Days[day]
	t := &Static{name: NameECB, base: ecbBase, prices: map[string]decimal.Decimal{ecbBase: one}}
	for _, r := range d.Rates {
		p, err := decimal.NewFromString(r.Rate)
		switch {
		case r.Currency == "" || r.Currency == ecbBase:
			err = fmt.Errorf("currency %q", r.Currency)
		case err != nil || p.Sign() <= 0:
			err = fmt.Errorf("currency %s: rate %q is not a positive decimal", r.Currency, r.Rate)
		case !t.prices[r.Currency].IsZero():
			err = fmt.Errorf("currency %s listed twice", r.Currency)
		}
		if err != nil {
			return nil, fmt.Errorf("ECB rates of %s: %w", d.Time, err)
		}
		t.prices[r.Currency] = p
	}
	if len(t.prices) == 1 {
		return nil, fmt.Errorf("ECB rates of %s: no currency", d.Time)
	}
	t.sortCodes()
	return &ecbSnapshot{table: t, date: d.Time}, nil
}
