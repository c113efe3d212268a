package main

import (
	"context"
	"os"

	"github.com/ilpfleet/ilpfleet/internal/loadgen"
)

// runLoadgen is `ilpfleet loadgen`: the BTP load generator (see internal/loadgen and
// hack/bench/run.sh). Its summary line for the command list is loadgen.Summary.
// Like the connector, it trades heap for less GC work (tuneGC): on a shared machine the load
// generator's CPU is taken from the connector under test.
func runLoadgen(ctx context.Context, args []string) error {
	tuneGC()
	return loadgen.Main(ctx, args, os.Stdout, os.Stderr)
}
