package ilphttp

import (
	"sync"
	"time"
)

// Bounds of the Request-Ids kept for async Prepares (see seenIDs).
const (
	// maxSeenIDs is generous: a peer sending 2000 Prepares a second with 30 s expiries keeps
	// about 70000; each entry costs about 100 bytes.
	maxSeenIDs = 1 << 17
	// seenSweepEvery keeps a full set from being scanned on every request.
	seenSweepEvery = 100 * time.Millisecond
)

// seenResult is what seenIDs.add found.
type seenResult int

const (
	seenNew    seenResult = iota // recorded: handle the Prepare
	seenRepeat                   // already recorded and not expired: do not handle it again
	seenFull                     // not recorded: too many live ids
)

// seenIDs keeps the Request-Ids of the peer's async Prepares until they expire (RFC 35: an
// idempotency key is kept until its Prepare expires). It is bounded: when full of live ids, new
// ones are refused (503, the peer retries) rather than forgotten, since forgetting would let a
// retry be handled twice. The zero value is ready to use.
type seenIDs struct {
	mu        sync.Mutex
	until     map[string]time.Time
	nextSweep time.Time
	limit     int // 0 means maxSeenIDs; tests lower it
}

// add records id until the given time, unless it is already recorded.
func (s *seenIDs) add(id string, until, now time.Time) seenResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = make(map[string]time.Time)
	}
	if t, ok := s.until[id]; ok && now.Before(t) {
		return seenRepeat
	}
	limit := s.limit
	if limit <= 0 {
		limit = maxSeenIDs
	}
	if len(s.until) >= limit && !now.Before(s.nextSweep) {
		s.sweep(now)
	}
	if len(s.until) >= limit {
		return seenFull
	}
	s.until[id] = until
	return seenNew
}

// remove forgets id: its Prepare was refused, so a retry must be handled.
func (s *seenIDs) remove(id string) {
	s.mu.Lock()
	delete(s.until, id)
	s.mu.Unlock()
}

// sweep drops the expired ids; the caller holds mu.
func (s *seenIDs) sweep(now time.Time) {
	for id, t := range s.until {
		if !now.Before(t) {
			delete(s.until, id)
		}
	}
	s.nextSweep = now.Add(seenSweepEvery)
}
