package ilphttp

import (
	"sync"
	"time"
)

// Bounds of the Request-Ids kept for async Prepares (see RequestIDs).
const (
	// maxSeenIDs is generous: a peer sending 2000 Prepares a second with 30 s expiries keeps
	// about 70000; each entry costs about 100 bytes.
	maxSeenIDs = 1 << 17
	// seenSweepFull keeps a full set from being scanned on every request.
	seenSweepFull = 100 * time.Millisecond
	// seenSweepEvery drops expired ids even when the set is not full, so that memory follows
	// the traffic down after a burst.
	seenSweepEvery = 5 * time.Second
	// seenShrinkMin is the peak below which a map is not rebuilt: small maps cost little.
	seenShrinkMin = 1024
)

// seenResult is what RequestIDs.add found.
type seenResult int

const (
	seenNew    seenResult = iota // recorded: handle the Prepare
	seenRepeat                   // already recorded and not expired: do not handle it again
	seenFull                     // not recorded: too many live ids
)

// RequestIDs keeps the Request-Ids of the peer's async Prepares until they expire (RFC 35: an
// idempotency key is kept until its Prepare expires). It is bounded: when full of live ids, new
// ones are refused (503, the peer retries) rather than forgotten, since forgetting would let a
// retry be handled twice. The zero value is ready to use. One account's links share one
// (Options.RequestIDs), so that a retry reaching the link that replaced another after a
// reconnect is not handled a second time.
type RequestIDs struct {
	mu        sync.Mutex
	until     map[string]time.Time
	peak      int // the most entries since the map was made: Go maps never shrink
	lastSweep time.Time
	limit     int // 0 means maxSeenIDs; tests lower it
}

// add records id until the given time, unless it is already recorded.
func (s *RequestIDs) add(id string, until, now time.Time) seenResult {
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
	every := seenSweepEvery
	if len(s.until) >= limit {
		every = seenSweepFull
	}
	if now.Sub(s.lastSweep) >= every {
		s.sweep(now)
	}
	if len(s.until) >= limit {
		return seenFull
	}
	s.until[id] = until
	s.peak = max(s.peak, len(s.until))
	return seenNew
}

// sweepAt drops the ids expired at now.
func (s *RequestIDs) sweepAt(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
}

// sweep drops the expired ids and, when they were most of the map, rebuilds it so that its
// memory is freed; the caller holds mu.
func (s *RequestIDs) sweep(now time.Time) {
	for id, t := range s.until {
		if !now.Before(t) {
			delete(s.until, id)
		}
	}
	if s.peak >= seenShrinkMin && 4*len(s.until) <= s.peak {
		m := make(map[string]time.Time, len(s.until))
		for id, t := range s.until {
			m[id] = t
		}
		s.until, s.peak = m, len(m)
	}
	s.lastSweep = now
}
