package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// DefaultMaxBodyBytes bounds a request body; the largest legitimate one, POST /balance,
// is well under a kilobyte.
const DefaultMaxBodyBytes = 64 << 10

// Options tune NewHandler. The zero value is ready to use.
type Options struct {
	// Log receives request failures (5xx); nil discards.
	Log *slog.Logger
	// Ready, when set, decides GET /healthz: nil error is 200, an error 503 with its
	// message. Unset, /healthz is 200 whenever the server answers.
	Ready func() error
	// MaxBodyBytes bounds request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// handler serves the admin routes.
type handler struct {
	b       Backend
	g       prometheus.Gatherer
	opts    Options
	metrics http.Handler
	routes  map[string]map[string]http.HandlerFunc // path → method → handler
}

// NewHandler returns the admin API over b, with GET /metrics and GET /stats read from g
// (usually the registry from NewRegistry, on which middleware.NewMetrics registered).
func NewHandler(b Backend, g prometheus.Gatherer, opts Options) http.Handler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	h := &handler{b: b, g: g, opts: opts,
		metrics: promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})}
	h.routes = map[string]map[string]http.HandlerFunc{
		"/status":        {http.MethodGet: h.getStatus},
		"/routing":       {http.MethodGet: h.getRouting},
		"/accounts":      {http.MethodGet: h.getAccounts},
		"/accounts/":     {http.MethodGet: h.accountAdminInfo, http.MethodPost: h.accountAdminInfo}, // prefix: /accounts/:id
		"/balance":       {http.MethodGet: h.getBalance, http.MethodPost: h.postBalance},
		"/rates":         {http.MethodGet: h.getRates},
		"/rates/backend": {http.MethodGet: h.getRatesBackend},
		"/stats":         {http.MethodGet: h.getStats},
		"/alerts":        {http.MethodGet: h.getAlerts},
		"/alerts/":       {http.MethodDelete: h.deleteAlert}, // prefix: /alerts/:id
		"/settlements":   {http.MethodGet: h.getSettlements},
		"/settlements/":  {http.MethodDelete: h.deleteSettlement}, // prefix: /settlements/:key
		"/metrics":       {http.MethodGet: h.metrics.ServeHTTP},
		"/healthz":       {http.MethodGet: h.healthz},
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	methods := h.routes[r.URL.Path]
	for route, m := range h.routes { // a route ending in "/" takes every path below it
		if methods == nil && strings.HasSuffix(route, "/") && strings.HasPrefix(r.URL.Path, route) {
			methods = m
		}
	}
	if methods == nil {
		writeError(w, http.StatusNotFound, "NotFoundError", "no such route: "+r.URL.Path)
		return
	}
	fn := methods[r.Method]
	if fn == nil {
		w.Header().Set("Allow", allow(methods))
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowedError",
			fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow(methods)))
		return
	}
	fn(w, r)
}

func allow(methods map[string]http.HandlerFunc) string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		if methods[m] != nil {
			out = append(out, m)
		}
	}
	return strings.Join(out, ", ")
}

func (h *handler) getStatus(w http.ResponseWriter, r *http.Request) {
	balances, err := h.b.Balances(r.Context())
	if err != nil {
		h.internal(w, r, "reading balances", err)
		return
	}
	writeJSON(w, renderStatus(balances, h.b.Accounts(), h.b.Routes()))
}

func (h *handler) getRouting(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, renderRouting(h.b.Routing()))
}

func (h *handler) getAccounts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, renderAccounts(h.b.Address(), h.b.Accounts()))
}

// accountAdminInfo answers JS's GET and POST /accounts/:id (plugin.getAdminInfo and
// sendAdminInfo) as JS does for plugins without them, which ours all are: 500 with the reason.
func (h *handler) accountAdminInfo(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/accounts/")
	known := slices.ContainsFunc(h.b.Accounts(), func(a AccountInfo) bool { return a.ID == id })
	switch {
	case !known:
		writeError(w, http.StatusInternalServerError, "UnknownAccountError", "account does not exist. account="+id)
	case r.Method == http.MethodGet:
		writeError(w, http.StatusInternalServerError, "NoAdminInfoError", "plugin has no admin info. account="+id+" (GET /accounts shows its link state)")
	default:
		writeError(w, http.StatusInternalServerError, "NoAdminInfoError", "plugin does not support sending admin info. account="+id)
	}
}

func (h *handler) getBalance(w http.ResponseWriter, r *http.Request) {
	balances, err := h.b.Balances(r.Context())
	if err != nil {
		h.internal(w, r, "reading balances", err)
		return
	}
	writeJSON(w, renderBalances(balances))
}

