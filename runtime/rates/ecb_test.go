package rates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testclock"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/shopspring/decimal"
)

// ecbXML is a rates file in the shape of the ECB's eurofxref-daily.xml, with the prices of
// staticCfg, so that the JS-checked amounts of the static backend apply.
func ecbXML(date string, rates ...string) string {
	if len(rates) == 0 {
		rates = []string{"USD", "1.08", "JPY", "162.5", "XAU", "3", "HALF", "0.5"}
	}
	var cubes strings.Builder
	for i := 0; i+1 < len(rates); i += 2 {
		fmt.Fprintf(&cubes, "\t\t\t<Cube currency='%s' rate='%s'/>\n", rates[i], rates[i+1])
	}
	return `<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
	<gesmes:subject>Reference rates</gesmes:subject>
	<gesmes:Sender>
		<gesmes:name>European Central Bank</gesmes:name>
	</gesmes:Sender>
	<Cube>
		<Cube time='` + date + `'>
` + cubes.String() + `		</Cube>
	</Cube>
</gesmes:Envelope>
`
}

// ecbServer serves whatever status and body the test sets, on 127.0.0.1, and counts requests.
type ecbServer struct {
	*httptest.Server
	mu       sync.Mutex
	status   int
	body     string
	requests atomic.Int64
}

func newECBServer(t *testing.T, status int, body string) *ecbServer {
	s := &ecbServer{status: status, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *ecbServer) set(status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func newTestECB(t *testing.T, url, extra string) (*ECB, *testclock.Clock) {
	t.Helper()
	b, err := NewECB(json.RawMessage(`{"url":"` + url + `"` + extra + `}`))
	if err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Date(2026, 5, 11, 15, 0, 0, 0, time.UTC))
	b.now, b.log = clk.Now, slog.New(slog.DiscardHandler)
	t.Cleanup(func() { _ = b.Close() })
	return b, clk
}

// convert asks for a conversion and then waits for the fetch it may have started, so the next
// step of a test sees its result.
func convert(b *ECB, amount uint64, src, dst Asset, spread decimal.Decimal) (uint64, error) {
	out, err := Convert(b, amount, src, dst, spread)
	b.wg.Wait()
	return out, err
}

func TestECBConvertMatchesJS(t *testing.T) {
	srv := newECBServer(t, http.StatusOK, ecbXML("2026-05-11"))
	b, _ := newTestECB(t, srv.URL, "")
	a := func(code string, scale uint8) Asset { return Asset{code, scale} }
	tests := []struct {
		name     string
		amount   uint64
		src, dst Asset
		spread   decimal.Decimal
		want     uint64
	}{
		{"EUR→USD", 100, a("EUR", 2), a("USD", 2), zero, 108},
		{"USD→EUR", 100, a("USD", 2), a("EUR", 2), zero, 92},
		{"USD→EUR spread and scale up", 1000, a("USD", 2), a("EUR", 9), jsSpread, 9240740740},
		{"JPY→USD cross rate with scales and spread", 123456789012345, a("JPY", 0), a("USD", 2), jsSpread, 81887178750194},
		{"USD→USD scale change", 100, a("USD", 2), a("USD", 9), jsSpread, 998000000},
		{"XRP→XRP not listed, same code", 1000, a("XRP", 9), a("XRP", 6), zero, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := convert(b, tc.amount, tc.src, tc.dst, tc.spread)
			if err != nil || got != tc.want {
				t.Fatalf("Convert(%d) = %d, %v; want %d", tc.amount, got, err, tc.want)
			}
		})
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d fetches, want 1 (rates younger than the refresh interval are reused)", n)
	}
	if r, err := b.Rate("EUR", "JPY"); err != nil || !r.Equal(decimal.RequireFromString("162.5")) {
		t.Errorf("Rate(EUR, JPY) = %s, %v", r, err)
	}
	st := b.Status()
	if st.Date != "2026-05-11" || !st.Fresh || !st.Rates["EUR"].Equal(one) || !st.Rates["USD"].Equal(decimal.RequireFromString("1.08")) {
		t.Errorf("Status = %+v", st)
	}
}

