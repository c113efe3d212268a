package ilphttp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// Send POSTs a Prepare to the peer and returns its answer. It waits at most until the Prepare
// expires; every failure is a *ilp.Reject naming the account, with the code RFC 35 and the
// deployed connectors use:
//   - no answer before the expiry: R00;
//   - connection refused, a failed TLS handshake, or another transport failure: T01;
//   - HTTP 5xx: T00; HTTP 401/403: T01 (our credentials are wrong); 429: T05; 408 and 409: T00
//     (RFC 35 has the sender retry after 409); another 4xx: F00;
//   - a body that is not a Fulfill or Reject: F09.
//
// The Reject travels upstream to senders who can do nothing about this hop: it names the
// account and what kind of failure it was, while the peer's address, Go's error and the peer's
// own explanation go to the log.
//
// ctx cancelled (not expired) returns ctx's error.
func (l *Link) Send(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if !l.Connected() {
		return nil, link.ErrNotConnected
	}
	body, err := p.MarshalBinary()
	if err != nil {
		return nil, ilp.Rejectf(ilp.CodeBadRequest, l.self(), "cannot send to account %s: %v", l.opts.Account, err)
	}
	parent := ctx
	ctx, cancel := context.WithDeadline(ctx, p.ExpiresAt)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.opts.Outgoing.URL, bytes.NewReader(body))
	if err != nil {
		return nil, ilp.Rejectf(ilp.CodeInternalError, l.self(), "account %s: %v", l.opts.Account, err)
	}
	l.setHeaders(req.Header, p)
	var replies chan []byte
	if l.mode == ModeAsync {
		id := newRequestID()
		replies = make(chan []byte, 1)
		l.pending.Store(id, replies)
		defer l.pending.Delete(id)
		req.Header[headerRequestID] = []string{id}
		req.Header[headerCallbackURL] = []string{l.opts.Outgoing.CallbackURL}
		req.Header["Prefer"] = []string{"respond-async"}
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, l.transportReject(parent, ctx, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return l.readReply(parent, ctx, resp)
	case resp.StatusCode == http.StatusAccepted && replies != nil:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
		select {
		case b := <-replies:
			return l.parseReply(b)
		case <-ctx.Done():
			return nil, l.transportReject(parent, ctx, ctx.Err())
		}
	}
	return nil, l.statusReject(resp)
}

// setHeaders fills the request headers without canonicalizing their names at run time.
func (l *Link) setHeaders(h http.Header, p *ilp.Prepare) {
	out := l.opts.Outgoing
	h["Authorization"] = []string{l.sign.authorization()}
	h["Content-Type"] = []string{contentType}
	h["Accept"] = []string{contentType}
	if out.Name != "" {
		h[headerPeerName] = []string{out.Name}
	}
	if out.SendILPDestination {
		h[headerDestination] = []string{string(p.Destination)}
	}
}

// readReply reads and parses a 200 response's body, bounded by maxReply.
func (l *Link) readReply(parent, ctx context.Context, resp *http.Response) (*ilp.Fulfill, error) {
	if resp.ContentLength > int64(l.maxReply) {
		return nil, ilp.Rejectf(ilp.CodeInvalidPeerResponse, l.self(), "account %s answered with %d bytes, more than the %d an ILP packet can take", l.opts.Account, resp.ContentLength, l.maxReply)
	}
	var b []byte
	var err error
	if n := resp.ContentLength; n > 0 {
		b = make([]byte, n)
		_, err = io.ReadFull(resp.Body, b)
	} else {
		b, err = io.ReadAll(io.LimitReader(resp.Body, int64(l.maxReply)+1))
	}
	if err != nil {
		return nil, l.transportReject(parent, ctx, err)
	}
	if len(b) > l.maxReply {
		return nil, ilp.Rejectf(ilp.CodeInvalidPeerResponse, l.self(), "account %s answered with more than the %d bytes an ILP packet can take", l.opts.Account, l.maxReply)
	}
	return l.parseReply(b)
}

func (l *Link) parseReply(b []byte) (*ilp.Fulfill, error) {
	f, r, err := ilp.ParseResponse(b)
	switch {
	case err != nil:
		return nil, ilp.Rejectf(ilp.CodeInvalidPeerResponse, l.self(), "account %s answered with an invalid ILP packet: %v", l.opts.Account, err)
	case r != nil:
		return nil, r
	}
	return f, nil
}

