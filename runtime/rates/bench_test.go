package rates

import "testing"

// BenchmarkConvert measures the packet-path conversion: the one-to-one identity fast path, the
// one-to-one path with spread and scale change, a cached static rate, and an uncached static
// rate (what a cache miss or a live backend costs).
func BenchmarkConvert(b *testing.B) {
	static := mustStatic(b)
	cases := []struct {
		name     string
		c        *Converter
		src, dst Asset
	}{
		{"one-to-one/identity", NewConverter(OneToOne{}), Asset{"USD", 9}, Asset{"USD", 9}},
		{"one-to-one/spread+scale", NewConverter(OneToOne{}), Asset{"USD", 2}, Asset{"USD", 9}},
		{"static/cached", NewConverter(static), Asset{"EUR", 2}, Asset{"USD", 9}},
		{"static/uncached", NewConverter(uncached{static}), Asset{"EUR", 2}, Asset{"USD", 9}},
	}
	for _, tc := range cases {
		spread := jsSpread
		if tc.name == "one-to-one/identity" {
			spread = zero
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var amount uint64 = 1000
			for b.Loop() {
				if _, err := tc.c.Convert(amount, tc.src, tc.dst, spread); err != nil {
					b.Fatal(err)
				}
				amount++
			}
		})
	}
}

// uncached hides the Immutable method so that the Converter computes the rate every time.
type uncached struct{ *Static }

func (uncached) Immutable() bool { return false }
