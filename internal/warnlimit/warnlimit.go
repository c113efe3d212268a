// Package warnlimit lets one WARN line of a kind through per interval and counts the others,
// so that a failure repeated for every packet or connection does not flood the log, and the
// next line that does go through still says how often it happened meanwhile.
package warnlimit

import (
	"sync"
	"time"
)

// Limiter lets one line of each kind through every Every. The zero value, with Every set,
// is ready to use; it is safe for concurrent use.
type Limiter struct {
	Every time.Duration

	mu    sync.Mutex
	kinds map[string]*state
}

type state struct {
	last       time.Time
	suppressed int
}

// Allow reports whether a line of kind may go through at now and, if so, how many lines of
// that kind were held back since the last one that went through.
func (l *Limiter) Allow(kind string, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = make(map[string]*state)
	}
	st := l.kinds[kind]
	if st == nil {
		st = &state{}
		l.kinds[kind] = st // its callers have a handful of kinds: the map stays small
	} else if now.Sub(st.last) < l.Every {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}

// Take returns the count of kind's lines held back since the last one that went through, and
// forgets it: for a last line when the caller stops, so that the count of a final burst is
// not lost.
func (l *Limiter) Take(kind string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.kinds[kind]
	if st == nil {
		return 0
	}
	n := st.suppressed
	st.suppressed = 0
	return n
}
