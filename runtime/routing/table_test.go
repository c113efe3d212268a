package routing

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

func mustBuild(t testing.TB, routes ...Route) *Table {
	t.Helper()
	b := NewBuilder()
	for _, r := range routes {
		if err := b.Add(r); err != nil {
			t.Fatalf("Add(%+v): %v", r, err)
		}
	}
	return b.Build()
}

func TestLookupSegmentAware(t *testing.T) {
	tbl := mustBuild(t,
		Route{Prefix: "g", NextHop: "parent", Source: SourceDefault},
		Route{Prefix: "g.alice", NextHop: "alice", Source: SourceConfigured},
		Route{Prefix: "g.alice.sub", NextHop: "sub", Source: SourceConfigured},
		Route{Prefix: "test.x", NextHop: "tx", Source: SourceConfigured},
	)
	tests := []struct {
		dest, want string
		ok         bool
	}{
		{"g.alice", "alice", true},
		{"g.alice.x", "alice", true},
		{"g.alice2", "parent", true}, // raw string prefix would say alice
		{"g.alice2.x", "parent", true},
		{"g.alice.sub", "sub", true},
		{"g.alice.sub.deep.er", "sub", true},
		{"g.alice.subway", "alice", true},
		{"g", "parent", true},
		{"g.bob", "parent", true},
		{"gx.bob", "", false},
		{"test.x.y", "tx", true},
		{"test.xy", "", false},
		{"test", "", false},
		{"", "", false},
		{"g.alice.", "alice", true}, // invalid address, but no panic and a sane answer
		{"g..alice", "parent", true},
	}
	for _, tc := range tests {
		r, ok := tbl.Lookup(tc.dest)
		got := ""
		if ok {
			got = r.NextHop
		}
		if ok != tc.ok || got != tc.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tc.dest, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLookupCatchAllAndNil(t *testing.T) {
	tbl := mustBuild(t, Route{Prefix: "", NextHop: "all", Source: SourceConfigured},
		Route{Prefix: "g.a", NextHop: "a", Source: SourceConfigured})
	for dest, want := range map[string]string{"g.a.b": "a", "g.b": "all", "private.x": "all"} {
		if r, ok := tbl.Lookup(dest); !ok || r.NextHop != want {
			t.Errorf("Lookup(%q) = %v, %v; want %q", dest, r, ok, want)
		}
	}
	var nilTable *Table
	if _, ok := nilTable.Lookup("g.a"); ok {
		t.Error("nil table found a route")
	}
}

func TestBuilderSelection(t *testing.T) {
	learned := func(hop string, rel config.Relation, path ...string) Route {
		return Route{Prefix: "g.x", NextHop: hop, Relation: rel, Path: path, Source: SourceLearned}
	}
	tests := []struct {
		name  string
		cands []Route
		want  string
	}{
		{"configured beats child", []Route{{Prefix: "g.x", NextHop: "kid", Source: SourceChild}, {Prefix: "g.x", NextHop: "cfg", Source: SourceConfigured}}, "cfg"},
		{"child beats learned", []Route{learned("p", config.RelationChild), {Prefix: "g.x", NextHop: "kid", Source: SourceChild}}, "kid"},
		{"learned child beats peer", []Route{learned("peer1", config.RelationPeer), learned("kid", config.RelationChild, "a", "b", "c")}, "kid"},
		{"learned peer beats parent", []Route{learned("par", config.RelationParent), learned("peer1", config.RelationPeer, "a", "b")}, "peer1"},
		{"shorter path", []Route{learned("p1", config.RelationPeer, "a", "b"), learned("p2", config.RelationPeer, "a")}, "p2"},
		{"tie by id", []Route{learned("zed", config.RelationPeer, "a"), learned("amy", config.RelationPeer, "b")}, "amy"},
		{"tie by id reverse order", []Route{learned("amy", config.RelationPeer, "b"), learned("zed", config.RelationPeer, "a")}, "amy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := mustBuild(t, tc.cands...).Get("g.x")
			if !ok || r.NextHop != tc.want {
				t.Fatalf("got %+v, want next hop %q", r, tc.want)
			}
		})
	}
}

func TestBuilderCopiesAndRejectsBadPrefixes(t *testing.T) {
	path := []string{"g.a"}
	b := NewBuilder()
	if err := b.Add(Route{Prefix: "g.x", NextHop: "a", Path: path, Source: SourceLearned}); err != nil {
		t.Fatal(err)
	}
	tbl := b.Build()
	path[0] = "changed"
	if r, _ := tbl.Get("g.x"); r.Path[0] != "g.a" {
		t.Errorf("table shares the caller's path slice: %v", r.Path)
	}
	for _, p := range []string{"g.", ".g", "g..a", "g.a b", "g.ä", string(make([]byte, 1024))} {
		if err := b.Add(Route{Prefix: p, NextHop: "a", Source: SourceConfigured}); err == nil {
			t.Errorf("Add(%q) accepted a bad prefix", p)
		}
	}
	if err := b.Add(Route{Prefix: "g.y", NextHop: "a"}); err == nil {
		t.Error("Add accepted a route without a source")
	}
	if got := tbl.Len(); got != 1 {
		t.Errorf("Len = %d, want 1", got)
	}
}

func TestResolve(t *testing.T) {
	tbl := mustBuild(t,
		Route{Prefix: "test.conn", Source: SourceLocal},
		Route{Prefix: "test.conn.alice", NextHop: "alice", Relation: config.RelationChild, Source: SourceChild},
		Route{Prefix: "test", NextHop: "up", Relation: config.RelationParent, Source: SourceDefault},
		Route{Prefix: "", NextHop: "all", Source: SourceConfigured},
	)
	tests := []struct {
		dest, source string
		reflect      bool
		want         string
		reason       Reason
		code         ilp.ErrorCode
	}{
		{"test.conn.alice.x", "up", false, "alice", 0, ""},
		{"test.bob", "alice", false, "up", 0, ""},
		{"test.bob", "up", true, "up", 0, ""},
		{"test.bob", "up", false, "", ReasonReflect, ilp.CodeUnreachable},
		{"peer.config", "alice", true, "", ReasonPeerProtocol, ilp.CodeUnreachable},
		{"peer.route.control", "alice", true, "", ReasonPeerProtocol, ilp.CodeUnreachable},
		{"peerx.y", "alice", true, "all", 0, ""},
		{"test.conn", "alice", true, "", ReasonLocal, ilp.CodeUnreachable},
		{"test.conn.nobody", "alice", true, "", ReasonLocal, ilp.CodeUnreachable},
		{"", "alice", true, "", ReasonMissingDestination, ilp.CodeInvalidPacket},
	}
	for _, tc := range tests {
		got, err := tbl.Resolve(tc.dest, tc.source, tc.reflect)
		if tc.reason == 0 {
			if err != nil || got != tc.want {
				t.Errorf("Resolve(%q, %q, %v) = %q, %v; want %q", tc.dest, tc.source, tc.reflect, got, err, tc.want)
			}
			continue
		}
		var re *Error
		if !errors.As(err, &re) || re.Reason != tc.reason || re.Code() != tc.code {
			t.Errorf("Resolve(%q, %q, %v) = %q, %v; want reason %d code %s", tc.dest, tc.source, tc.reflect, got, err, tc.reason, tc.code)
		}
	}
}

func TestResolveNoRouteReject(t *testing.T) {
	tbl := mustBuild(t, Route{Prefix: "g.a", NextHop: "a", Source: SourceConfigured})
	_, err := tbl.Resolve("g.nowhere.x", "alice", true)
	if !errors.Is(err, ErrNoRoute) || errors.Is(err, ErrReflect) {
		t.Fatalf("err = %v, want ErrNoRoute", err)
	}
	rej := err.(*Error).Reject("g.conn")
	if rej.Code != ilp.CodeUnreachable || rej.TriggeredBy != "g.conn" {
		t.Errorf("reject = %+v", rej)
	}
	want := "no route found to g.nowhere.x (from account alice): no configured, child, learned or default route matches it"
	if rej.Message != want {
		t.Errorf("message = %q\nwant      %q", rej.Message, want)
	}
}

func TestResolveAllocFree(t *testing.T) {
	tbl := benchTable(1000)
	dest := benchDest(500)
	n := testing.AllocsPerRun(100, func() {
		if _, err := tbl.Resolve(dest, "src", false); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("Resolve allocates %.1f times per call, want 0", n)
	}
}

// TestConcurrentSwap runs lookups against an atomic.Pointer while tables are swapped in, under
// -race: a reader sees either the old or the new table, never a torn one.
func TestConcurrentSwap(t *testing.T) {
	var cur atomic.Pointer[Table]
	tables := []*Table{
		mustBuild(t, Route{Prefix: "g.a", NextHop: "one", Source: SourceConfigured}),
		mustBuild(t, Route{Prefix: "g.a", NextHop: "two", Source: SourceConfigured}),
	}
	cur.Store(tables[0])
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				hop, err := cur.Load().Resolve("g.a.b", "x", false)
				if err != nil || (hop != "one" && hop != "two") {
					t.Errorf("Resolve = %q, %v", hop, err)
					return
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		cur.Store(tables[i%2])
	}
	wg.Wait()
}

func TestSourceString(t *testing.T) {
	for s, want := range map[Source]string{SourceLocal: "local", SourceLearned: "learned", 0: "unknown", 99: "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("Source(%d).String() = %q, want %q", s, got, want)
		}
	}
}

func benchTable(n int) *Table {
	b := NewBuilder()
	for i := 0; i < n; i++ {
		_ = b.Add(Route{Prefix: benchPrefix(i), NextHop: fmt.Sprintf("acct%d", i%50), Source: SourceLearned, Relation: config.RelationPeer})
	}
	_ = b.Add(Route{Prefix: "g", NextHop: "parent", Source: SourceDefault})
	return b.Build()
}

// benchPrefix spreads prefixes over two to four segments, like real ILSP tables.
func benchPrefix(i int) string {
	switch i % 3 {
	case 0:
		return fmt.Sprintf("g.ilsp%d", i)
	case 1:
		return fmt.Sprintf("g.region%d.ilsp%d", i%17, i)
	}
	return fmt.Sprintf("g.region%d.ilsp%d.node%d", i%17, i, i%5)
}

func benchDest(i int) string { return benchPrefix(i) + ".client42.stream~abc" }
