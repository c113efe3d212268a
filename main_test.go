package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
)

// TestHelpSucceeds: -h and --help print a command's flags and exit 0, for every command with
// flags (their parsing returns flag.ErrHelp, which run handles once), while a bad flag still
// fails. None gets further: each parses its flags first.
func TestHelpSucceeds(t *testing.T) {
	// connector and loadgen tune the GC before parsing, unless these are set: the test
	// process keeps its own.
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "off")
	for _, c := range commands() {
		if c.name == "version" { // no flags: it prints the version whatever follows
			continue
		}
		for _, tt := range []struct {
			flag string
			want int
		}{{"-h", 0}, {"--help", 0}, {"--no-such-flag", 1}} {
			var code int
			stderr := captureStderr(t, func() { code = run(context.Background(), []string{c.name, tt.flag}) })
			if code != tt.want {
				t.Errorf("ilpfleet %s %s: exit status %d, want %d; stderr:\n%s", c.name, tt.flag, code, tt.want, stderr)
			}
			if !strings.Contains(stderr, "Usage") {
				t.Errorf("ilpfleet %s %s: usage not printed; stderr:\n%s", c.name, tt.flag, stderr)
			}
		}
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