// transportReject maps a failed request. parent is the caller's context, ctx the one bounded
// by the Prepare's expiry.
func (l *Link) transportReject(parent, ctx context.Context, err error) error {
	acct := l.opts.Account
	switch {
	case parent.Err() != nil && !errors.Is(parent.Err(), context.DeadlineExceeded):
		return parent.Err()
	case ctx.Err() != nil:
		return ilp.Rejectf(ilp.CodeTransferTimedOut, l.self(), "account %s did not answer before the packet expired", acct)
	}
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err // without the URL, whose path may name accounts
	}
	what := "peer unreachable"
	kind := what // of the log's rate limit
	args := []any{"peer", hostOf(l.opts.Outgoing.URL), "error", cause}
	if errors.Is(err, syscall.ECONNREFUSED) {
		what = "peer unreachable (connection refused)"
		kind = what
	} else if hint := tlsopt.Hint(err, "outgoing.tls", l.opts.Outgoing.TLS); hint != "" {
		// Each kind of TLS failure by its hint: a new one (the peer fixed its certificate but
		// now asks for ours) is logged at once, as the BTP client does.
		what, kind = "TLS handshake with the peer failed", "tls: "+hint
		args = append(args, "hint", hint)
	}
	l.warn(kind, "ILP-over-HTTP request to the peer failed", args...)
	return ilp.Rejectf(ilp.CodePeerUnreachable, l.self(), "account %s: %s; see the connector log", acct, what)
}

// statusReject maps an HTTP status other than 200 (and 202 in async mode) to a Reject. The
// peer's explanation and the hint for the operator go to the log only (see Send).
func (l *Link) statusReject(resp *http.Response) error {
	acct, status := l.opts.Account, resp.StatusCode
	code, what, hint := statusCode(status)
	l.warn("HTTP "+strconv.Itoa(status), "the ILP-over-HTTP peer did not take a packet", "status", status, "body", readSnippet(resp.Body), "hint", hint)
	return ilp.Rejectf(code, l.self(), "account %s: %s (HTTP %d); see the connector log", acct, what, status)
}

// statusCode is the ILP error code of an HTTP status, what it means for the sender, and a
// hint for the operator.
func statusCode(status int) (code ilp.ErrorCode, what, hint string) {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ilp.CodePeerUnreachable, "the peer refused our credentials", "check outgoing.staticToken/jwtSecret of the account against the peer's incoming token"
	case status == http.StatusAccepted:
		return ilp.CodePeerUnreachable, "the peer answered asynchronously", `the peer speaks asynchronous RFC 35 but the account is in sync mode; set mode "async"`
	case status == http.StatusTooManyRequests:
		return ilp.CodeRateLimited, "the peer is rate limiting", "the peer (or a proxy in front of it) limits our request rate"
	case status == http.StatusRequestTimeout || status == http.StatusConflict:
		// RFC 35 has the sender retry after 409; a 408 is the peer's timeout of our request.
		return ilp.CodeInternalError, "temporary failure at the peer", "the peer asks for the request to be retried"
	case status >= 500:
		return ilp.CodeInternalError, "the peer failed", "the peer's server (or a proxy in front of it) failed"
	case status >= 400:
		return ilp.CodeBadRequest, "the peer refused the packet", "the peer refused the request itself; its explanation is in body"
	}
	return ilp.CodePeerUnreachable, "unexpected answer from the peer", "outgoing.url may not be an ILP-over-HTTP endpoint (redirects are not followed)"
}

// readSnippet is the first line of an error body, short and printable, for the log.
func readSnippet(r io.Reader) string {
	var b [160]byte
	n, _ := io.ReadFull(r, b[:])
	s := strings.TrimSpace(strings.ToValidUTF8(string(b[:n]), ""))
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return ""
	}
	return fmt.Sprintf("%q", s)
}

// hostOf is the host of a URL for messages (never its path, which may name accounts).
func hostOf(u string) string {
	rest := u
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// newRequestID is a random UUID v4 (RFC 35's Request-Id).
func newRequestID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
