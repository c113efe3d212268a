package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// withAccounts is newFake with n more accounts, acct0…, each with an empty row.
func withAccounts(n int) *fakeBackend {
	f := newFake()
	for i := range n {
		f.accounts = append(f.accounts, AccountInfo{ID: fmt.Sprintf("acct%d", i),
			Config: config.Account{Relation: config.RelationChild, Plugin: "ilp-plugin-btp", AssetCode: "USD", AssetScale: 9}})
	}
	return f
}

// TestGetRates: GET /rates is the JS matrix {src: {dst: rate}} with rates as JSON numbers
// written from their decimal strings; ?from= answers one row; the whole matrix is refused,
// with a pointer to ?from=, above maxRatesMatrixAccounts accounts.
func TestGetRates(t *testing.T) {
	vanished := newFake()
	vanished.accounts = append(vanished.accounts, AccountInfo{ID: "vanished"})
	broken := newFake()
	broken.accounts = append(broken.accounts, AccountInfo{ID: "broken"})
	tiny := newFake()
	// A rate JS prints as 1e-7: written out in full, the same number.
	tiny.pairRates = map[string]map[string]string{"alice": {"bob": "0.0000001"}, "bob": {"alice": "10000000000000000000000"}}
	tests := []struct {
		name   string
		b      *fakeBackend
		path   string
		status int
		want   string // the body, or for an error its error name and a part of its message
	}{
		{"matrix", newFake(), "/rates", 200, `{"alice":{"bob":0.000913705583756345},"bob":{"alice":1072.665}}`},
		{"no float on the way", tiny, "/rates", 200, `{"alice":{"bob":0.0000001},"bob":{"alice":10000000000000000000000}}`},
		{"other parameters ignored", newFake(), "/rates?x=1", 200, `{"alice":{"bob":0.000913705583756345},"bob":{"alice":1072.665}}`},
		{"one row", newFake(), "/rates?from=bob", 200, `{"bob":{"alice":1072.665}}`},
		{"a row without priced pairs", withAccounts(1), "/rates?from=acct0", 200, `{"acct0":{}}`},
		{"no accounts", &fakeBackend{}, "/rates", 200, `{}`},
		{"unknown account", newFake(), "/rates?from=zed", 404, "UnknownAccountError: account not found. accountId=zed"},
		{"empty from", newFake(), "/rates?from=", 400, "InvalidRequestError: from must name one account"},
		{"two froms", newFake(), "/rates?from=alice&from=bob", 400, "InvalidRequestError: from must name one account"},
		{"account removed meanwhile", vanished, "/rates", 200, `{"alice":{"bob":0.000913705583756345},"bob":{"alice":1072.665}}`},
		{"backend failure", broken, "/rates", 500, "InternalError: computing the rates from account broken: backend exploded"},
		{"at the bound", withAccounts(maxRatesMatrixAccounts - 2), "/rates", 200, ""},
		{"above the bound", withAccounts(maxRatesMatrixAccounts - 1), "/rates", 400,
			fmt.Sprintf("TooManyAccountsError: the connector has %d accounts", maxRatesMatrixAccounts+1)},
		{"above the bound, one row", withAccounts(maxRatesMatrixAccounts - 1), "/rates?from=alice", 200,
			`{"alice":{"bob":0.000913705583756345}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, NewHandler(tt.b, prometheus.NewRegistry(), Options{}), http.MethodGet, tt.path, "")
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status != http.StatusOK {
				e := decodeError(t, rec)
				if got := e.Error + ": " + e.Message; !strings.HasPrefix(got, tt.want) {
					t.Errorf("error %q, want it to start with %q", got, tt.want)
				}
				return
			}
			if got := rec.Body.String(); tt.want != "" && got != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestRatesWaitBounded: a backend that must fetch (ecb without usable rates) waits for its own
// fetch timeout, which may be longer than an admin client or the server's write timeout waits;
// every row of one GET /rates shares one deadline of at most ratesWait.
func TestRatesWaitBounded(t *testing.T) {
	for _, path := range []string{"/rates", "/rates?from=alice"} {
		t.Run(path, func(t *testing.T) {
			f := newFake()
			before := time.Now()
			do(t, NewHandler(f, prometheus.NewRegistry(), Options{}), http.MethodGet, path, "")
			after := time.Now()
			if len(f.rateWaits) == 0 {
				t.Fatal("AccountRates not called")
			}
			first := f.rateWaits[0]
			if first.Before(before.Add(ratesWait)) || first.After(after.Add(ratesWait)) {
				t.Errorf("deadline %v, want ratesWait after the request (%v … %v)", first, before.Add(ratesWait), after.Add(ratesWait))
			}
			for i, d := range f.rateWaits {
				if !d.Equal(first) {
					t.Errorf("row %d: deadline %v, want the request's one deadline %v", i, d, first)
				}
			}
		})
	}
}

// TestRatesBoundMessage: the refusal tells the user what to do instead.
func TestRatesBoundMessage(t *testing.T) {
	rec := do(t, NewHandler(withAccounts(maxRatesMatrixAccounts), prometheus.NewRegistry(), Options{}), http.MethodGet, "/rates", "")
	e := decodeError(t, rec)
	if rec.Code != http.StatusBadRequest || !strings.Contains(e.Message, "GET /rates?from=<accountId>") {
		t.Errorf("%d %+v; want 400 pointing at GET /rates?from=<accountId>", rec.Code, e)
	}
}
