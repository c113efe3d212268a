package ilphttp

import (
	"sync"
	"time"
)

// warnEvery is how often a link logs one kind of failure at WARN: with the peer down, every
// packet fails the same way, and one line per packet would flood the log.
const warnEvery = 10 * time.Second

// warnLimiter lets one WARN per kind through every warnEvery and counts the others, which
// are logged at DEBUG. The zero value is ready to use.
type warnLimiter struct {
	mu    sync.Mutex
	kinds map[string]*warnState
}

type warnState struct {
	last       time.Time
	suppressed int
}

// allow reports whether a failure of kind may be logged at WARN at now and, if so, how many
// of that kind were logged at DEBUG only since the last WARN.
func (w *warnLimiter) allow(kind string, now time.Time) (ok bool, suppressed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.kinds == nil {
		w.kinds = make(map[string]*warnState)
	}
	st := w.kinds[kind]
	if st == nil {
		st = &warnState{}
		w.kinds[kind] = st // two transport kinds and the HTTP statuses: the map stays small
	} else if now.Sub(st.last) < warnEvery {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}

// warn logs msg at WARN unless a failure of the same kind was logged at WARN less than
// warnEvery ago; then at DEBUG. A WARN line says how many lines of its kind it follows.
func (l *Link) warn(kind, msg string, args ...any) {
	ok, n := l.warns.allow(kind, l.now())
	if !ok {
		l.log.Debug(msg, args...)
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Warn(msg, args...)
}