func TestECBUnknownCurrency(t *testing.T) {
	srv := newECBServer(t, http.StatusOK, ecbXML("2026-05-11"))
	b, _ := newTestECB(t, srv.URL, "")
	_, err := convert(b, 100, Asset{"XRP", 9}, Asset{"USD", 2}, zero)
	if !errors.Is(err, ErrUnknownAsset) || Code(err) != ilp.CodeInternalError {
		t.Fatalf("err = %v (code %s), want an unknown asset (T00)", err, Code(err))
	}
	for _, want := range []string{`asset "XRP" in the ecb backend`, "EUR, HALF, JPY, USD, XAU", "use the static backend"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

func TestECBFirstFetchFailsThenSucceeds(t *testing.T) {
	srv := newECBServer(t, http.StatusServiceUnavailable, "down")
	b, clk := newTestECB(t, srv.URL, "")
	usd, eur := Asset{"USD", 2}, Asset{"EUR", 2}

	_, err := convert(b, 100, usd, eur, zero)
	if !errors.Is(err, ErrNoRates) || Code(err) != ilp.CodeInternalError {
		t.Fatalf("err = %v, want no rates (T00)", err)
	}
	if !strings.Contains(err.Error(), "ecb backend has no exchange rates yet") || strings.Contains(err.Error(), srv.URL) {
		t.Errorf("%q: want no rates said, and not the URL (the sender reads it)", err)
	}
	if st := b.Status(); !strings.Contains(st.LastError, "503") {
		t.Errorf("Status().LastError = %q, want the fetch error", st.LastError)
	}
	if got, err := convert(b, 100, usd, Asset{"USD", 2}, zero); err != nil || got != 100 {
		t.Errorf("same-code packet without rates = %d, %v; want 100", got, err)
	}
	// Within the retry delay nothing is fetched: a down site is not hammered by every packet.
	clk.Add(ecbMinRetry - time.Millisecond)
	_, _ = convert(b, 100, usd, eur, zero)
	if n := srv.requests.Load(); n != 1 {
		t.Fatalf("%d fetches within the retry delay, want 1", n)
	}
	clk.Add(time.Millisecond)
	srv.set(http.StatusOK, ecbXML("2026-05-11"))
	// Without rates, the packet that starts the retry waits for it.
	if got, err := convert(b, 100, usd, eur, zero); err != nil || got != 92 {
		t.Fatalf("after the retry = %d, %v; want 92", got, err)
	}
	if st := b.Status(); st.LastError != "" || !st.NextAttempt.IsZero() {
		t.Errorf("Status after success = %+v", st)
	}
}

func TestECBBadFetchKeepsRatesUntilMaxAge(t *testing.T) {
	tests := []struct {
		name, body, wantErr string
		status              int
	}{
		{"malformed XML", `<gesmes:Envelope><Cube><Cube time='2026-05-12'>`, "not an ECB rates file", http.StatusOK},
		{"bad rate", ecbXML("2026-05-12", "USD", "1,09"), `rate "1,09" is not a positive decimal`, http.StatusOK},
		{"oversized body", ecbXML("2026-05-12") + strings.Repeat(" ", 4096), "body larger than 2048 bytes", http.StatusOK},
		{"HTTP error", "", "HTTP status 500", http.StatusInternalServerError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newECBServer(t, http.StatusOK, ecbXML("2026-05-11"))
			b, clk := newTestECB(t, srv.URL, `,"refreshInterval":60000,"maxAge":600000`)
			b.maxBody = 2048
			usd, eur := Asset{"USD", 2}, Asset{"EUR", 2}
			if got, err := convert(b, 100, usd, eur, zero); err != nil || got != 92 {
				t.Fatalf("first fetch: %d, %v", got, err)
			}
			srv.set(tc.status, tc.body)
			clk.Add(time.Minute) // due: this packet starts a refresh, which fails
			if got, err := convert(b, 100, usd, eur, zero); err != nil || got != 92 {
				t.Fatalf("during the refresh: %d, %v; want the previous rates", got, err)
			}
			b.wg.Wait() // the refresh has failed
			st := b.Status()
			if !strings.Contains(st.LastError, tc.wantErr) || st.Date != "2026-05-11" || !st.Fresh {
				t.Fatalf("Status = %+v, want the previous rates and an error with %q", st, tc.wantErr)
			}
			clk.Add(9*time.Minute + time.Second)      // 10 min 1 s since the good fetch: stale
			_, err := convert(b, 100, usd, eur, zero) // waits for a fetch, which fails again
			if !errors.Is(err, ErrNoRates) || !strings.Contains(err.Error(), "dated 2026-05-11") ||
				!strings.Contains(err.Error(), "more than maxAge 10m0s") {
				t.Fatalf("stale: err = %v", err)
			}
			if n := srv.requests.Load(); n != 3 {
				t.Errorf("%d fetches, want 3: the stale rates had the packet wait for a fetch", n)
			}
			if b.Status().Fresh {
				t.Error("Status says fresh")
			}
		})
	}
}

// TestECBIdleLongerThanMaxAge: a connector idle past maxAge has the next packet wait for a
// fetch instead of refusing it with rates it could have had in a moment.
func TestECBIdleLongerThanMaxAge(t *testing.T) {
	srv := newECBServer(t, http.StatusOK, ecbXML("2026-05-08"))
	b, clk := newTestECB(t, srv.URL, "")
	usd, eur := Asset{"USD", 2}, Asset{"EUR", 2}
	if got, err := convert(b, 100, usd, eur, zero); err != nil || got != 92 {
		t.Fatalf("first: %d, %v", got, err)
	}
	srv.set(http.StatusOK, ecbXML("2026-05-11", "USD", "1.25"))
	clk.Add(DefaultECBMaxAge + time.Hour) // a long weekend without packets
	if got, err := convert(b, 100, usd, eur, zero); err != nil || got != 80 {
		t.Fatalf("after the idle spell: %d, %v; want 80 at the new rate", got, err)
	}
}

// TestECBErrorsHideTheURLsSecrets: a mirror URL's password and query reach neither the fetch
// error (logged, and shown by Status) nor Status's URL.
func TestECBErrorsHideTheURLsSecrets(t *testing.T) {
	srv := newECBServer(t, http.StatusOK, ecbXML("2026-05-11"))
	srv.Close() // refused: the client's error names the URL
	b, _ := newTestECB(t, strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1)+"/r.xml?apikey=k3y", "")
	if _, err := b.Rate("USD", "EUR"); !errors.Is(err, ErrNoRates) {
		t.Fatalf("err = %v, want no rates", err)
	}
	st := b.Status()
	if st.LastError == "" || strings.Contains(st.LastError+st.URL, "s3cret") || strings.Contains(st.LastError+st.URL, "k3y") {
		t.Errorf("Status = %+v: a secret of the URL shows", st)
	}
}