// maxRatesMatrixAccounts bounds the accounts for which GET /rates (without ?from=) answers the
// whole matrix. It holds N·(N−1) rates, each computed by the converter: 200 accounts make
// 39,800 (about a megabyte of JSON), which a person's tool still reads in one go; 10,000 would
// make 10^8 (gigabytes, and minutes of CPU taken from the packets). Above it, a client asks one
// row at a time with ?from=<accountId>, as many as it needs.
const maxRatesMatrixAccounts = 200

// ratesWait bounds how long GET /rates waits for a rate backend that must fetch (ecb without
// usable rates): its own fetch timeout may be far longer than an admin client waits, or than
// the admin server's write timeout, after which the answer would be lost anyway. Pairs not
// priced by then are left out, as for a packet that would be refused.
const ratesWait = 5 * time.Second

// getRates answers GET /rates as JS does (RateBackend.getStatus): {src: {dst: rate}} for
// every pair of distinct accounts; ?from=<accountId> (ours) answers that one row.
func (h *handler) getRates(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), ratesWait)
	defer cancel()
	r = r.WithContext(ctx)
	from, msg := rateSource(r.URL.Query())
	switch {
	case msg != "":
		writeError(w, http.StatusBadRequest, "InvalidRequestError", msg)
	case from != "":
		h.getRateRow(w, r, from)
	default:
		h.getRateMatrix(w, r)
	}
}

// rateSource reads the ?from= of GET /rates: the account, "" when absent, or a message
// saying what is wrong with it.
func rateSource(q url.Values) (from, msg string) {
	vs, ok := q["from"]
	if !ok {
		return "", ""
	}
	if len(vs) != 1 || vs[0] == "" {
		return "", "from must name one account: GET /rates?from=<accountId> (GET /accounts lists them)"
	}
	return vs[0], ""
}

func (h *handler) getRateRow(w http.ResponseWriter, r *http.Request, from string) {
	row, err := h.b.AccountRates(r.Context(), from)
	switch {
	case errors.Is(err, ErrUnknownAccount):
		writeError(w, http.StatusNotFound, "UnknownAccountError", "account not found. accountId="+from)
	case err != nil:
		h.internal(w, r, "computing the rates from account "+from, err)
	default:
		writeJSON(w, map[string]map[string]json.Number{from: renderRateRow(row)})
	}
}

func (h *handler) getRateMatrix(w http.ResponseWriter, r *http.Request) {
	accounts := h.b.Accounts()
	if n := len(accounts); n > maxRatesMatrixAccounts {
		writeError(w, http.StatusBadRequest, "TooManyAccountsError", fmt.Sprintf(
			"the connector has %d accounts, so %d rates: GET /rates answers the whole matrix only up to %d accounts; "+
				"ask one row at a time with GET /rates?from=<accountId> (GET /accounts lists them)",
			n, n*(n-1), maxRatesMatrixAccounts))
		return
	}
	out := make(map[string]map[string]json.Number, len(accounts))
	for _, a := range accounts {
		row, err := h.b.AccountRates(r.Context(), a.ID)
		if errors.Is(err, ErrUnknownAccount) {
			continue // removed by a reload since Accounts: the matrix is as of just after it
		}
		if err != nil {
			h.internal(w, r, "computing the rates from account "+a.ID, err)
			return
		}
		out[a.ID] = renderRateRow(row)
	}
	writeJSON(w, out)
}

// getRatesBackend is ours: what GET /rates answered before it took the JS shape (the backend,
// its asset rates, where a fetching backend got them), so that nothing is lost.
func (h *handler) getRatesBackend(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, renderRates(h.b.Rates()))
}

func (h *handler) getStats(w http.ResponseWriter, r *http.Request) {
	families, err := h.g.Gather()
	if err != nil && len(families) == 0 {
		h.internal(w, r, "gathering metrics", err)
		return
	}
	// A partial gather still serves what it has, as /metrics does (ContinueOnError).
	writeBody(w, renderStats(families))
}

func (h *handler) getAlerts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, renderAlerts(h.b.Alerts()))
}

// alertPath is the JS route's own check of DELETE /alerts/:id.
var alertPath = regexp.MustCompile(`^/alerts/(\d+)$`)

func (h *handler) deleteAlert(w http.ResponseWriter, r *http.Request) {
	m := alertPath.FindStringSubmatch(r.URL.Path)
	var id int64
	var err error
	if m != nil {
		id, err = strconv.ParseInt(m[1], 10, 64)
	}
	if m == nil || err != nil {
		writeError(w, http.StatusBadRequest, "InvalidAlertIdError",
			"invalid alert id in "+r.URL.Path+": expected /alerts/<decimal id> as listed by GET /alerts")
		return
	}
	// Deleting an alert that is already gone is not an error, as in JS: the caller's goal,
	// no such alert, holds.
	h.b.DismissAlert(id)
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) getSettlements(w http.ResponseWriter, r *http.Request) {
	s, err := h.b.Settlements(r.Context())
	if err != nil {
		h.internal(w, r, "listing pending settlements", err)
		return
	}
	writeJSON(w, renderSettlements(s))
}

