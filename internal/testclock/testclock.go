// Package testclock is the clock tests move by hand, for code that reads the time through a
// func() time.Time: what happens after a minute is tested without waiting a minute, and no
// assertion depends on the wall clock.
package testclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only when a test moves it. It is safe for concurrent use: the
// code under test reads it from its own goroutines.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New is a Clock reading now.
func New(now time.Time) *Clock { return &Clock{now: now} }

// Now is the clock's time; pass c.Now where the code takes a func() time.Time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d (back when d is negative).
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set puts the clock at now.
func (c *Clock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
}