func TestECBRefreshReplacesRates(t *testing.T) {
	srv := newECBServer(t, http.StatusOK, ecbXML("2026-05-11"))
	b, clk := newTestECB(t, srv.URL, "")
	c := NewConverter(b) // the connector's path: must not cache a live backend's rates
	usd, eur := Asset{"USD", 2}, Asset{"EUR", 2}
	if got, err := c.Convert(100, eur, usd, zero); err != nil || got != 108 {
		t.Fatalf("= %d, %v", got, err)
	}
	srv.set(http.StatusOK, ecbXML("2026-05-12", "USD", "1.2"))
	clk.Add(DefaultECBRefresh)
	_, _ = c.Convert(100, eur, usd, zero)
	b.wg.Wait()
	if got, err := c.Convert(100, eur, usd, zero); err != nil || got != 120 {
		t.Fatalf("after the refresh = %d, %v; want 120", got, err)
	}
	if _, err := c.Convert(100, eur, Asset{"JPY", 0}, zero); !errors.Is(err, ErrUnknownAsset) {
		t.Errorf("a currency gone from the new file: err = %v", err)
	}
}

// TestECBCloseStopsFetching checks that Close ends the fetch in flight (no goroutine left)
// and that no fetch starts afterwards.
func TestECBCloseStopsFetching(t *testing.T) {
	entered := make(chan struct{}, 1)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		entered <- struct{}{}
		<-r.Context().Done() // hangs until the client gives up
	}))
	defer srv.Close()
	b, _ := newTestECB(t, srv.URL, "")
	done := make(chan error, 1)
	go func() { _, err := b.Rate("USD", "EUR"); done <- err }()
	<-entered
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	fetching := b.inflight != nil
	b.mu.Unlock()
	if fetching {
		t.Fatal("a fetch is still running after Close")
	}
	if err := <-done; !errors.Is(err, ErrNoRates) {
		t.Fatalf("the waiting lookup: err = %v, want no rates", err)
	}
	if _, err := b.Rate("USD", "EUR"); !errors.Is(err, ErrNoRates) {
		t.Fatalf("after Close: err = %v", err)
	}
	b.wg.Wait()
	if n := requests.Load(); n != 1 {
		t.Errorf("%d fetches, want 1: none after Close", n)
	}
}

