package ilphttp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Retries of an async reply (RFC 35: retry on 5xx or no response, stop on 2xx, 3xx or 4xx,
// several attempts before the Prepare expires).
const (
	replyAttempts    = 10
	replyBackoffBase = 50 * time.Millisecond
	replyBackoffCap  = time.Second
	// replyMinWindow lets a reply to a Prepare that expires very soon (or already has) still
	// have one real attempt: the peer may still be waiting.
	replyMinWindow = 5 * time.Second
)

// maxRequestIDLen bounds a peer's Request-Id (RFC 35: a UUID, 36 characters), which this
// side keeps for a while (keepID).
const maxRequestIDLen = 128

// acceptAsync answers 202 Accepted at once and handles the Prepare in the background; its
// reply is POSTed to the peer's Callback-Url with the same Request-Id. A Request-Id already
// accepted (a retry of the same Prepare, RFC 35 idempotence) gets 202 again and is not
// handled twice: that would credit the peer's balance twice.
func (l *Link) acceptAsync(w http.ResponseWriter, p *ilp.Prepare, callback, id string) {
	if err := checkCallback(callback, l.origin); err != nil {
		httpError(w, http.StatusBadRequest, "ILP-over-HTTP: "+err.Error())
		return
	}
	if len(id) > maxRequestIDLen {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("ILP-over-HTTP: Request-Id longer than %d bytes; send a UUID", maxRequestIDLen))
		return
	}
	// The slot is taken before the id is recorded: once recorded, the Prepare is always
	// handled, so a retry answered 202 as a repeat can rely on the original's reply.
	if status, msg := l.reserve(); status != 0 {
		httpError(w, status, msg)
		return
	}
	now := time.Now()
	switch l.seen.add(id, l.keepID(p.ExpiresAt, now), now) {
	case seenRepeat:
		l.release()
		w.WriteHeader(http.StatusAccepted)
		return
	case seenFull:
		l.release()
		httpError(w, http.StatusServiceUnavailable, "ILP-over-HTTP: too many recent Request-Ids; retry later")
		return
	}
	w.WriteHeader(http.StatusAccepted)
	go l.runAsync(p, callback, id)
}

// keepID is how long a Request-Id is kept: past the expiry for as long as a reply may still be
// delivered, so that a late retry cannot produce a second, different reply; but no longer
// than the connector holds a packet, so that a peer's far expiries cannot fill the set.
// The max hold time may change while the link runs (Options.CurrentMaxHold): the longest one
// used is kept, for the sweep after Close.
func (l *Link) keepID(expiresAt, now time.Time) time.Time {
	hold := l.MaxHold()
	l.longestMu.Lock()
	l.longest = max(l.longest, hold)
	l.longestMu.Unlock()
	if limit := now.Add(hold); expiresAt.After(limit) {
		expiresAt = limit
	}
	return expiresAt.Add(replyMinWindow)
}

// reserve takes a slot for an async handler, or returns the HTTP status and message that
// refuse it. A slot taken is given back by release.
func (l *Link) reserve() (int, string) {
	select {
	case l.sem <- struct{}{}:
	default:
		return http.StatusServiceUnavailable, "ILP-over-HTTP: too many packets in flight; retry later"
	}
	if !l.track() {
		<-l.sem
		return http.StatusServiceUnavailable, "ILP-over-HTTP: link closing"
	}
	return 0, ""
}

// release gives back a slot that reserve took.
func (l *Link) release() {
	<-l.sem
	l.wg.Done()
}

// track counts an async handler in the link's WaitGroup unless Close has begun, so that Close
// never waits on a group that is still growing.
func (l *Link) track() bool {
	l.asyncMu.Lock()
	defer l.asyncMu.Unlock()
	if l.closed.Load() {
		return false
	}
	l.wg.Add(1)
	return true
}

// runAsync handles the Prepare and delivers its reply. Neither is tied to the link's life
// (Close waits for both, as long as it may): the handler runs until the Prepare expires, the
// delivery until then or replyMinWindow after the answer, whichever is later.
func (l *Link) runAsync(p *ilp.Prepare, callback, id string) {
	defer l.release()
	ctx, cancel := context.WithDeadline(l.giveUp, p.ExpiresAt)
	reply := l.handle(ctx, p)
	cancel()
	body := encodeReply(nil, reply, l.self())
	deadline := p.ExpiresAt
	if min := time.Now().Add(replyMinWindow); deadline.Before(min) {
		deadline = min
	}
	ctx, cancel = context.WithDeadline(l.giveUp, deadline)
	defer cancel()
	l.postReply(ctx, callback, id, body)
}

// postReply POSTs the reply until the peer takes it (2xx), refuses it (3xx, 4xx), ctx ends,
// or replyAttempts have been made.
func (l *Link) postReply(ctx context.Context, callback, id string, body []byte) {
	wait := replyBackoffBase
	for attempt := 1; attempt <= replyAttempts; attempt++ {
		status, err := l.postOnce(ctx, callback, id, body)
		switch replyOutcome(status, err) {
		case replyDelivered:
			return
		case replyRefused:
			l.log.Warn("peer refused an async ILP-over-HTTP reply; it is not delivered", "status", status, "requestId", id)
			return
		}
		l.log.Debug("async ILP-over-HTTP reply failed; retrying", "attempt", attempt, "status", status, "error", err)
		t := time.NewTimer(wait/2 + rand.N(wait/2+1)) // jitter so that many replies do not retry in lockstep
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			l.log.Warn("gave up an async ILP-over-HTTP reply", "requestId", id, "error", ctx.Err())
			return
		}
		wait = min(2*wait, replyBackoffCap)
	}
	l.log.Warn("gave up an async ILP-over-HTTP reply after retries", "requestId", id, "attempts", replyAttempts)
}

// What became of one attempt to POST a reply.
const (
	replyRetry     = iota // no answer, or 5xx: RFC 35 has the reply retried
	replyDelivered        // 2xx
	replyRefused          // 3xx or 4xx: the same request would get the same answer
)

// replyOutcome classifies one attempt. Only a 2xx is delivery: a redirect (an ingress sending
// http to https, say) is not followed, since the reply carries our credentials for the peer
// and goes only to its origin, and it would not change on a retry.
func replyOutcome(status int, err error) int {
	switch {
	case err != nil || status >= 500:
		return replyRetry
	case status >= 200 && status < 300:
		return replyDelivered
	}
	return replyRefused
}

func (l *Link) postOnce(ctx context.Context, callback, id string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, callback, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header["Authorization"] = []string{l.sign.authorization()}
	req.Header["Content-Type"] = []string{contentType}
	req.Header[headerRequestID] = []string{id}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
