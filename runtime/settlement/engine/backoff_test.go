package engine

import (
	"testing"
	"time"
)

func TestExponentialBackoff(t *testing.T) {
	cases := []struct {
		base, max time.Duration
		n         int
		want      time.Duration // the wait is in [want/2, want]
	}{
		{time.Second, time.Hour, 1, time.Second},
		{time.Second, time.Hour, 4, 8 * time.Second},
		{time.Second, time.Hour, 13, time.Hour}, // 4096 s > 1 h
		{time.Second, time.Minute, 30, time.Minute},
		{time.Second, 5 * time.Hour, 200, time.Hour}, // never above RFC 38's hour, no overflow
		{time.Hour, 2 * time.Hour, 1, time.Hour},
	}
	for _, c := range cases {
		b := ExponentialBackoff(c.base, c.max)
		for range 50 { // jitter: every draw in range
			if d := b(c.n); d < c.want/2 || d > c.want {
				t.Fatalf("base %v max %v attempt %d: %v, want in [%v, %v]", c.base, c.max, c.n, d, c.want/2, c.want)
			}
		}
	}
}

func TestRefused(t *testing.T) {
	for status, want := range map[int]bool{400: true, 422: true, 404: false, 408: false, 409: false,
		429: false, 500: false, 503: false, 302: false} {
		if refused(status) != want {
			t.Errorf("refused(%d) = %v", status, !want)
		}
	}
}
