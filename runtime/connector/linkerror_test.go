package connector

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestStartNamesAccountsWhoseLinkFails: a Start that fails only because some links cannot
// start names those accounts, so that the Kubernetes source can start without them; a start
// given up for a stop names none (the accounts are not at fault).
func TestStartNamesAccountsWhoseLinkFails(t *testing.T) {
	tests := []struct {
		name    string
		broken  []string
		stopped bool
		want    []string // nil: not a *LinkStartError
	}{
		{name: "one", broken: []string{"carol"}, want: []string{"carol"}},
		{name: "two", broken: []string{"spare", "carol"}, want: []string{"carol", "spare"}},
		{name: "stopped", broken: []string{"carol"}, stopped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ml := &memLinks{broken: map[string]bool{}}
			for _, id := range tt.broken {
				ml.broken[id] = true
			}
			c, err := New(mustConfig(t, reloadConfig("100000", "s", spareAccount+"\n"+carolAccount, "")), Options{newLink: ml.factory})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			if tt.stopped {
				cancel()
			}
			err = c.Start(ctx)
			if err == nil {
				t.Fatal("Start succeeded with a link that cannot start")
			}
			var lse *LinkStartError
			isLSE := errors.As(err, &lse)
			switch {
			case tt.want == nil && isLSE:
				t.Errorf("Start: %v; a stop must not name the accounts", err)
			case tt.want != nil && (!isLSE || !slices.Equal(lse.IDs(), tt.want)):
				t.Errorf("Start: %v; want a *LinkStartError naming %v", err, tt.want)
			}
		})
	}
}
