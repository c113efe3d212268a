// Package routing is the connector's routing table: an immutable, segment-aware
// longest-prefix-match table over ILP address prefixes, the selection of one route per prefix
// among candidates (configured, local, child, default, learned), the construction of the table
// from the runtime config model, and Resolve, which turns a destination into a next-hop account
// with the ILP errors the JS connector gives.
//
// A Table never changes after Build. The connector keeps the current one in an
// atomic.Pointer[Table] and swaps in a new one on a config reload or a CCP update
// (copy-on-write), so lookups on the packet path take no lock and allocate nothing.
package routing

import (
	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// Source says where a route came from. The order of the constants is not the precedence; see
// Source.rank.
type Source uint8

// The sources of routes.
const (
	// SourceLocal is the connector's own address. Its route has no next hop: packets for it are
	// for the connector's own services (echo, peer protocols), never forwarded.
	SourceLocal Source = iota + 1
	// SourceConfigured is a static route from CONNECTOR_ROUTES.
	SourceConfigured
	// SourceChild is <own address>.<ilpAddressSegment or account id> of a child account.
	SourceChild
	// SourceDefault is CONNECTOR_DEFAULT_ROUTE, on the network's global prefix ("g" or "test").
	SourceDefault
	// SourceLearned is a route learned from a peer over CCP.
	SourceLearned
)

var sourceNames = [...]string{SourceLocal: "local", SourceConfigured: "configured", SourceChild: "child",
	SourceDefault: "default", SourceLearned: "learned"}

// String is the lower-case name of s, as the admin API shows it.
func (s Source) String() string {
	if int(s) < len(sourceNames) && sourceNames[s] != "" {
		return sourceNames[s]
	}
	return "unknown"
}

// rank orders candidates for the same prefix, highest wins. Configured routes beat everything
// (the JS getBestPeerForPrefix checks config.routes first); the local routes of the JS
// connector (own address, children, default) come next; learned routes come last.
func (s Source) rank() int {
	switch s {
	case SourceConfigured:
		return 5
	case SourceLocal:
		return 4
	case SourceChild:
		return 3
	case SourceDefault:
		return 2
	case SourceLearned:
		return 1
	}
	return 0
}

// Route is one entry of the table: packets whose destination falls under Prefix go to the
// account NextHop.
type Route struct {
	Prefix   string          // ILP address prefix, matched on segment boundaries
	NextHop  string          // account id; "" for the connector's own address (SourceLocal)
	Path     []string        // CCP path of connector addresses to the prefix; empty for local routes
	Relation config.Relation // relation of the next-hop account; "" for SourceLocal
	Source   Source
	Auth     []byte // CCP route auth (32 bytes) once CCP is implemented; nil otherwise
}

// relationWeight is the JS connector's preference among learned routes (routing/relation.ts):
// a route through a child beats one through a peer, which beats one through a parent.
func relationWeight(r config.Relation) int {
	switch r {
	case config.RelationChild:
		return 2
	case config.RelationPeer:
		return 1
	}
	return 0
}

// better reports whether a should be chosen over b for the same prefix: higher source rank,
// then (learned routes) heavier relation, then shorter path, then the smaller next-hop id, so
// that the choice never depends on insertion order.
func better(a, b *Route) bool {
	if ra, rb := a.Source.rank(), b.Source.rank(); ra != rb {
		return ra > rb
	}
	if wa, wb := relationWeight(a.Relation), relationWeight(b.Relation); wa != wb {
		return wa > wb
	}
	if len(a.Path) != len(b.Path) {
		return len(a.Path) < len(b.Path)
	}
	return a.NextHop < b.NextHop
}
