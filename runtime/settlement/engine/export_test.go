package engine

import "time"

// SetClock makes m read the time from now (tests of the idempotency records' expiry).
func (m *Memory) SetClock(now func() time.Time) { m.now = now }