func TestParseECB(t *testing.T) {
	history := strings.Replace(ecbXML("2026-05-08", "USD", "1.07"), "</Cube>\n\t</Cube>",
		"</Cube>\n\t\t<Cube time='2026-05-11'><Cube currency='USD' rate='1.0800000000000000001'/></Cube>\n\t</Cube>", 1)
	tests := []struct {
		name, body      string
		wantDate, price string // USD's price
		wantErr         string
	}{
		{"daily file", ecbXML("2026-05-11"), "2026-05-11", "1.08", ""},
		{"history gives the latest day, every digit", history, "2026-05-11", "1.0800000000000000001", ""},
		{"not XML", "<html>", "", "", "not an ECB rates file"},
		{"other root", "<Cube><Cube time='2026-05-11'/></Cube>", "", "", "not an ECB rates file"},
		{"no day", `<gesmes:Envelope xmlns:gesmes="g"><Cube/></gesmes:Envelope>`, "", "", "no <Cube time=…> day"},
		{"bad date", ecbXML("11/05/2026"), "", "", `day "11/05/2026" is not a date`},
		{"no currency", ecbXML("2026-05-11", "x"), "", "", "no currency"},
		{"zero rate", ecbXML("2026-05-11", "USD", "0"), "", "", `rate "0" is not a positive decimal`},
		{"negative rate", ecbXML("2026-05-11", "USD", "-1"), "", "", "not a positive decimal"},
		{"twice", ecbXML("2026-05-11", "USD", "1", "USD", "2"), "", "", "USD listed twice"},
		{"EUR listed", ecbXML("2026-05-11", "EUR", "2"), "", "", `currency "EUR"`},
		{"empty code", ecbXML("2026-05-11", "", "2"), "", "", `currency ""`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseECB([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || s.date != tc.wantDate || !s.table.prices["USD"].Equal(decimal.RequireFromString(tc.price)) || !s.table.prices["EUR"].Equal(one) {
				t.Fatalf("parseECB = %+v, %v", s, err)
			}
		})
	}
}

func TestNewECBConfig(t *testing.T) {
	tests := []struct {
		name, config            string
		wantURL                 string
		wantRefresh, wantMaxAge time.Duration
		wantTimeout             time.Duration
		wantErr                 string
	}{
		{"defaults", ``, DefaultECBURL, time.Hour, 24 * time.Hour, 10 * time.Second, ""},
		{"empty object", `{}`, DefaultECBURL, time.Hour, 24 * time.Hour, 10 * time.Second, ""},
		{"all set", `{"url":"http://127.0.0.1:1/r.xml","refreshInterval":60000,"maxAge":120000,"timeout":500}`, "http://127.0.0.1:1/r.xml", time.Minute, 2 * time.Minute, 500 * time.Millisecond, ""},
		{"JS name of the URL", `{"ratesApiUrl":"https://mirror.example/r.xml"}`, "https://mirror.example/r.xml", time.Hour, 24 * time.Hour, 10 * time.Second, ""},
		{"both URLs differ", `{"url":"https://a/x","ratesApiUrl":"https://b/x"}`, "", 0, 0, 0, `"url" and "ratesApiUrl"`},
		{"mockData", `{"mockData":{"base":"EUR","rates":{"USD":1.1}}}`, "", 0, 0, 0, "use the static backend"},
		{"relative URL", `{"url":"/rates.xml"}`, "", 0, 0, 0, "want an absolute http or https URL"},
		{"ftp URL", `{"url":"ftp://host/r.xml"}`, "", 0, 0, 0, "want an absolute http or https URL"},
		{"zero refresh", `{"refreshInterval":0}`, "", 0, 0, 0, "refreshInterval 0: want a positive"},
		{"negative timeout", `{"timeout":-1}`, "", 0, 0, 0, "timeout -1: want a positive"},
		{"fractional ms", `{"maxAge":1.5}`, "", 0, 0, 0, "backendConfig for ecb: want"},
		{"maxAge not above refresh", `{"refreshInterval":60000,"maxAge":60000}`, "", 0, 0, 0, "maxAge 1m0s must be longer than refreshInterval 1m0s"},
		{"unknown field", `{"refresh":1}`, "", 0, 0, 0, `unknown field "refresh"`},
		{"not an object", `[1]`, "", 0, 0, 0, "backendConfig for ecb: want"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(NameECB, json.RawMessage(tc.config))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e := b.(*ECB)
			defer e.Close()
			if e.url != tc.wantURL || e.refresh != tc.wantRefresh || e.maxAge != tc.wantMaxAge || e.client.Timeout != tc.wantTimeout {
				t.Errorf("got url %s refresh %s maxAge %s timeout %s", e.url, e.refresh, e.maxAge, e.client.Timeout)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	tests := []struct {
		failures int
		refresh  time.Duration
		want     time.Duration
	}{
		{1, time.Hour, 5 * time.Second},
		{2, time.Hour, 10 * time.Second},
		{4, time.Hour, 40 * time.Second},
		{10, time.Hour, 2560 * time.Second},
		{11, time.Hour, time.Hour},
		{1 << 30, time.Hour, time.Hour}, // the loop stops at the cap, not at the count
		{1, time.Second, time.Second},
	}
	for _, tc := range tests {
		if got := retryDelay(tc.failures, tc.refresh); got != tc.want {
			t.Errorf("retryDelay(%d, %s) = %s, want %s", tc.failures, tc.refresh, got, tc.want)
		}
	}
}

// heldECBServer serves ecbXML on 127.0.0.1, but holds each request until release is called;
// entered receives once per request that arrived.
type heldECBServer struct {
	*httptest.Server
	entered  chan struct{}
	release  func()
	requests atomic.Int64
}

func newHeldECBServer(t *testing.T) *heldECBServer {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	s := &heldECBServer{entered: make(chan struct{}, 8), release: func() { once.Do(func() { close(gate) }) }}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.entered <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done(): // the client gave up (Close): nothing to answer
			return
		}
		_, _ = w.Write([]byte(ecbXML("2026-05-11")))
	}))
	t.Cleanup(s.Close)
	t.Cleanup(s.release) // runs first: a failed test must not leave a handler held
	return s
}

