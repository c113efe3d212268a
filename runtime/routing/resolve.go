package routing

import (
	"errors"
	"fmt"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Reason says why Resolve refused a destination.
type Reason uint8

// The reasons Resolve fails. All of them are final for the sender (F-class).
const (
	// ReasonNoRoute: no prefix of the destination is in the table (F02).
	ReasonNoRoute Reason = iota + 1
	// ReasonPeerProtocol: a peer.* address, which RFC 15 forbids forwarding (F02).
	ReasonPeerProtocol
	// ReasonReflect: the best route leads back to the source account and reflectPayments is
	// false (F02, as the JS connector's NoRouteFoundError).
	ReasonReflect
	// ReasonLocal: the destination is under the connector's own address but is not a child
	// account; nothing here can take it (F02).
	ReasonLocal
	// ReasonMissingDestination: the destination is empty (F01, as the JS InvalidPacketError).
	ReasonMissingDestination
)

// Sentinels for errors.Is on a *Error.
var (
	ErrNoRoute            = errors.New("routing: no route")
	ErrPeerProtocol       = errors.New("routing: peer.* addresses are never forwarded")
	ErrReflect            = errors.New("routing: route leads back to the source account")
	ErrLocal              = errors.New("routing: destination is this connector's own address")
	ErrMissingDestination = errors.New("routing: missing destination")
)

// Error is the error Resolve returns. Reject turns it into the ILP Reject the connector sends;
// the connector supplies triggeredBy (its own address).
type Error struct {
	Reason      Reason
	Destination string
	Source      string // the account the packet came from
	Prefix      string // the matched prefix, for ReasonReflect and ReasonLocal
}

// Code is the ILP error code for e.
func (e *Error) Code() ilp.ErrorCode {
	if e.Reason == ReasonMissingDestination {
		return ilp.CodeInvalidPacket
	}
	return ilp.CodeUnreachable
}

// Error is a message a person can act on; it is also the Reject message.
func (e *Error) Error() string {
	switch e.Reason {
	case ReasonPeerProtocol:
		return fmt.Sprintf("destination %s is a peer protocol address; peer.* packets are for the directly connected peer and are never forwarded", e.Destination)
	case ReasonReflect:
		return fmt.Sprintf("refusing to route payment to %s back to the account it came from (%s, route %s): reflectPayments is false", e.Destination, e.Source, e.Prefix)
	case ReasonLocal:
		if e.Destination == e.Prefix {
			return fmt.Sprintf("destination %s is this connector's own address and no local service (echo, peer protocols) handled the packet", e.Destination)
		}
		return fmt.Sprintf("no route found to %s: it is under this connector's address %s but no child account has that address", e.Destination, e.Prefix)
	case ReasonMissingDestination:
		return "missing destination: the packet has an empty destination address"
	}
	return fmt.Sprintf("no route found to %s (from account %s): no configured, child, learned or default route matches it", e.Destination, e.Source)
}

// Is makes errors.Is(err, ErrNoRoute) and the other sentinels work.
func (e *Error) Is(target error) bool {
	switch e.Reason {
	case ReasonNoRoute:
		return target == ErrNoRoute
	case ReasonPeerProtocol:
		return target == ErrPeerProtocol
	case ReasonReflect:
		return target == ErrReflect
	case ReasonLocal:
		return target == ErrLocal
	case ReasonMissingDestination:
		return target == ErrMissingDestination
	}
	return false
}

// Reject is the ILP Reject for e, triggered by the connector's own address.
func (e *Error) Reject(triggeredBy ilp.Address) *ilp.Reject {
	return &ilp.Reject{Code: e.Code(), TriggeredBy: triggeredBy, Message: e.Error()}
}

// Resolve returns the next-hop account for a packet to dest that arrived from the account
// source. reflect is CONNECTOR_REFLECT_PAYMENTS: when false, a route back to source is refused.
// peer.* destinations are never forwarded. On failure the error is a *Error.
//
// The success path allocates nothing.
func (t *Table) Resolve(dest, source string, reflect bool) (string, error) {
	if dest == "" {
		return "", &Error{Reason: ReasonMissingDestination, Source: source}
	}
	if isPeerAddress(dest) {
		return "", &Error{Reason: ReasonPeerProtocol, Destination: dest, Source: source}
	}
	r, ok := t.Lookup(dest)
	if !ok {
		return "", &Error{Reason: ReasonNoRoute, Destination: dest, Source: source}
	}
	if r.NextHop == "" {
		return "", &Error{Reason: ReasonLocal, Destination: dest, Source: source, Prefix: r.Prefix}
	}
	if !reflect && r.NextHop == source {
		return "", &Error{Reason: ReasonReflect, Destination: dest, Source: source, Prefix: r.Prefix}
	}
	return r.NextHop, nil
}

// isPeerAddress reports whether a is in the peer. scheme (segment-aware: "peerx.y" is not).
func isPeerAddress(a string) bool {
	const p = "peer"
	return len(a) >= len(p) && a[:len(p)] == p && (len(a) == len(p) || a[len(p)] == '.')
}
