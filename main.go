// Command ilpfleet is the one binary of ilpfleet: the Kubernetes operator (manager), the
// connector runtime (connector) and their tools.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/ilpfleet/ilpfleet/internal/loadgen"
	"github.com/ilpfleet/ilpfleet/internal/version"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"manager", "run the Kubernetes operator (reconciles Connector, Account, Route, SettlementEngine)", runManager},
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
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands() {
		if c.name == os.Args[1] {
			if err := c.run(ctx, os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "ilpfleet %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "ilpfleet: unknown command %q\n\n", os.Args[1])
	usage(os.Stderr)
	os.Exit(2)
}
