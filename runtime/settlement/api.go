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
	// creditRetention is how long an incoming settlement's idempotency key is kept; RFC 38
	// asks for at least 24 hours, and an engine retries a credit for as long as it must.
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
	At      int64    `json:"at"`      // unix seconds
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
// answers with the peer's reply: 201, or 502 when the peer rejected it (it was not taken), or
// 504 when there was no answer (it may have been).
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
		if errors.As(err, &rj) {
			problem(w, http.StatusBadGateway, "the peer rejected the message: %s %s (triggered by %s)", rj.Code, rj.Message, rj.TriggeredBy)
			return
		}
		// Not a refusal: the message may or may not have reached the peer.
		problem(w, http.StatusGatewayTimeout, "no answer from the peer: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(f.Data)
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
	switch {
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return nil, ilp.Rejectf(ilp.CodeUnreachable, PeerSettle, "the settlement engine does not know account %s", account)
	case errors.As(err, &se) && se.Status < 500:
		return nil, ilp.Rejectf(ilp.CodeBadRequest, PeerSettle, "the settlement engine refused the message: HTTP %d %s", se.Status, se.Body)
	}
	return nil, ilp.Rejectf(ilp.CodeInternalError, PeerSettle, "the settlement engine is unavailable; retry later")
}

// pruneLoop forgets incoming settlements' idempotency keys, and the slots of periodic
// settlements, after creditRetention.
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
	var keys []string
	for _, prefix := range []string{inPrefix, everyPrefix} {
		ks, err := s.o.Store.Keys(s.ctx, prefix)
		if err != nil {
			s.log.Warn("cannot list the settlement records to prune", "prefix", prefix, "error", err)
			return
		}
		keys = append(keys, ks...)
	}
	cut := s.o.Now().Add(-creditRetention).Unix()
	for _, k := range keys {
		v, err := s.o.Store.GetKey(s.ctx, k)
		var rec creditRecord
		if err != nil || json.Unmarshal(v, &rec) != nil || rec.At >= cut {
			continue
		}
		if err := s.o.Store.DeleteKey(s.ctx, k); err != nil {
			s.log.Warn("cannot forget an old idempotency key", "key", k, "error", err)
		}
	}
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
