package engine

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/shopspring/decimal"
)

// Memory is a Store in memory, for tests and for engines whose state may be lost with the
// process (queued credits are then lost too: use Redis when that matters).
type Memory struct {
	mu         sync.Mutex
	accounts   map[string]struct{}
	queued     map[string]decimal.Decimal
	creditLeft map[string]decimal.Decimal
	credits    map[string]Credit
	records    map[string]memRecord
	seen       map[seenKey]time.Time // settlement ids credited → expiry
	attempts   map[string]Attempt
	lastPrune  time.Time
	now        func() time.Time
}

// seenKey is a settlement id credited to an account.
type seenKey struct{ account, id string }

type memRecord struct {
	Record
	expires time.Time
}

var (
	_ Store       = (*Memory)(nil)
	_ QueueReader = (*Memory)(nil)
)

// NewMemory returns an empty memory store.
func NewMemory() *Memory {
	return &Memory{
		accounts:   map[string]struct{}{},
		queued:     map[string]decimal.Decimal{},
		creditLeft: map[string]decimal.Decimal{},
		credits:    map[string]Credit{},
		records:    map[string]memRecord{},
		seen:       map[seenKey]time.Time{},
		attempts:   map[string]Attempt{},
		now:        time.Now,
	}
}

// CreateAccount implements Store.
func (m *Memory) CreateAccount(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, had := m.accounts[id]
	m.accounts[id] = struct{}{}
	return !had, nil
}

// DeleteAccount implements Store.
func (m *Memory) DeleteAccount(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.accounts, id)
	delete(m.queued, id)
	delete(m.attempts, id)
	return nil
}

// HasAccount implements Store.
func (m *Memory) HasAccount(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.accounts[id]
	return ok, nil
}

// Accounts implements Store.
func (m *Memory) Accounts(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.accounts)), nil
}

// QueueSettlement implements Store.
func (m *Memory) QueueSettlement(_ context.Context, id string, amount decimal.Decimal, rec *Record) (*Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.prune(now)
	if rec != nil {
		if prev, ok := m.records[rec.Key]; ok && now.Before(prev.expires) {
			prev.expires = now.Add(IdempotencyTTL) // RFC 38: from the last request
			m.records[rec.Key] = prev
			r := prev.Record
			return &r, nil
		}
	}
	if _, ok := m.accounts[id]; !ok {
		return nil, ErrNoAccount
	}
	if rec != nil {
		m.records[rec.Key] = memRecord{Record: *rec, expires: now.Add(IdempotencyTTL)}
	}
	m.queued[id] = m.queued[id].Add(amount)
	return nil, nil
}

// prune drops expired records, at most once a minute so that a busy server does not scan
// them on every request.
func (m *Memory) prune(now time.Time) {
	if now.Sub(m.lastPrune) < time.Minute {
		return
	}
	m.lastPrune = now
	for k, r := range m.records {
		if !now.Before(r.expires) {
			delete(m.records, k)
		}
	}
	for k, exp := range m.seen {
		if !now.Before(exp) {
			delete(m.seen, k)
		}
	}
}

// StartAttempt implements Store.
func (m *Memory) StartAttempt(_ context.Context, id, attemptID string) (*Attempt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.attempts[id]; ok {
		return nil, ErrAttemptKept
	}
	q := m.queued[id]
	delete(m.queued, id)
	if q.Sign() <= 0 {
		return nil, nil
	}
	a := Attempt{ID: attemptID, Amount: q, InProgress: true}
	m.attempts[id] = a
	return &a, nil
}

// EndAttempt implements Store.
func (m *Memory) EndAttempt(_ context.Context, id, attemptID string, requeue decimal.Decimal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.attempts[id]; !ok || a.ID != attemptID {
		return nil
	}
	delete(m.attempts, id)
	if _, ok := m.accounts[id]; ok && !requeue.IsZero() {
		m.queued[id] = m.queued[id].Add(requeue)
	}
	return nil
}

// Queued returns what is queued to settle for id, without taking it.
func (m *Memory) Queued(id string) decimal.Decimal {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queued[id]
}

// QueuedAmount implements QueueReader.
func (m *Memory) QueuedAmount(_ context.Context, id string) (decimal.Decimal, error) {
	return m.Queued(id), nil
}

// QueueCredit implements Store.
func (m *Memory) QueueCredit(_ context.Context, account string, amount decimal.Decimal, scale uint8, key, settlementID string) (Credit, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.prune(now)
	sk := seenKey{account, settlementID}
	if exp, ok := m.seen[sk]; ok && settlementID != "" && now.Before(exp) {
		m.seen[sk] = now.Add(IdempotencyTTL)
		return Credit{}, false, ErrCreditedBefore
	}
	c, rest, err := splitCredit(m.creditLeft[account].Add(amount), scale, key, account, settlementID)
	if err != nil {
		return Credit{}, false, err
	}
	if settlementID != "" {
		m.seen[sk] = now.Add(IdempotencyTTL)
	}
	m.creditLeft[account] = rest
	if c.Quantity.Amount == "0" {
		return Credit{}, false, nil
	}
	m.credits[key] = c
	return c, true, nil
}

// Credits implements Store.
func (m *Memory) Credits(context.Context) ([]Credit, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := make([]Credit, 0, len(m.credits))
	for _, c := range m.credits {
		cs = append(cs, c)
	}
	return cs, nil
}

// AckCredit implements Store.
func (m *Memory) AckCredit(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.credits, key)
	return nil
}

// UpdateAttempt implements Store.
func (m *Memory) UpdateAttempt(_ context.Context, id string, a Attempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if kept, ok := m.attempts[id]; ok && kept.ID == a.ID {
		m.attempts[id] = a
	}
	return nil
}

// Attempt implements Store.
func (m *Memory) Attempt(_ context.Context, id string) (*Attempt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.attempts[id]
	if !ok {
		return nil, nil
	}
	return &a, nil
}
