package settlement

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// RequestTimeout bounds one request to an engine; a settlement that times out is retried with
// the same idempotency key.
const RequestTimeout = 15 * time.Second

// Client is the connector's side of the settlement engine API (RFC 38, connector → engine) for
// one engine.
type Client struct {
	base string // the engine's base URL, without a trailing slash
	hc   *http.Client
}

// NewClient returns a client of the engine at baseURL (http or https). hc nil: a client with
// RequestTimeout.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	if err := CheckEngineURL(baseURL); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Timeout: RequestTimeout}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: hc}, nil
}

// CheckEngineURL reports whether s can be a settlement engine's base URL. Its errors show the
// URL as RedactURL does.
func CheckEngineURL(s string) error {
	if p := EngineURLProblem(s); p != "" {
		return fmt.Errorf("settlement engine URL %q: %s", RedactURL(s), p)
	}
	return nil
}

// EngineURLProblem says what keeps s from being a settlement engine's base URL, "" if
// nothing; never with the URL in it (for callers that show it themselves, redacted).
func EngineURLProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		// Not url.Parse's own message: it quotes the part it choked on, which can be the
		// password (an unescaped / or # in it).
		return "not a URL (a password with / # ? or @ must be percent-encoded)"
	case u.Scheme != "http" && u.Scheme != "https":
		return "want http:// or https://"
	case u.Host == "":
		return "no host"
	case u.RawQuery != "" || u.Fragment != "":
		return "a base URL has no query or fragment"
	}
	return ""
}

// RedactURL is an engine URL fit for logs, errors and the admin API: a password in it (sent to
// the engine as basic auth) is replaced by "xxxxx".
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// errReplyTooLarge is a 2xx answer longer than an ILP Fulfill's data: the engine did what it
// was asked, but its answer cannot be passed on.
var errReplyTooLarge = fmt.Errorf("answer longer than %d bytes", ilp.MaxDataSize)

// StatusError is an engine's answer other than 2xx.
type StatusError struct {
	Op     string // "create account", "settle", "message"
	Status int
	Body   string // the start of the engine's answer, for the log
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("settlement engine: %s: HTTP %d", e.Op, e.Status)
	}
	return fmt.Sprintf("settlement engine: %s: HTTP %d: %s", e.Op, e.Status, e.Body)
}

// CreateAccount tells the engine about an account (POST /accounts). Engines answer 201; an
// account the engine already has is not an error.
func (c *Client) CreateAccount(ctx context.Context, id string) error {
	body, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	_, err := c.do(ctx, "create account", http.MethodPost, "/accounts", "application/json", "", body)
	return err
}

// Settle asks the engine to settle q with the account's peer (POST /accounts/:id/settlements).
// key is the idempotency key: a retry must send the same one. 200 and 201 with any body are
// success (interledger-rs and the Java engines differ there).
func (c *Client) Settle(ctx context.Context, id, key string, q Quantity) error {
	body, _ := json.Marshal(q)
	_, err := c.do(ctx, "settle", http.MethodPost, "/accounts/"+url.PathEscape(id)+"/settlements", "application/json", key, body)
	return err
}

// Message hands the engine a message from its peer's engine (POST /accounts/:id/messages) and
// returns the engine's reply.
func (c *Client) Message(ctx context.Context, id string, msg []byte) ([]byte, error) {
	return c.do(ctx, "message", http.MethodPost, "/accounts/"+url.PathEscape(id)+"/messages", "application/octet-stream", "", msg)
}

func (c *Client) do(ctx context.Context, op, method, path, ctype, key string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("settlement engine: %s: %w", op, err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", ctype)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("settlement engine: %s: %w", op, err)
	}
	defer resp.Body.Close()
	// A message reply goes into an ILP Fulfill, whose data holds at most ilp.MaxDataSize bytes.
	reply, err := io.ReadAll(io.LimitReader(resp.Body, ilp.MaxDataSize+1))
	if err != nil {
		return nil, fmt.Errorf("settlement engine: %s: reading the answer: %w", op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &StatusError{Op: op, Status: resp.StatusCode, Body: snippet(reply)}
	}
	if len(reply) > ilp.MaxDataSize {
		return nil, fmt.Errorf("settlement engine: %s: %w", op, errReplyTooLarge)
	}
	return reply, nil
}

// snippet is the start of an error body, printable, for a log line.
func snippet(b []byte) string {
	const max = 200
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.TrimSpace(s)
}
