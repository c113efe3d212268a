package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// MaxRetryInterval is RFC 38's cap on the wait between two attempts of a request.
const MaxRetryInterval = time.Hour

// Backoff is how long to wait before attempt n+1 after n failed attempts (n ≥ 1).
type Backoff func(n int) time.Duration

// ExponentialBackoff doubles base per attempt up to max (at most MaxRetryInterval) and
// draws the wait in [d/2, d] so that engines restarted together do not retry in step.
func ExponentialBackoff(base, max time.Duration) Backoff {
	max = min(max, MaxRetryInterval)
	return func(n int) time.Duration {
		d := max
		if n < 63 && base<<(n-1) > 0 && base<<(n-1) < max {
			d = base << (n - 1)
		}
		return d/2 + rand.N(d/2+1)
	}
}

// StatusError is a non-2xx answer of the connector.
type StatusError struct {
	Status int
	Body   string // the start of it, for the log
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("connector answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

// maxErrorBody bounds what is read of a failed answer.
const maxErrorBody = 4 << 10

// connector is the client of the connector's RFC 38 API (the accounting system).
type connector struct {
	base    string
	http    *http.Client
	timeout time.Duration
}

func (c *connector) url(account, what string) string {
	return c.base + "/accounts/" + url.PathEscape(account) + "/" + what
}

// post sends body and returns the answer's status and body (at most max bytes).
func (c *connector) post(ctx context.Context, u, ctype string, hdr http.Header, body []byte, max int64) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max))
	return resp.StatusCode, b, err
}

// credit asks the connector once to credit c.
func (c *connector) credit(ctx context.Context, cr Credit) (int, error) {
	body, err := json.Marshal(cr.Quantity)
	if err != nil {
		return 0, err
	}
	hdr := http.Header{"Idempotency-Key": {cr.Key}}
	status, b, err := c.post(ctx, c.url(cr.Account, "settlements"), "application/json", hdr, body, maxErrorBody)
	if err != nil {
		return status, err
	}
	if status/100 != 2 {
		return status, &StatusError{Status: status, Body: string(b)}
	}
	return status, nil
}

// message forwards msg to the peer's engine through the connector.
func (c *connector) message(ctx context.Context, account string, msg []byte) ([]byte, error) {
	status, b, err := c.post(ctx, c.url(account, "messages"), "application/octet-stream", nil, msg, maxMessageBytes)
	if err != nil {
		return nil, err
	}
	if status/100 != 2 {
		return nil, &StatusError{Status: status, Body: string(b[:min(len(b), maxErrorBody)])}
	}
	return b, nil
}

// refused tells an answer that needs a person rather than time: a 4xx other than 404 (the
// connector does not settle the account yet), 408 (timeout), 409 (the same key still being
// processed) and 429 (slow down). Such a credit is retried all the same, and logged as an error.
func refused(status int) bool {
	switch status {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return false
	}
	return status/100 == 4
}
