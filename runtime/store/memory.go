package store

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Memory is a Store that keeps everything in process memory, like the JS connector's only
// store: balances are lost on restart. Account lookup is lock-free (sync.Map, read-mostly once
// every account has been seen) and each account has its own small lock, so packets of different
// accounts never wait for each other.
type Memory struct {
	accounts sync.Map // string → *memAccount
	kvMu     sync.RWMutex
	kv       map[string][]byte
	closed   atomic.Bool
}

type memAccount struct {
	mu sync.Mutex
	b  AccountBalance
}

// NewMemory returns an empty memory store.
func NewMemory() *Memory { return &Memory{kv: make(map[string][]byte)} }

var _ Store = (*Memory)(nil)

// Lock order: an account's lock before kvMu (only the Settlements methods take both).

func (m *Memory) account(name string) (*memAccount, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if a, ok := m.accounts.Load(name); ok {
		return a.(*memAccount), nil
	}
	a, _ := m.accounts.LoadOrStore(name, &memAccount{})
	return a.(*memAccount), nil
}

// update applies f to the account's state under its lock and stores the result on success.
func (m *Memory) update(name string, f func(AccountBalance) (AccountBalance, error)) (AccountBalance, error) {
	a, err := m.account(name)
	if err != nil {
		return AccountBalance{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	nb, err := f(a.b)
	if err != nil {
		return a.b, err
	}
	a.b = nb
	return nb, nil
}

// AddWithin implements Balances.
func (m *Memory) AddWithin(_ context.Context, account string, delta int64, min, max *int64) (int64, error) {
	b, err := m.update(account, func(b AccountBalance) (AccountBalance, error) {
		return b.ApplyAdd(account, delta, min, max)
	})
	return b.Balance, err
}

// Reserve implements Balances.
func (m *Memory) Reserve(_ context.Context, account string, amount int64, min *int64) (int64, error) {
	b, err := m.update(account, func(b AccountBalance) (AccountBalance, error) {
		return b.ApplyReserve(account, amount, min)
	})
	avail, _ := b.Available()
	return avail, err
}

// Commit implements Balances.
func (m *Memory) Commit(_ context.Context, account string, amount int64) (int64, error) {
	b, err := m.update(account, func(b AccountBalance) (AccountBalance, error) { return b.ApplyCommit(amount) })
	return b.Balance, err
}

// Release implements Balances.
func (m *Memory) Release(_ context.Context, account string, amount int64) error {
	_, err := m.update(account, func(b AccountBalance) (AccountBalance, error) { return b.ApplyRelease(amount) })
	return err
}

// Get implements Balances.
func (m *Memory) Get(_ context.Context, account string) (AccountBalance, error) {
	if m.closed.Load() {
		return AccountBalance{}, ErrClosed
	}
	a, ok := m.accounts.Load(account)
	if !ok {
		return AccountBalance{}, nil
	}
	ma := a.(*memAccount)
	ma.mu.Lock()
	defer ma.mu.Unlock()
	return ma.b, nil
}

// Set implements Balances.
func (m *Memory) Set(_ context.Context, account string, balance int64) error {
	_, err := m.update(account, func(b AccountBalance) (AccountBalance, error) {
		b.Balance = balance
		return b, nil
	})
	return err
}

// GetKey implements KV.
func (m *Memory) GetKey(_ context.Context, key string) ([]byte, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	m.kvMu.RLock()
	v, ok := m.kv[key]
	m.kvMu.RUnlock()
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

// PutKey implements KV.
func (m *Memory) PutKey(_ context.Context, key string, value []byte) error {
	if m.closed.Load() {
		return ErrClosed
	}
	v := append(make([]byte, 0, len(value)), value...)
	m.kvMu.Lock()
	m.kv[key] = v
	m.kvMu.Unlock()
	return nil
}

// CreateKey implements KV.
func (m *Memory) CreateKey(_ context.Context, key string, value []byte) (bool, error) {
	if m.closed.Load() {
		return false, ErrClosed
	}
	m.kvMu.Lock()
	defer m.kvMu.Unlock()
	if _, ok := m.kv[key]; ok {
		return false, nil
	}
	m.kv[key] = append(make([]byte, 0, len(value)), value...)
	return true, nil
}

// DeleteKey implements KV.
func (m *Memory) DeleteKey(_ context.Context, key string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	m.kvMu.Lock()
	delete(m.kv, key)
	m.kvMu.Unlock()
	return nil
}

// DeleteKeyIf implements KV: the comparison and the deletion under the KV lock.
func (m *Memory) DeleteKeyIf(_ context.Context, key string, was []byte) (bool, error) {
	if m.closed.Load() {
		return false, ErrClosed
	}
	m.kvMu.Lock()
	defer m.kvMu.Unlock()
	if cur, ok := m.kv[key]; !deleteGuard(key, was).guardHolds(cur, ok) {
		return false, nil
	}
	delete(m.kv, key)
	return true, nil
}

// SettleDue implements Settlements, under the account's lock and the KV lock.
func (m *Memory) SettleDue(_ context.Context, account string, threshold, settleTo int64, key string) (int64, error) {
	a, err := m.account(account)
	if err != nil {
		return 0, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	amount, due, err := settleAmount(a.b.Balance, threshold, settleTo)
	if !due || err != nil {
		return 0, err
	}
	m.kvMu.Lock()
	m.kv[key] = settleValue(amount)
	m.kvMu.Unlock()
	a.b.Balance = settleTo
	return amount, nil
}

// CreditOnce implements Settlements, under the account's lock and the KV lock.
func (m *Memory) CreditOnce(_ context.Context, account string, delta int64, key string, value []byte, entries ...Entry) (bool, error) {
	a, err := m.account(account)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	m.kvMu.Lock()
	defer m.kvMu.Unlock()
	if _, ok := m.kv[key]; ok {
		return false, nil
	}
	for _, e := range entries {
		if cur, ok := m.kv[e.Key]; !e.guardHolds(cur, ok) {
			return false, ErrConflict
		}
	}
	nb, err := a.b.ApplyAdd(account, delta, nil, nil)
	if err != nil {
		return false, err
	}
	a.b = nb
	m.kv[key] = append(make([]byte, 0, len(value)), value...)
	for _, e := range entries {
		if e.Value == nil {
			delete(m.kv, e.Key)
		} else {
			m.kv[e.Key] = append(make([]byte, 0, len(e.Value)), e.Value...)
		}
	}
	return true, nil
}

// Keys implements Settlements.
func (m *Memory) Keys(_ context.Context, prefix string) ([]string, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	var keys []string
	m.kvMu.RLock()
	for k := range m.kv {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	m.kvMu.RUnlock()
	slices.Sort(keys)
	return keys, nil
}

// Close makes every later call fail with ErrClosed.
func (m *Memory) Close() error {
	m.closed.Store(true)
	return nil
}
