package routing

import (
	"fmt"
	"testing"
)

// BenchmarkResolve measures a lookup that hits a prefix of 2-4 segments in tables of 10, 1,000
// and 100,000 prefixes, with destinations two segments longer than the prefix.
func BenchmarkResolve(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		tbl := benchTable(n)
		dests := make([]string, 64)
		for i := range dests {
			dests[i] = benchDest((i * 7919) % n)
		}
		b.Run(fmt.Sprintf("prefixes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := tbl.Resolve(dests[i&63], "src", false); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkResolveMiss measures a destination that falls through to the default route.
func BenchmarkResolveMiss(b *testing.B) {
	tbl := benchTable(100000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tbl.Resolve("g.unknown.place.far.away", "src", false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuild measures building a 100,000-prefix table (the cost of one CCP-driven swap).
func BenchmarkBuild(b *testing.B) {
	prefixes := make([]string, 100000)
	for i := range prefixes {
		prefixes[i] = benchPrefix(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		bl := NewBuilder()
		for _, p := range prefixes {
			_ = bl.Add(Route{Prefix: p, NextHop: "a", Source: SourceLearned})
		}
		_ = bl.Build()
	}
}
