// Package testport hands tests free TCP ports on 127.0.0.1 for servers that must be told
// their port before they start (a connector configured with listener ports).
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Ports are drawn below Linux's default ephemeral range (32768 and up): a port the kernel gives
// to an outgoing connection or a ":0" listener of another test never collides with one drawn
// here, and drawing at random keeps concurrent test packages apart.
const (
	low  = 20000
	high = 32000
)

// Free returns a port that was free on every interface a moment ago (the BTP and HTTP
// listeners of a JS-style configuration bind every interface).
func Free() (int, error) {
	var err error
	for range 200 {
		port := low + rand.IntN(high-low)
		var l net.Listener
		if l, err = net.Listen("tcp", ":"+strconv.Itoa(port)); err == nil {
			_ = l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d: %w", low, high-1, err)
}

// Get is Free for tests: it fails the test when no port is free.
func Get(t testing.TB) int {
	t.Helper()
	port, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	return port
}
