package settlement

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// The accounting system's API (RFC 38, engine → connector) and the peer.settle messages.
const (
	// PeerSettle is the destination of settlement messages between peered engines.
	PeerSettle ilp.Address = "peer.settle"
	// MessageTimeout is the expiry of a peer.settle Prepare.
	MessageTimeout = 30 * time.Second
	// creditRetention is how long an incoming settlement's idempotency key is kept after the
	// last request that carried it; RFC 38 asks for at least 24 hours, and an engine retries a
	// credit for as long as it must.
	creditRetention = 7 * 24 * time.Hour
	maxQuantityBody = 4 << 10
	maxKeyLen       = 256 // an Idempotency-Key is stored: keep it small
)

// Handler serves the API the settlement engines call: POST /accounts/{id}/settlements (credit
// an incoming settlement) and POST /accounts/{id}/messages (send a message to the peer's
// engine).
func (s *Settler) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts/{id}/settlements", s.serveCredit)
	mux.HandleFunc("POST /accounts/{id}/messages", s.serveMessage)
	return mux
}

// creditRecord is what an incoming settlement leaves under its idempotency key: enough to
// answer a repeated request as the first, and to refuse the same key with another amount.
type creditRecord struct {
	Request string   `json:"request"` // sha256 of the account, amount and scale asked for
	At      int64    `json:"at"`      // unix seconds: the last request with the key
	Reply   Quantity `json:"reply"`
}

func (s *Settler) serveCredit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	a := s.account(id)
	if a == nil {
		problem(w, http.StatusNotFound, "account %q has no settlement engine on this connector", id)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > maxKeyLen {
		problem(w, http.StatusBadRequest, "an Idempotency-Key header of 1 to %d bytes is required (RFC 38)", maxKeyLen)
		return
	}
	var q Quantity
	if err := json.NewDecoder(io.LimitReader(r.Body, maxQuantityBody)).Decode(&q); err != nil {
		problem(w, http.StatusBadRequest, "the body must be a Quantity, {\"amount\":\"<digits>\",\"scale\":<0-255>}: %v", err)
		return
	}
	std, err := q.Standard()
	if err != nil {
		problem(w, http.StatusBadRequest, "%v", err)
		return
	}
	status, reply := s.credit(r.Context(), a, key, q, std)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(reply)
}

