package main

import (
	"context"
	"errors"
	"flag"

	"github.com/ilpfleet/ilpfleet/internal/manager"
)

// runManager is `ilpfleet manager`: the operator (internal/manager). -h prints the flags and
// succeeds, as for every other command, instead of ending in "flag: help requested".
func runManager(ctx context.Context, args []string) error {
	err := manager.Run(ctx, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
