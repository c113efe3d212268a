package middleware

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// benchHandler is a source's incoming pipeline, a core that forwards to the next hop, and the
// next hop's outgoing pipeline in front of a link that fulfills at once: every built-in is on.
func benchHandler(b *testing.B, disabled ...string) ilp.Handler {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	env := Env{
		Address: func() ilp.Address { return "test.conn" },
		Store:   store.NewMemory(),
		State:   NewState(),
		Metrics: m,
		Alerts:  NewAlerts(nil),
	}
	acct := config.Account{
		AssetCode: "USD", AssetScale: 9,
		Balance:         &config.Balance{Minimum: i64(-1 << 62), Maximum: i64(1 << 62)},
		MaxPacketAmount: u64(1 << 40),
		Throughput:      &config.Throughput{IncomingAmount: u64(1 << 62), OutgoingAmount: u64(1 << 62)},
		RateLimit:       &config.RateLimit{RefillPeriod: time.Second, RefillCount: 1 << 40},
	}
	src, err := BuildPipelines(env, "src", acct, disabled)
	if err != nil {
		b.Fatal(err)
	}
	dst, err := BuildPipelines(env, "dst", acct, disabled)
	if err != nil {
		b.Fatal(err)
	}
	fulfill := &ilp.Fulfill{Fulfillment: goodFulfillment}
	link := func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return fulfill, nil }
	return src.Incoming(dst.Outgoing(link))
}

// BenchmarkPipeline measures every built-in, and shows what the two costliest ones add.
func BenchmarkPipeline(b *testing.B) {
	for _, bc := range []struct {
		name     string
		disabled []string
	}{{"all", nil}, {"noDedupe", []string{NameDeduplicate}}, {"noExpire", []string{NameExpire}}, {"none", Builtins}} {
		b.Run(bc.name, func(b *testing.B) { benchSerial(b, benchHandler(b, bc.disabled...)) })
	}
}

func benchSerial(b *testing.B, h ilp.Handler) {
	ctx := context.Background()
	p := &ilp.Prepare{Amount: 10, ExpiresAt: time.Now().Add(time.Hour), ExecutionCondition: goodCondition,
		Destination: "test.bob", Data: make([]byte, 8)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(p.Data, uint64(i)) // distinct packets: no dedupe hits
		if _, err := h(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPipelineParallel(b *testing.B) {
	h := benchHandler(b)
	ctx := context.Background()
	var seq atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		p := &ilp.Prepare{Amount: 10, ExpiresAt: time.Now().Add(time.Hour), ExecutionCondition: goodCondition,
			Destination: "test.bob", Data: make([]byte, 8)}
		for pb.Next() {
			binary.BigEndian.PutUint64(p.Data, seq.Add(1))
			if _, err := h(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
