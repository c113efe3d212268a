package routing

import (
	"fmt"
	"sort"
	"strings"
)

// maxPrefixLen is the RFC 15 limit on an ILP address; a prefix cannot be longer.
const maxPrefixLen = 1023

// Table is an immutable routing table. It is built by a Builder and never modified, so any
// number of goroutines may call Lookup and Resolve on it concurrently without locks.
//
// The table is a trie over address segments: "g.us.bob" is the path root → "g" → "us" → "bob".
// A lookup walks the destination's segments from the root and remembers the last node that
// holds a route, which is the longest prefix that matches on a segment boundary ("g.alice"
// matches "g.alice" and "g.alice.x" but never "g.alice2"). Each step is one map lookup keyed
// by a substring of the destination, which allocates nothing.
type Table struct {
	root   node
	routes []Route // the selected routes, sorted by prefix; the trie points into this slice
}

type node struct {
	children map[string]*node
	route    *Route
}

// Len is the number of prefixes in the table.
func (t *Table) Len() int { return len(t.routes) }

// Routes returns a copy of the selected routes, sorted by prefix (for the admin API and CCP).
func (t *Table) Routes() []Route {
	out := make([]Route, len(t.routes))
	copy(out, t.routes)
	return out
}

// Get returns the route for exactly prefix, if there is one.
func (t *Table) Get(prefix string) (*Route, bool) {
	i := sort.Search(len(t.routes), func(i int) bool { return t.routes[i].Prefix >= prefix })
	if i < len(t.routes) && t.routes[i].Prefix == prefix {
		return &t.routes[i], true
	}
	return nil, false
}

// Lookup returns the route of the longest prefix of dest, matched on segment boundaries. The
// empty prefix, when present, matches every destination. The returned Route belongs to the
// table and must not be modified.
func (t *Table) Lookup(dest string) (*Route, bool) {
	if t == nil {
		return nil, false
	}
	n := &t.root
	best := n.route
	rest := dest
	// Each iteration consumes one segment, so the loop runs at most len(dest)+1 times.
	for n.children != nil {
		seg := rest
		last := true
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			seg, rest, last = rest[:i], rest[i+1:], false
		}
		child := n.children[seg]
		if child == nil {
			break
		}
		n = child
		if n.route != nil {
			best = n.route
		}
		if last {
			break
		}
	}
	return best, best != nil
}

// Builder collects candidate routes and builds a Table that holds the best one per prefix.
// A Builder is not safe for concurrent use; the Table it builds is.
type Builder struct {
	best map[string]*Route
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder { return &Builder{best: make(map[string]*Route)} }

// Add offers r as a candidate for r.Prefix. It keeps r only if it beats the current candidate
// (see the package doc for the order). The prefix must be "" (a catch-all) or dot-separated
// segments of RFC 15 characters, with no empty segment and no trailing dot.
func (b *Builder) Add(r Route) error {
	if err := ValidatePrefix(r.Prefix); err != nil {
		return err
	}
	if r.Source.rank() == 0 {
		return fmt.Errorf("routing: route for %q has no valid source", r.Prefix)
	}
	r.Path = append([]string(nil), r.Path...) // the table must not share the caller's slices
	r.Auth = append([]byte(nil), r.Auth...)
	if cur, ok := b.best[r.Prefix]; ok && !better(&r, cur) {
		return nil
	}
	b.best[r.Prefix] = &r
	return nil
}

// Build returns the Table of the routes added so far. The Builder may be reused afterwards; the
// Table does not share memory with it.
func (b *Builder) Build() *Table {
	t := &Table{routes: make([]Route, 0, len(b.best))}
	for _, r := range b.best {
		t.routes = append(t.routes, *r)
	}
	sort.Slice(t.routes, func(i, j int) bool { return t.routes[i].Prefix < t.routes[j].Prefix })
	for i := range t.routes {
		t.insert(&t.routes[i])
	}
	return t
}

func (t *Table) insert(r *Route) {
	n := &t.root
	if r.Prefix != "" {
		for seg := range strings.SplitSeq(r.Prefix, ".") {
			if n.children == nil {
				n.children = make(map[string]*node)
			}
			child := n.children[seg]
			if child == nil {
				child = &node{}
				n.children[seg] = child
			}
			n = child
		}
	}
	n.route = r
}

// ValidatePrefix checks that p is usable as a route prefix: "" (catch-all), or at most 1023
// bytes of dot-separated segments made of A-Z a-z 0-9 _ ~ - (RFC 15), with no empty segment.
// It does not require a known scheme, so "g" or "test" alone are valid prefixes.
func ValidatePrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > maxPrefixLen {
		return fmt.Errorf("routing: prefix of %d bytes is longer than the %d an ILP address may have", len(p), maxPrefixLen)
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '.' {
			if !segmentChar(p[i]) {
				return fmt.Errorf("routing: prefix %q has the character %q, which ILP addresses do not allow (A-Z a-z 0-9 _ ~ -)", p, p[i])
			}
			continue
		}
		if i == start {
			return fmt.Errorf("routing: prefix %q has an empty segment (a leading, trailing or doubled '.')", p)
		}
		start = i + 1
	}
	return nil
}

// ValidateSegment checks one address segment, such as a child's ilpAddressSegment.
func ValidateSegment(s string) error {
	if s == "" {
		return fmt.Errorf("routing: empty address segment")
	}
	for i := 0; i < len(s); i++ {
		if !segmentChar(s[i]) {
			return fmt.Errorf("routing: address segment %q has the character %q, which ILP addresses do not allow (A-Z a-z 0-9 _ ~ -)", s, s[i])
		}
	}
	return nil
}

func segmentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '~' || c == '-'
}