// credit lowers the balance by an incoming settlement once per idempotency key, whichever
// account it names: the same key for another account is a conflict, as for another amount.
// An amount finer than the account's scale leaves a leftover, kept per account and added to
// the next.
func (s *Settler) credit(ctx context.Context, a *acct, key string, q Quantity, std decimal.Decimal) (int, any) {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", a.cfg.ID, q.Amount, q.Scale))
	req := hex.EncodeToString(sum[:])
	s.creditMu.Lock()
	defer s.creditMu.Unlock()
	if rec, ok, err := s.creditRecord(ctx, key); err != nil || ok {
		if err == nil && rec.Request == req {
			s.touchCredit(ctx, key, rec)
		}
		return replay(rec, req, err)
	}
	// The reply is the whole quantity: all of it is accounted for, credited or kept as the
	// leftover. A smaller reply would make an engine (ilp-settlement-core does) keep the rest
	// as its own leftover and send it again: counted twice.
	rec := creditRecord{Request: req, At: s.o.Now().Unix(), Reply: q}
	v, _ := json.Marshal(rec)
	var units int64
	var rest decimal.Decimal
	var done bool
	var err error
	for range conflictRetries {
		if units, rest, done, err = s.creditWithLeftover(ctx, a, key, v, std); !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	var bad badQuantity
	if errors.As(err, &bad) {
		return http.StatusBadRequest, problemBody("%v", bad.err)
	}
	if err != nil {
		return http.StatusInternalServerError, problemBody("cannot credit the settlement (retry with the same key): %v", err)
	}
	if !done { // recorded meanwhile by another replica sharing the store
		rec, ok, err := s.creditRecord(ctx, key)
		if !ok && err == nil {
			err = errors.New("record vanished")
		}
		return replay(rec, req, err)
	}
	s.o.Metrics.settled("incoming", a.cfg.ID, units)
	s.onSettled(ctx, a.cfg.ID)
	s.log.Info("incoming settlement credited", "account", a.cfg.ID, "amount", units, "scale", a.cfg.AssetScale,
		"asked", q.Amount, "askedScale", q.Scale, "leftover", rest.String(), "idempotencyKey", key)
	return http.StatusCreated, rec.Reply
}

// conflictRetries bounds the attempts of a credit whose account's leftover other replicas
// sharing the store change meanwhile, each attempt reading it again.
const conflictRetries = 16

// badQuantity is a quantity the account's scale cannot take.
type badQuantity struct{ err error }

func (b badQuantity) Error() string { return b.err.Error() }

// creditWithLeftover credits std plus the account's leftover in whole units, recording the
// credit under key (value v) and the new leftover, guarded: if another replica changed the
// leftover since it was read, nothing is written and the error is store.ErrConflict.
func (s *Settler) creditWithLeftover(ctx context.Context, a *acct, key string, v []byte, std decimal.Decimal) (int64, decimal.Decimal, bool, error) {
	left, was, err := s.leftover(ctx, a.cfg.ID)
	if err != nil {
		return 0, decimal.Zero, false, fmt.Errorf("cannot read the account's leftover: %w", err)
	}
	units, rest, err := ToScale(std.Add(left), a.cfg.AssetScale)
	if err != nil {
		return 0, decimal.Zero, false, badQuantity{err}
	}
	done, err := s.o.Store.CreditOnce(ctx, a.cfg.ID, -units, inPrefix+key, v,
		store.Entry{Key: leftoverPrefix + a.cfg.ID, Value: []byte(rest.String()), Guard: true, Was: was})
	return units, rest, done, err
}

// touchCredit keeps a repeated key creditRetention from now: RFC 38 counts a key's life from
// the most recent request that carried it. A failure only shortens its life: logged.
func (s *Settler) touchCredit(ctx context.Context, key string, rec creditRecord) {
	rec.At = s.o.Now().Unix()
	v, _ := json.Marshal(rec)
	if err := s.o.Store.PutKey(ctx, inPrefix+key, v); err != nil {
		s.log.Warn("cannot refresh a repeated idempotency key; it is forgotten counting from its first use", "idempotencyKey", key, "error", err)
	}
}

func replay(rec creditRecord, req string, err error) (int, any) {
	switch {
	case err != nil:
		return http.StatusInternalServerError, problemBody("cannot read the settlement's idempotency record: %v", err)
	case rec.Request != req:
		return http.StatusConflict, problemBody("this Idempotency-Key was used for another account or amount")
	}
	return http.StatusCreated, rec.Reply
}

func (s *Settler) creditRecord(ctx context.Context, key string) (creditRecord, bool, error) {
	var rec creditRecord
	v, err := s.o.Store.GetKey(ctx, inPrefix+key)
	if errors.Is(err, store.ErrNotFound) {
		return rec, false, nil
	}
	if err == nil {
		err = json.Unmarshal(v, &rec)
	}
	return rec, err == nil, err
}

// leftover is the account's leftover and the value it was read from (nil: none yet).
func (s *Settler) leftover(ctx context.Context, account string) (decimal.Decimal, []byte, error) {
	v, err := s.o.Store.GetKey(ctx, leftoverPrefix+account)
	if errors.Is(err, store.ErrNotFound) {
		return decimal.Zero, nil, nil
	}
	if err != nil {
		return decimal.Zero, nil, err
	}
	d, err := decimal.NewFromString(string(v))
	return d, v, err
}

// serveMessage sends an engine's message to the peer's engine in a peer.settle Prepare and
// answers with the peer's reply: 201; 502 only when the peer's connector says its engine
// certainly did not take the message (refused); 504 for every other failure, whose outcome is
// unknown — the engine must not count it as refused, and may send it again only in a form its
// peer takes once (the same settlement id).
func (s *Settler) serveMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if s.account(id) == nil {
		problem(w, http.StatusNotFound, "account %q has no settlement engine on this connector", id)
		return
	}
	msg, err := io.ReadAll(io.LimitReader(r.Body, ilp.MaxDataSize+1))
	if err != nil {
		problem(w, http.StatusBadRequest, "reading the message: %v", err)
		return
	}
	if len(msg) > ilp.MaxDataSize {
		problem(w, http.StatusRequestEntityTooLarge, "a message holds at most %d bytes (an ILP Prepare's data)", ilp.MaxDataSize)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), MessageTimeout)
	defer cancel()
	p := &ilp.Prepare{Destination: PeerSettle, ExecutionCondition: ilp.PeerCondition,
		ExpiresAt: s.o.Now().Add(MessageTimeout), Data: msg}
	f, err := s.o.Send(ctx, id, p)
	if err != nil {
		var rj *ilp.Reject
		switch {
		case errors.As(err, &rj) && refusal(rj):
			problem(w, http.StatusBadGateway, "the peer refused the message (not taken): %s %s (triggered by %s)", rj.Code, rj.Message, rj.TriggeredBy)
		case errors.As(err, &rj):
			problem(w, http.StatusGatewayTimeout, "the message may or may not have been taken by the peer's engine: %s %s (triggered by %s)", rj.Code, rj.Message, rj.TriggeredBy)
		default:
			problem(w, http.StatusGatewayTimeout, "no answer from the peer (the message may or may not have been taken): %v", err)
		}
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(f.Data)
}

// refusal reports whether a Reject of a peer.settle Prepare proves that the peer's engine did
// not take the message: a final error (F) that the peer's connector itself raised for
// peer.settle, as HandlePeer does when the account has no engine (F02) or the engine refused
// the message with a 4xx (F00). Every other Reject may come after the engine took it: a
// timeout of this connector's link (R00) or the peer's (T00 after its engine answered late),
// an engine error (T00), a reply too big for a Fulfill (F99), a Reject from a hop on the way.
func refusal(rj *ilp.Reject) bool {
	return rj.TriggeredBy == PeerSettle && (rj.Code == ilp.CodeUnreachable || rj.Code == ilp.CodeBadRequest)
}

