package btp

import (
	"context"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// BenchmarkRoundTrip sends Prepares from a Client to a PeerServer over loopback and waits for
// the Fulfill: the cost of one BTP hop without any connector logic.
func BenchmarkRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		b.Run(bc.name, func(b *testing.B) {
			srv := startBenchServer(b)
			cli := startClientB(b, serverURL(srv, "", "s3cret"))
			p := prepare("test.bob", "0123456789abcdef0123456789abcdef")
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if bc.parallel {
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := cli.Send(ctx, p); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for range b.N {
					if _, err := cli.Send(ctx, p); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
		})
	}
}

func startBenchServer(b *testing.B) *PeerServer {
	s, err := NewPeerServer(PeerServerOptions{Host: "127.0.0.1", Secret: "s3cret", Common: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background(), func(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		return &ilp.Fulfill{Fulfillment: preimage}, nil
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func startClientB(b *testing.B, url string) *Client {
	c, err := NewClient(ClientOptions{Server: url, Common: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Start(ctx, echo); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
