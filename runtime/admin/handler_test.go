package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/prometheus/client_golang/prometheus"
)

func do(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, r))
	return rec
}

// TestGetShapes checks each JSON body byte for byte against the JS admin API's shapes.
func TestGetShapes(t *testing.T) {
	full := NewHandler(newFake(), prometheus.NewRegistry(), Options{})
	empty := NewHandler(&fakeBackend{}, prometheus.NewRegistry(), Options{})
	tests := []struct {
		name string
		h    http.Handler
		path string
		want string
	}{
		{"status", full, "/status",
			`{"balances":{"alice":"42","bob":"-7"},"connected":{"alice":true,"bob":false},` +
				`"localRoutingTable":{"test.conn.alice":{"nextHop":"alice","path":""},"test.peer":{"nextHop":"bob","path":"test.peer test.far"}}}`},
		{"accounts", full, "/accounts",
			`{"address":"test.conn","accounts":{` +
				`"alice":{"info":{"relation":"child","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":9,` +
				`"balance":{"minimum":"-Infinity","maximum":"1000","settleThreshold":"-10","settleTo":"5"},"maxPacketAmount":"500"},` +
				`"connected":true,"adminInfo":false},` +
				`"bob":{"info":{"relation":"peer","plugin":"ilp-plugin-http","assetCode":"EUR","assetScale":6,` +
				`"throughput":{"refillPeriod":1000,"incomingAmount":"100"},` +
				`"rateLimit":{"refillPeriod":60000,"refillCount":10000,"capacity":10000},` +
				`"deduplicate":{"cleanupInterval":30000,"packetLifetime":30000},"sendRoutes":true,"receiveRoutes":false},` +
				`"connected":false,"adminInfo":false}}}`},
		{"balance", full, "/balance",
			`{"accounts":{"alice":{"balance":"42","minimum":"-Infinity","maximum":"1000"},"bob":{"balance":"-7","minimum":"-50","maximum":"Infinity"}}}`},
		{"routing", full, "/routing",
			`{"routingTableId":"b7d6e1c2-0000-4000-8000-000000000001","currentEpoch":3,` +
				`"localRoutingTable":{"test.conn.alice":{"nextHop":"alice","path":""}},` +
				`"forwardingRoutingTable":{"test.conn.alice":{"nextHop":"alice","path":"test.conn"},"test.gone":null},` +
				`"routingLog":[{"prefix":"test.conn.alice","route":{"nextHop":"alice","path":"test.conn"},"epoch":1},{"prefix":"test.gone","epoch":3}],` +
				`"peers":{"bob":{"send":{"epoch":3,"mode":"SYNC"},"receive":{"routingTableId":"abc","epoch":2}},"carol":{}}}`},
		{"rates", full, "/rates", `{"alice":{"bob":0.000913705583756345},"bob":{"alice":1072.665}}`},
		{"rates backend", full, "/rates/backend", `{"backend":"static","rates":{"EUR":"1","USD":"1.0835"}}`},
		{"alerts", full, "/alerts",
			`{"alerts":[{"id":1700000000000,"accountId":"bob","triggeredBy":"test.peer","message":"exceeded maximum balance.",` +
				`"count":2,"createdAt":"2024-01-02T03:05:06.789Z","updatedAt":"2024-01-02T03:05:07.000Z"}]}`},
		{"query string ignored", full, "/rates/backend?x=1", `{"backend":"static","rates":{"EUR":"1","USD":"1.0835"}}`},
		{"empty rates", empty, "/rates", `{}`},
		{"empty status", empty, "/status", `{"balances":{},"connected":{},"localRoutingTable":{}}`},
		{"empty accounts", empty, "/accounts", `{"address":"unknown","accounts":{}}`},
		{"empty balance", empty, "/balance", `{"accounts":{}}`},
		{"empty routing", empty, "/routing",
			`{"routingTableId":"","currentEpoch":0,"localRoutingTable":{},"forwardingRoutingTable":{},"routingLog":[],"peers":{}}`},
		{"one-to-one rates", NewHandler(&fakeBackend{rates: RatesInfo{Backend: "one-to-one"}}, prometheus.NewRegistry(), Options{}),
			"/rates/backend", `{"backend":"one-to-one"}`},
		{"fetched rates", NewHandler(&fakeBackend{rates: RatesInfo{Backend: "ecb", Rates: map[string]string{"EUR": "1"},
			Source: &RatesSource{URL: "https://ecb/r.xml", Date: "2026-12-04", FetchedAt: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC), Fresh: true}}},
			prometheus.NewRegistry(), Options{}),
			"/rates/backend", `{"backend":"ecb","rates":{"EUR":"1"},"source":{"url":"https://ecb/r.xml","date":"2026-12-04","fetchedAt":"2026-12-06T08:00:00Z","fresh":true}}`},
		{"rates not fetched yet", NewHandler(&fakeBackend{rates: RatesInfo{Backend: "ecb", Source: &RatesSource{URL: "https://ecb/r.xml", LastError: "HTTP status 503"}}},
			prometheus.NewRegistry(), Options{}),
			"/rates/backend", `{"backend":"ecb","source":{"url":"https://ecb/r.xml","fresh":false,"lastError":"HTTP status 503"}}`},
		{"empty alerts", empty, "/alerts", `{"alerts":[]}`},
		{"settlements", full, "/settlements", `{"settlements":[{"account":"bob","idempotencyKey":"k1","engine":"http://eng:3000","amount":"1500"}]}`},
		{"no settlements", empty, "/settlements", `{"settlements":[]}`},
		{"empty stats", empty, "/stats", `[]`},
		{"healthz", empty, "/healthz", `{"status":"ok"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(t, tt.h, http.MethodGet, tt.path, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := rec.Body.String(); got != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAccountsNeverShowOptions(t *testing.T) {
	rec := do(t, NewHandler(newFake(), prometheus.NewRegistry(), Options{}), http.MethodGet, "/accounts", "")
	if strings.Contains(rec.Body.String(), "do-not-show") || strings.Contains(rec.Body.String(), "options") {
		t.Fatalf("plugin options leaked: %s", rec.Body)
	}
}

// TestNeverShowEngineCredentials: an engine URL may carry a password (sent to the engine as
// basic auth); GET /accounts and GET /settlements show it redacted, as the ecb backend's URL.
func TestNeverShowEngineCredentials(t *testing.T) {
	const engine = "http://ilp:s3cret@127.0.0.1:3000"
	f := newFake()
	f.accounts = []AccountInfo{{ID: "b", Config: config.Account{Relation: config.RelationPeer, Plugin: "ilp-plugin-btp",
		AssetCode: "USD", AssetScale: 9, SettlementEngine: &config.SettlementEngine{URL: engine}}}}
	f.settlements = []SettlementInfo{{Account: "b", Key: "k1", Engine: engine, Amount: 5}}
	h := NewHandler(f, prometheus.NewRegistry(), Options{})
	for _, path := range []string{"/accounts", "/settlements"} {
		body := do(t, h, http.MethodGet, path, "").Body.String()
		if strings.Contains(body, "s3cret") || !strings.Contains(body, "http://ilp:xxxxx@127.0.0.1:3000") {
			t.Errorf("GET %s: %s; want the engine URL with its password redacted", path, body)
		}
	}
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) jsError {
	t.Helper()
	var e jsError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Message == "" {
		t.Fatalf("want a JSON error body, got %q (%v)", rec.Body, err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	return e
}

func TestPostBalance(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		status    int
		errName   string
		msgHas    string
		wantCalls []string
	}{
		{"positive", `{"accountId":"alice","amountDiff":"100"}`, 204, "", "", []string{"alice:100"}},
		{"negative", `{"amountDiff":"-25","accountId":"alice"}`, 204, "", "", []string{"alice:-25"}},
		{"zero", `{"accountId":"alice","amountDiff":"0"}`, 204, "", "", []string{"alice:0"}},
		{"int64 max", `{"accountId":"alice","amountDiff":"9223372036854775807"}`, 204, "", "", []string{"alice:9223372036854775807"}},
		{"empty body", ``, 400, "InvalidJsonBodyError", "JSON object", nil},
		{"not json", `{accountId: alice}`, 400, "InvalidJsonBodyError", "JSON object", nil},
		{"array", `[]`, 400, "InvalidJsonBodyError", "JSON object", nil},
		{"null", `null`, 400, "InvalidJsonBodyError", "JSON object", nil},
		{"trailing garbage", `{"accountId":"alice","amountDiff":"1"} x`, 400, "InvalidJsonBodyError", "JSON object", nil},
		{"missing accountId", `{"amountDiff":"1"}`, 400, "InvalidJsonBodyError", "missing required property accountId", nil},
		{"missing amountDiff", `{"accountId":"alice"}`, 400, "InvalidJsonBodyError", "missing required property amountDiff", nil},
		{"extra property", `{"accountId":"alice","amountDiff":"1","note":"x"}`, 400, "InvalidJsonBodyError", `unknown property "note"`, nil},
		{"number amount", `{"accountId":"alice","amountDiff":1}`, 400, "InvalidJsonBodyError", "amountDiff must be a string", nil},
		{"null account", `{"accountId":null,"amountDiff":"1"}`, 400, "InvalidJsonBodyError", "accountId must be a string", nil},
		{"leading zero", `{"accountId":"alice","amountDiff":"01"}`, 400, "InvalidJsonBodyError", "must match", nil},
		{"minus zero", `{"accountId":"alice","amountDiff":"-0"}`, 400, "InvalidJsonBodyError", "must match", nil},
		{"plus sign", `{"accountId":"alice","amountDiff":"+5"}`, 400, "InvalidJsonBodyError", "must match", nil},
		{"decimal", `{"accountId":"alice","amountDiff":"1.5"}`, 400, "InvalidJsonBodyError", "must match", nil},
		{"empty amount", `{"accountId":"alice","amountDiff":""}`, 400, "InvalidJsonBodyError", "must match", nil},
		{"too large", `{"accountId":"alice","amountDiff":"9223372036854775808"}`, 400, "InvalidJsonBodyError", "out of range", nil},
		{"unknown account", `{"accountId":"ghost","amountDiff":"1"}`, 404, "UnknownAccountError", "accountId=ghost", nil},
		{"limit", `{"accountId":"capped","amountDiff":"1"}`, 409, "BalanceLimitError", "accountId=capped", nil},
		{"store failure", `{"accountId":"broken","amountDiff":"1"}`, 500, "InternalError", "disk full", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			rec := do(t, NewHandler(f, prometheus.NewRegistry(), Options{}), http.MethodPost, "/balance", tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status == http.StatusNoContent {
				if rec.Body.Len() != 0 {
					t.Errorf("204 with body %q", rec.Body)
				}
			} else {
				e := decodeError(t, rec)
				if e.Error != tt.errName || !strings.Contains(e.Message, tt.msgHas) {
					t.Errorf("error %+v, want name %s and message containing %q", e, tt.errName, tt.msgHas)
				}
			}
			if !slices.Equal(f.adjusted, tt.wantCalls) {
				t.Errorf("AdjustBalance calls %v, want %v", f.adjusted, tt.wantCalls)
			}
		})
	}
}

func TestPostBalanceBodyLimit(t *testing.T) {
	f := newFake()
	h := NewHandler(f, prometheus.NewRegistry(), Options{MaxBodyBytes: 32})
	rec := do(t, h, http.MethodPost, "/balance", `{"accountId":"alice","amountDiff":"1","pad":"`+strings.Repeat("x", 64)+`"}`)
	if rec.Code != http.StatusBadRequest || len(f.adjusted) != 0 {
		t.Fatalf("status %d calls %v", rec.Code, f.adjusted)
	}
	if e := decodeError(t, rec); !strings.Contains(e.Message, "cannot read body") {
		t.Errorf("message %q", e.Message)
	}
}

func TestDeleteAlert(t *testing.T) {
	tests := []struct {
		name          string
		path          string
		status        int
		wantDismissed []int64
		wantLeft      int
	}{
		{"existing", "/alerts/1700000000000", 204, []int64{1700000000000}, 0},
		{"already gone", "/alerts/17", 204, []int64{17}, 1},
		{"not a number", "/alerts/abc", 400, nil, 1},
		{"negative", "/alerts/-1", 400, nil, 1},
		{"nested", "/alerts/1/2", 400, nil, 1},
		{"empty id", "/alerts/", 400, nil, 1},
		{"overflow", "/alerts/99999999999999999999", 400, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			h := NewHandler(f, prometheus.NewRegistry(), Options{})
			rec := do(t, h, http.MethodDelete, tt.path, "")
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status == 400 {
				decodeError(t, rec)
			}
			if !slices.Equal(f.dismissed, tt.wantDismissed) || len(f.alerts) != tt.wantLeft {
				t.Errorf("dismissed %v (left %d), want %v (left %d)", f.dismissed, len(f.alerts), tt.wantDismissed, tt.wantLeft)
			}
			if got := do(t, h, http.MethodGet, "/alerts", ""); strings.Count(got.Body.String(), `"id"`) != tt.wantLeft {
				t.Errorf("GET /alerts after delete: %s", got.Body)
			}
		})
	}
}

func TestForgetSettlement(t *testing.T) {
	tests := []struct {
		name, path string
		status     int
		left       int // pending settlements after
	}{
		{"pending", "/settlements/k1", 204, 0},
		{"unknown", "/settlements/k2", 404, 1},
		{"empty key", "/settlements/", 400, 1},
		{"nested", "/settlements/k1/x", 400, 1},
		{"store error", "/settlements/broken", 500, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			h := NewHandler(f, prometheus.NewRegistry(), Options{})
			if rec := do(t, h, http.MethodDelete, tt.path, ""); rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if got := do(t, h, http.MethodGet, "/settlements", ""); strings.Count(got.Body.String(), `"idempotencyKey"`) != tt.left {
				t.Errorf("GET /settlements after: %s, want %d pending", got.Body, tt.left)
			}
		})
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	h := NewHandler(newFake(), prometheus.NewRegistry(), Options{})
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodGet, "/nope", 404, ""},
		{http.MethodGet, "/status/", 404, ""},
		{http.MethodGet, "/", 404, ""},
		{http.MethodDelete, "/accounts/alice", 405, "GET, POST"},
		{http.MethodDelete, "/status", 405, "GET"},
		{http.MethodPut, "/balance", 405, "GET, POST"},
		{http.MethodPost, "/metrics", 405, "GET"},
		{http.MethodGet, "/alerts/1", 405, "DELETE"},
		{http.MethodDelete, "/alerts", 405, "GET"},
		{http.MethodGet, "/rates/", 404, ""},
		{http.MethodGet, "/rates/backend/x", 404, ""},
		{http.MethodPost, "/rates", 405, "GET"},
		{http.MethodDelete, "/rates/backend", 405, "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := do(t, h, tt.method, tt.path, "")
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			decodeError(t, rec)
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

// TestAccountAdminInfo: JS's /accounts/:id (plugin admin info) answers as JS does for plugins
// without it — ours all are: 500 with the reason.
func TestAccountAdminInfo(t *testing.T) {
	h := NewHandler(newFake(), prometheus.NewRegistry(), Options{})
	for _, tt := range []struct {
		method, path, name, message string
	}{
		{http.MethodGet, "/accounts/alice", "NoAdminInfoError", "plugin has no admin info. account=alice"},
		{http.MethodPost, "/accounts/alice", "NoAdminInfoError", "plugin does not support sending admin info. account=alice"},
		{http.MethodGet, "/accounts/zed", "UnknownAccountError", "account does not exist. account=zed"},
	} {
		rec := do(t, h, tt.method, tt.path, `{}`)
		e := decodeError(t, rec)
		if rec.Code != http.StatusInternalServerError || e.Error != tt.name || !strings.HasPrefix(e.Message, tt.message) {
			t.Errorf("%s %s: %d %+v, want 500 %s %q", tt.method, tt.path, rec.Code, e, tt.name, tt.message)
		}
	}
}

func TestBalanceReadFailure(t *testing.T) {
	f := newFake()
	f.balancesErr = errors.New("redis: connection refused")
	h := NewHandler(f, prometheus.NewRegistry(), Options{})
	for _, path := range []string{"/balance", "/status"} {
		rec := do(t, h, http.MethodGet, path, "")
		if rec.Code != http.StatusInternalServerError {
			t.Fatalf("%s: status %d", path, rec.Code)
		}
		if e := decodeError(t, rec); !strings.Contains(e.Message, "connection refused") {
			t.Errorf("%s: message %q", path, e.Message)
		}
	}
}

func TestHealthzReady(t *testing.T) {
	var notReady error = errors.New("accounts not connected yet")
	h := NewHandler(newFake(), prometheus.NewRegistry(), Options{Ready: func() error { return notReady }})
	rec := do(t, h, http.MethodGet, "/healthz", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not connected") {
		t.Fatalf("not ready: %d %s", rec.Code, rec.Body)
	}
	notReady = nil
	if rec := do(t, h, http.MethodGet, "/healthz", ""); rec.Code != http.StatusOK {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body)
	}
}
