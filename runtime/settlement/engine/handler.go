package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/ilpfleet/ilpfleet/runtime/settlement"
	"github.com/shopspring/decimal"
)

// Bounds of request bodies: an account or a Quantity is tiny; a message is the peer's.
const (
	maxSmallBody    = 16 << 10
	maxMessageBytes = 1 << 20
	maxAccountID    = 1024
	maxKeyLen       = 256 // an Idempotency-Key is stored: bounded as the connector bounds it
)

// Handler is the engine side of RFC 38, which the connector calls.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /accounts", s.createAccount)
	mux.HandleFunc("DELETE /accounts/{id}", s.deleteAccount)
	mux.HandleFunc("POST /accounts/{id}/settlements", s.settle)
	mux.HandleFunc("POST /accounts/{id}/messages", s.message)
	return mux
}

// validAccountID keeps ids URL-safe, as RFC 38 asks: RFC 3986's unreserved characters.
func validAccountID(id string) bool {
	if id == "" || len(id) > maxAccountID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~'
		if !ok {
			return false
		}
	}
	return true
}

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID string `json:"id"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	if !validAccountID(body.ID) {
		http.Error(w, `account "id" must be 1-1024 characters of A-Z a-z 0-9 - . _ ~`, http.StatusBadRequest)
		return
	}
	if _, err := s.store.CreateAccount(r.Context(), body.ID); err != nil {
		s.internalError(w, "create account", err)
		return
	}
	s.m.track(body.ID)
	if a, ok := s.eng.(AccountSetter); ok {
		if err := a.SetupAccount(r.Context(), body.ID); err != nil {
			s.internalError(w, "set up account "+body.ID, err)
			return
		}
	}
	writeJSON(w, http.StatusCreated, body)
}

func (s *Server) deleteAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.knownAccount(w, r.Context(), id) {
		return
	}
	if c, ok := s.eng.(AccountCloser); ok {
		if err := c.CloseAccount(r.Context(), id); err != nil {
			s.internalError(w, "close account "+id, err)
			return
		}
	}
	if err := s.store.DeleteAccount(r.Context(), id); err != nil {
		s.internalError(w, "delete account "+id, err)
		return
	}
	s.m.forget(id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) settle(w http.ResponseWriter, r *http.Request) {
	id, key := r.PathValue("id"), r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > maxKeyLen {
		http.Error(w, fmt.Sprintf("Idempotency-Key header of 1 to %d bytes required (RFC 38): retries of this settlement must carry the same key", maxKeyLen), http.StatusBadRequest)
		return
	}
	var q settlement.Quantity
	if !decodeJSON(w, r, &q) {
		return
	}
	amount, err := q.Standard()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body, _ := json.Marshal(q)
	rec := &Record{Key: key, Hash: requestHash(id, amount), Status: http.StatusCreated, Body: body}
	prev, err := s.store.QueueSettlement(r.Context(), id, amount, rec)
	switch {
	case errors.Is(err, ErrNoAccount):
		http.Error(w, fmt.Sprintf("no account %q", id), http.StatusNotFound)
		return
	case err != nil:
		s.internalError(w, "queue settlement", err)
		return
	case prev != nil && prev.Hash != rec.Hash && prev.Hash != legacyRequestHash(id, q):
		http.Error(w, "Idempotency-Key "+strconv.Quote(key)+" was used for another request", http.StatusConflict)
		return
	case prev != nil:
		rec = prev // a retry: the same answer, and nothing queued again
	default:
		s.trySettle(id)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rec.Status)
	_, _ = w.Write(rec.Body)
}

// requestHash identifies a settlement request for its idempotency key: the account and the
// quantity (standard units, normalized: 5000 at scale 6 is 50000 at scale 7), not the body's
// bytes, so that the same request written differently is the same.
func requestHash(account string, amount decimal.Decimal) string {
	h := sha256.Sum256([]byte("v2\x00" + account + "\x00" + amount.String()))
	return hex.EncodeToString(h[:])
}

// legacyRequestHash is the hash of records stored by earlier versions (of the quantity as
// written): a retry across an upgrade still matches them.
func legacyRequestHash(account string, q settlement.Quantity) string {
	h := sha256.Sum256([]byte(account + "\x00" + q.Amount + "\x00" + strconv.Itoa(int(q.Scale))))
	return hex.EncodeToString(h[:])
}

func (s *Server) message(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.knownAccount(w, r.Context(), id) {
		return
	}
	h, ok := s.eng.(MessageHandler)
	if !ok {
		http.Error(w, "this settlement engine takes no messages", http.StatusBadRequest)
		return
	}
	msg, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMessageBytes))
	if err != nil {
		http.Error(w, "message: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if !json.Valid(msg) {
		http.Error(w, "message is not JSON", http.StatusBadRequest)
		return
	}
	resp, err := h.HandleMessage(r.Context(), id, msg)
	if errors.Is(err, ErrRefused) {
		s.log.Warn("settlement engine: message of the peer refused", "account", id, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err != nil {
		s.internalError(w, "handle message of "+id, err)
		return
	}
	b, err := json.Marshal(resp)
	if err != nil {
		s.internalError(w, "answer message of "+id, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream") // RFC 38: raw bytes, here JSON
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}

func (s *Server) knownAccount(w http.ResponseWriter, ctx context.Context, id string) bool {
	ok, err := s.store.HasAccount(ctx, id)
	switch {
	case err != nil:
		s.internalError(w, "read account", err)
	case !ok:
		http.Error(w, fmt.Sprintf("no account %q", id), http.StatusNotFound)
	}
	return err == nil && ok
}

func (s *Server) internalError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, ErrLeaseLost) {
		// The process is stopping (Redis.Failed): not a fault of the request, which its
		// successor will take; the loss itself was logged once.
		http.Error(w, "settlement engine: stopping (this process lost its store's lease); retry", http.StatusServiceUnavailable)
		return
	}
	s.log.Error("settlement engine: "+what, "err", err)
	http.Error(w, what+": "+err.Error(), http.StatusInternalServerError)
}

// decodeJSON reads one bounded JSON object into v, or answers 400/413 and returns false.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSmallBody))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		}
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
