// Package testwait is the bounded polling the tests share: a condition that comes true in the
// background is waited for, and a wait that never ends is a failure rather than a hang.
package testwait

import (
	"testing"
	"time"
)

// Interval is how long Eventually sleeps between two looks at its condition.
const Interval = 5 * time.Millisecond

// Eventually polls cond every Interval, at most tries times, and fails the test with what when
// it never holds.
func Eventually(t testing.TB, what string, tries int, cond func() bool) {
	t.Helper()
	for range tries {
		if cond() {
			return
		}
		time.Sleep(Interval)
	}
	t.Fatalf("%s: not so after %d tries, %v apart", what, tries, Interval)
}
