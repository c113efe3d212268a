package main

import (
	"context"
	"os"

	"github.com/ilpfleet/ilpfleet/internal/loadgen"
)

// runLoadgen is `ilpfleet loadgen`: the BTP load generator (see internal/loadgen and
// hack/bench/run.sh). Its summary line for the command list is loadgen.Summary.
func runLoadgen(ctx context.Context, args []string) error {
	return loadgen.Main(ctx, args, os.Stdout, os.Stderr)
}