// deleteSettlement forgets a pending settlement: for an operator who settled it by other
// means (its engine is gone). The balance is not changed.
func (h *handler) deleteSettlement(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/settlements/")
	if key == "" || strings.Contains(key, "/") {
		writeError(w, http.StatusBadRequest, "InvalidSettlementKeyError",
			"invalid settlement key in "+r.URL.Path+": expected /settlements/<idempotencyKey> as listed by GET /settlements")
		return
	}
	ok, err := h.b.ForgetSettlement(r.Context(), key)
	switch {
	case err != nil:
		h.internal(w, r, "forgetting a settlement", err)
	case !ok:
		writeError(w, http.StatusNotFound, "NotFoundError", "no pending settlement with idempotency key "+key)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) {
	if h.opts.Ready != nil {
		if err := h.opts.Ready(); err != nil {
			writeJSONStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "message": err.Error()})
			return
		}
	}
	writeJSON(w, map[string]string{"status": "ok"})
}

// amountDiffPattern is the JS schema's (schemas/BalanceUpdate.json).
var amountDiffPattern = regexp.MustCompile(`^(0|-?[1-9][0-9]*)$`)

func (h *handler) postBalance(w http.ResponseWriter, r *http.Request) {
	account, diff, msg := h.parseBalanceUpdate(w, r)
	if msg != "" {
		writeError(w, http.StatusBadRequest, "InvalidJsonBodyError", "invalid balance update: "+msg)
		return
	}
	err := h.b.AdjustBalance(r.Context(), account, diff)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrUnknownAccount):
		writeError(w, http.StatusNotFound, "UnknownAccountError", "account not found. accountId="+account)
	case errors.Is(err, store.ErrAboveMaximum), errors.Is(err, store.ErrBelowMinimum), errors.Is(err, store.ErrOverflow):
		writeError(w, http.StatusConflict, "BalanceLimitError",
			fmt.Sprintf("balance change refused. accountId=%s amountDiff=%d: %v", account, diff, err))
	default:
		h.internal(w, r, "adjusting balance", err)
	}
}

// parseBalanceUpdate validates a POST /balance body against the JS schema: an object with
// exactly the string properties accountId and amountDiff, amountDiff an integer without
// leading zeros. It returns a message saying what is wrong, or "".
func (h *handler) parseBalanceUpdate(w http.ResponseWriter, r *http.Request) (string, int64, string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		return "", 0, "cannot read body: " + err.Error()
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return "", 0, `body must be a JSON object {"accountId": "<id>", "amountDiff": "<integer>"}`
	}
	for k := range fields {
		if k != "accountId" && k != "amountDiff" {
			return "", 0, fmt.Sprintf("unknown property %q; only accountId and amountDiff are allowed", k)
		}
	}
	var account, amount string
	if msg := stringField(fields, "accountId", &account); msg != "" {
		return "", 0, msg
	}
	if msg := stringField(fields, "amountDiff", &amount); msg != "" {
		return "", 0, msg
	}
	if !amountDiffPattern.MatchString(amount) {
		return "", 0, fmt.Sprintf(`amountDiff %q must match "^(0|-?[1-9][0-9]*)$" (an integer string, no sign on zero, no leading zeros)`, amount)
	}
	diff, err := strconv.ParseInt(amount, 10, 64)
	if err != nil {
		return "", 0, fmt.Sprintf("amountDiff %s is out of range: balances are 64-bit signed integers", amount)
	}
	return account, diff, ""
}

func stringField(fields map[string]json.RawMessage, name string, dst *string) string {
	raw, ok := fields[name]
	if !ok {
		return "missing required property " + name
	}
	if err := json.Unmarshal(raw, dst); err != nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "property " + name + " must be a string"
	}
	return ""
}

// internal answers 500 for a failure of the connector, not of the request, and logs it.
func (h *handler) internal(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.opts.Log.Error("admin api request failed", "method", r.Method, "path", r.URL.Path, "op", what, "err", err)
	writeError(w, http.StatusInternalServerError, "InternalError", what+": "+err.Error())
}

type jsError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, name, msg string) {
	writeJSONStatus(w, status, jsError{Error: name, Message: msg})
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	body, err := marshalJS(v)
	if err != nil { // only a programming error: every shape here is marshalable
		status, body = http.StatusInternalServerError, []byte(`{"error":"InternalError","message":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeBody(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// marshalJS encodes v as JSON.stringify would: no HTML escaping, no trailing newline.
func marshalJS(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
