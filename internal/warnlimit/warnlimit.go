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
		l.kinds[kind] = st // a handful of kinds, or objects that Forget drops when they go
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

// Forget drops what the limiter keeps of kind: for kinds that are objects, once the object
// is gone or its failure over (the next line of it then goes through at once).
func (l *Limiter) Forget(kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.kinds, kind)
}

// Gate lets a recurring failure through once, again when it changes, and again every Every
// while it stays the same, with the count of the times it was held back: a retry loop that
// meets the same failure every few seconds logs it a few times an hour, and a new failure at
// once. It is for one goroutine (a retry loop's own); Reset when the failure is over.
type Gate struct {
	Every time.Duration

	last    string
	at      time.Time
	repeats int
}

// Pass reports whether failure msg is to be logged at now and, if so, how often it recurred
// unlogged since it last was.
func (g *Gate) Pass(msg string, now time.Time) (ok bool, heldBack int) {
	if msg == g.last && now.Sub(g.at) < g.Every {
		g.repeats++
		return false, 0
	}
	if msg == g.last {
		heldBack = g.repeats
	}
	g.last, g.at, g.repeats = msg, now, 0
	return true, heldBack
}

// Reset forgets the failure: the next one is logged whatever it is.
func (g *Gate) Reset() { *g = Gate{Every: g.Every} }
