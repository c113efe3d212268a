// Package link defines what the connector needs from a transport to one account's peer (BTP,
// ILP-over-HTTP, …). Transports implement Link; the connector never sees their wire format.
package link

import (
	"context"
	"errors"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Link carries ILP packets to and from the peer of one account.
type Link interface {
	// Start connects (a client) or starts accepting (a server) and serves every Prepare the peer
	// sends with h until Close. It returns once the link is set up; connection loss afterwards is
	// handled by the link (reconnects) and shown by Connected.
	Start(ctx context.Context, h ilp.Handler) error
	// Send forwards a Prepare and waits for the peer's answer or ctx. A Reject from the peer is
	// returned as a *ilp.Reject error; a transport failure as another error (ErrNotConnected, …).
	Send(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error)
	// Connected reports whether at least one peer connection is up and authenticated.
	Connected() bool
	// Close stops the link and waits for its goroutines.
	Close() error
}

// ContextCloser is a Link whose Close may wait long (for deliveries it owes its peer) and can
// stop waiting when ctx ends: the connector closes an account with its own deadline.
type ContextCloser interface {
	CloseContext(ctx context.Context) error
}

// ErrNotConnected is returned by Send when no peer connection is up.
var ErrNotConnected = errors.New("link: peer not connected")
