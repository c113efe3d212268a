// Command ilpfleet is the one binary of ilpfleet: the Kubernetes operator (manager), the
// connector runtime (connector) and their tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ilpfleet/ilpfleet/internal/loadgen"
	"github.com/ilpfleet/ilpfleet/internal/manager"
	"github.com/ilpfleet/ilpfleet/internal/version"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"manager", "run the Kubernetes operator (reconciles Connector, Account, Route, SettlementEngine)", manager.Run},
		{"connector", "run one ILP connector, configured like ilp-connector (CONNECTOR_* variables) or from a file", runConnector},
		{"settlement-engine", "run a settlement engine (RFC 38) built with ilpfleet's framework: the mock, for tests and demos", runSettlementEngine},
		{"loadgen", loadgen.Summary, runLoadgen},
		{"version", "print the version", func(context.Context, []string) error { fmt.Println(version.String()); return nil }},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: ilpfleet <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-18s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'ilpfleet <command> -h' for the flags of a command.")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// run runs the command args name and returns the exit status. A command's -h prints its flags
// and succeeds: each command's flag parsing returns flag.ErrHelp then, handled here once
// rather than ending in "flag: help requested".
func run(ctx context.Context, args []string) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			if err := c.run(ctx, args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(os.Stderr, "ilpfleet %s: %v\n", c.name, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(os.Stderr, "ilpfleet: unknown command %q\n\n", args[0])
	usage(os.Stderr)
	return 2
}
