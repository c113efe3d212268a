package ilp

import (
	"testing"
	"time"
)

func BenchmarkParsePrepare(b *testing.B) {
	raw := loadHex(b, "ilpjs_prepare")
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := ParsePrepare(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodePrepare(b *testing.B) {
	p, err := ParsePrepare(loadHex(b, "ilpjs_prepare"))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = p.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseFulfill(b *testing.B) {
	raw := loadHex(b, "ilpjs_fulfill")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseResponse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetPrepareAmountExpiry(b *testing.B) {
	raw := loadHex(b, "ilpjs_prepare")
	t := time.Date(2030, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if err := SetPrepareAmount(raw, 99); err != nil {
			b.Fatal(err)
		}
		if err := SetPrepareExpiry(raw, t); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateAddress(b *testing.B) {
	const a = "g.us-fed.ach.0.acmebank.swx0a0.acmecorp.sales.199.~ipr.cdfa5e16-e759-4ba3-88f6-8b9dc83c1868.2"
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateAddress(a); err != nil {
			b.Fatal(err)
		}
	}
}

// An encode into a reused buffer must not allocate: the packet path depends on it.
func TestEncodePrepareDoesNotAllocate(t *testing.T) {
	p, err := ParsePrepare(loadHex(t, "ilpjs_prepare"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = p.AppendBinary(buf[:0])
	})
	if allocs != 0 {
		t.Fatalf("AppendBinary into a reused buffer allocates %.0f times", allocs)
	}
}
