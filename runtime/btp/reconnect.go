package btp

import "time"

// defaultReconnectClearTryTimeout is ilp-plugin-btp's (ws-reconnect) DEFAULT_TRY_CLEAR_TIMEOUT.
const defaultReconnectClearTryTimeout = 10 * time.Second

// reconnectSchedule is ilp-plugin-btp's WebSocketReconnector schedule: the wait after a failure
// is intervals[tries], tries then grows up to the last index; a timer started at each failure
// puts tries back to 0 once clear passes without another. Here the timer is the gap between
// two failures, which gives the same waits without a goroutine.
type reconnectSchedule struct {
	intervals []time.Duration
	clear     time.Duration // 0: defaultReconnectClearTryTimeout

	tries int
	last  time.Time // of the previous failure; zero before the first
}

// next is the wait after a failure (or a lost connection) at now.
func (s *reconnectSchedule) next(now time.Time) time.Duration {
	clear := s.clear
	if clear <= 0 {
		clear = defaultReconnectClearTryTimeout
	}
	if !s.last.IsZero() && now.Sub(s.last) >= clear {
		s.tries = 0
	}
	s.last = now
	d := s.intervals[s.tries]
	s.tries = min(s.tries+1, len(s.intervals)-1)
	return d
}