// TestECBPacketWaitEndsWithItsContext: a packet that arrives before the first fetch ends waits
// no longer than its context (its expiry), gets the usual no-rates error (no URL, no fetch
// error), and leaves the fetch running, so the next packet converts with its rates.
func TestECBPacketWaitEndsWithItsContext(t *testing.T) {
	tests := []struct {
		name string
		// packet returns the packet's context; it is called once the fetch is held by the server.
		packet func(t *testing.T) context.Context
	}{
		{"cancelled while waiting", func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			go func() { time.Sleep(time.Millisecond); cancel() }()
			return ctx
		}},
		{"expires while waiting", func(t *testing.T) context.Context {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		}},
		{"already expired", func(t *testing.T) context.Context {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return ctx
		}},
	}
	usd, eur := Asset{"USD", 2}, Asset{"EUR", 2}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newHeldECBServer(t)
			b, _ := newTestECB(t, srv.URL, "")
			c := NewConverter(b)
			b.Prefetch()
			<-srv.entered // the fetch is in flight and held

			ctx := tc.packet(t)
			_, err := c.ConvertContext(ctx, 100, usd, eur, zero)
			want := (&NoRatesError{Backend: NameECB, MaxAge: b.maxAge}).Error()
			if !errors.Is(err, ErrNoRates) || Code(err) != ilp.CodeInternalError || err.Error() != want {
				t.Fatalf("err = %v (code %s), want the no-rates error %q (T00)", err, Code(err), want)
			}
			if ctx.Err() == nil {
				t.Fatal("the wait ended before the packet's context")
			}
			b.mu.Lock()
			fetching := b.inflight != nil
			b.mu.Unlock()
			if !fetching {
				t.Fatal("the fetch ended with the packet's wait; it must go on")
			}

			srv.release()
			b.wg.Wait() // the held fetch ends with the rates
			if got, err := c.ConvertContext(context.Background(), 100, usd, eur, zero); err != nil || got != 92 {
				t.Fatalf("next packet = %d, %v; want 92 from the fetch the first one left running", got, err)
			}
			if n := srv.requests.Load(); n != 1 {
				t.Errorf("%d fetches, want 1", n)
			}
		})
	}
}
