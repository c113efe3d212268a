package connector

import (
	"context"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// benchConfig forwards from alice (USD 2, balance limits) to bob (EUR 4) through a static rate
// with spread, so the packet takes every step of the hot path. The dedupe middleware is off
// because the benchmark sends the same packet again and again, which it would answer from its
// cache; the rate limit is raised so that it never refuses.
const benchConfig = `
ilpAddress: test.c
backend: static
backendConfig: {base: EUR, rates: {USD: "1.25", EUR: "1"}}
spread: 0.01
disableMiddleware: [deduplicate]
accounts:
  alice:
    relation: child
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    rateLimit: {refillCount: 1000000000000, refillPeriod: 1000}
    balance: {maximum: "9000000000000000000"}
    options: {listener: {port: 7001, secret: s}}
  bob:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: EUR
    assetScale: 4
    balance: {minimum: "-9000000000000000000", maximum: "1"}
    options: {listener: {port: 7002, secret: s}}
routes:
  - {targetPrefix: test.bob, peerId: bob}
`

func BenchmarkForward(b *testing.B) {
	c, ml := startMem(b, benchConfig, nil)
	_ = c
	ful := &ilp.Fulfill{Fulfillment: preimage}
	ml.setRemote("bob", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return ful, nil })
	alice := ml.get("alice")
	p := prepare("test.bob.x", 100, time.Now(), time.Hour)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := alice.inject(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}
