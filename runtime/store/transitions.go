package store

// Pure state transitions of one account's balance. Every Store implementation applies the same
// rules, so they live here: the memory store runs them under a per-account lock, an embedded
// store inside its write batch, and the Redis Lua scripts mirror them line by line. Each returns
// the new state, or the unchanged state and an error.

// ApplyAdd is AddWithin on one account's state.
func (b AccountBalance) ApplyAdd(account string, delta int64, min, max *int64) (AccountBalance, error) {
	nb, ok := Add(b.Balance, delta)
	if !ok {
		return b, ErrOverflow
	}
	avail, ok := Sub(nb, b.Pending)
	if !ok {
		return b, ErrOverflow
	}
	if max != nil && nb > *max {
		return b, &LimitError{Account: account, Balance: b.Balance, Pending: b.Pending, Proposed: nb, Limit: *max, Err: ErrAboveMaximum}
	}
	if min != nil && avail < *min {
		return b, &LimitError{Account: account, Balance: b.Balance, Pending: b.Pending, Proposed: avail, Limit: *min, Err: ErrBelowMinimum}
	}
	b.Balance = nb
	return b, nil
}

// ApplyReserve is Reserve on one account's state.
func (b AccountBalance) ApplyReserve(account string, amount int64, min *int64) (AccountBalance, error) {
	if amount <= 0 {
		return b, ErrInvalidAmount
	}
	np, ok := Add(b.Pending, amount)
	if !ok {
		return b, ErrOverflow
	}
	avail, ok := Sub(b.Balance, np)
	if !ok {
		return b, ErrOverflow
	}
	if min != nil && avail < *min {
		return b, &LimitError{Account: account, Balance: b.Balance, Pending: b.Pending, Proposed: avail, Limit: *min, Err: ErrBelowMinimum}
	}
	b.Pending = np
	return b, nil
}

// ApplyCommit is Commit on one account's state. A commit larger than Pending (which only a
// buggy caller or an admin Set racing a packet can cause) still moves the balance and clamps
// Pending at zero: the money left, so the balance must say so.
func (b AccountBalance) ApplyCommit(amount int64) (AccountBalance, error) {
	if amount <= 0 {
		return b, ErrInvalidAmount
	}
	nb, ok := Sub(b.Balance, amount)
	if !ok {
		return b, ErrOverflow
	}
	b.Balance = nb
	b.Pending = max(b.Pending-amount, 0)
	return b, nil
}

// ApplyRelease is Release on one account's state; Pending never goes below zero.
func (b AccountBalance) ApplyRelease(amount int64) (AccountBalance, error) {
	if amount <= 0 {
		return b, ErrInvalidAmount
	}
	b.Pending = max(b.Pending-amount, 0)
	return b, nil
}
