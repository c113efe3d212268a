package main

import (
	"context"
	"errors"
)

// runConnector runs the connector runtime. It is wired to runtime/ as the runtime lands.
func runConnector(ctx context.Context, args []string) error {
	return errors.New("the connector runtime is not built into this version yet")
}
