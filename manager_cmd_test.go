package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

// TestRunManagerHelp checks that -h prints the flags and succeeds, as for the other commands,
// while a bad flag still fails. Neither reaches the API server: flags are parsed first.
func TestRunManagerHelp(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
	}{
		{[]string{"-h"}, false},
		{[]string{"--help"}, false},
		{[]string{"--no-such-flag"}, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var err error
			usage := captureStderr(t, func() { err = runManager(context.Background(), tt.args) })
			if (err != nil) != tt.wantErr || errors.Is(err, flag.ErrHelp) {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if !strings.Contains(usage, "-kubeconfig") || !strings.Contains(usage, "-leader-elect") {
				t.Errorf("usage not printed; stderr:\n%s", usage)
			}
		})
	}
}

// captureStderr runs f with os.Stderr, where the flag package prints usage, sent to a pipe.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	defer func() { os.Stderr = saved }()
	f()
	w.Close()
	return <-out
}
