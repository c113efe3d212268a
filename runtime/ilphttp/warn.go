package ilphttp

import "time"

// warnEvery is how often a link logs one kind of failure at WARN: with the peer down, every
// packet fails the same way, and one line per packet would flood the log.
const warnEvery = 10 * time.Second

// warn logs msg at WARN unless a failure of the same kind was logged at WARN less than
// warnEvery ago; then at DEBUG. A WARN line says how many lines of its kind it follows.
func (l *Link) warn(kind, msg string, args ...any) {
	ok, n := l.warns.Allow(kind, l.now())
	if !ok {
		l.log.Debug(msg, args...)
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	l.log.Warn(msg, args...)
}