// HandlePeer answers a peer.settle Prepare from an account's peer: its data goes to the
// account's engine, whose reply goes back in the Fulfill.
func (s *Settler) HandlePeer(ctx context.Context, account string, p *ilp.Prepare) (*ilp.Fulfill, error) {
	a := s.account(account)
	if a == nil {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, PeerSettle, "account %s has no settlement engine on this connector", account)
	}
	if !p.ExpiresAt.IsZero() { // the engine's answer is of no use after the Prepare expired
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, p.ExpiresAt)
		defer cancel()
	}
	reply, err := a.client.Message(ctx, account, p.Data)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		// The engine does not know the account yet (its worker is still setting it up, or the
		// engine restarted on a memory store): set it up now and deliver the message. A
		// refusal here would make the peer's engine count its settlement as paid.
		if err = a.client.CreateAccount(ctx, account); err == nil {
			reply, err = a.client.Message(ctx, account, p.Data)
		}
	}
	if err == nil {
		return &ilp.Fulfill{Fulfillment: ilp.PeerFulfillment, Data: reply}, nil
	}
	s.log.Warn("settlement engine did not take a message from the peer", "account", account, "error", err)
	return nil, peerReject(account, err)
}

// peerReject is the Reject of a message the engine did not answer with 2xx. Only F02 and
// F00 tell the sending connector that the engine did not take it (see refusal): a message
// maybe taken must never get them.
func peerReject(account string, err error) *ilp.Reject {
	var se *StatusError
	switch {
	case errors.Is(err, errReplyTooLarge):
		return ilp.Rejectf(ilp.CodeFinalApplicationError, PeerSettle, "the settlement engine took the message, but its reply is longer than a Fulfill holds (%d bytes)", ilp.MaxDataSize)
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return ilp.Rejectf(ilp.CodeUnreachable, PeerSettle, "the settlement engine does not know account %s", account)
	case errors.As(err, &se) && se.Status < 500 && !transient(se.Status):
		return ilp.Rejectf(ilp.CodeBadRequest, PeerSettle, "the settlement engine refused the message: HTTP %d %s", se.Status, se.Body)
	case errors.As(err, &se):
		return ilp.Rejectf(ilp.CodeInternalError, PeerSettle, "the settlement engine answered HTTP %d; it may have taken the message", se.Status)
	}
	return ilp.Rejectf(ilp.CodeInternalError, PeerSettle, "no answer from the settlement engine in time; it may have taken the message")
}

// transient tells the 4xx that are no refusal of the message: a timeout (408, maybe from a
// proxy after the engine took it), 409 (the same request in progress), 425 and 429 (later).
func transient(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return false
}

// pruneLoop forgets incoming settlements' idempotency keys after creditRetention, and the
// slots of periodic settlements once they are over.
func (s *Settler) pruneLoop() {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		s.prune()
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Settler) prune() {
	now := s.o.Now()
	cut := now.Add(-creditRetention).Unix()
	s.pruneKeys(inPrefix, func(v []byte) bool {
		var rec creditRecord
		return json.Unmarshal(v, &rec) == nil && rec.At < cut
	})
	s.pruneKeys(everyPrefix, func(v []byte) bool {
		var rec slotRecord
		if json.Unmarshal(v, &rec) != nil {
			return false
		}
		if rec.Until == 0 { // written before slots had their own retention
			return rec.At < cut
		}
		return rec.Until <= now.Unix()
	})
}

// pruneKeys deletes the keys under prefix whose value is old. It stops at the first key it
// cannot read or delete: the store is failing, and each failed conditional delete may hold
// one of a Redis store's write lanes while it is resolved; the next prune tries again.
func (s *Settler) pruneKeys(prefix string, old func([]byte) bool) {
	keys, err := s.o.Store.Keys(s.ctx, prefix)
	if err != nil {
		s.log.Warn("cannot list the settlement records to prune", "prefix", prefix, "error", err)
		return
	}
	for _, k := range keys {
		if err := s.pruneKey(k, old); err != nil {
			s.log.Warn("cannot forget an old settlement record; the next prune tries again", "key", k, "error", err)
			return
		}
	}
}

// pruneKey deletes k if its value is old, and only if it still holds the value found old: a
// repeat of a credit's key refreshes its record (touchCredit) between the read and the
// delete, through this runtime or a replica sharing the store, and no lock of this process
// orders the replicas. A plain delete would forget the refreshed record, and credit the next
// repeat again.
func (s *Settler) pruneKey(k string, old func([]byte) bool) error {
	v, err := s.o.Store.GetKey(s.ctx, k)
	if errors.Is(err, store.ErrNotFound) { // forgotten meanwhile, by another replica's prune
		return nil
	}
	if err != nil || !old(v) {
		return err
	}
	_, err = s.o.Store.DeleteKeyIf(s.ctx, k, v)
	return err
}

// problem writes an error as JSON ({"error": …}), which engines log.
func problem(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problemBody(format, args...))
}

func problemBody(format string, args ...any) any {
	return struct {
		Error string `json:"error"`
	}{fmt.Sprintf(format, args...)}
}
