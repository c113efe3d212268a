package connector

import (
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// benchBTPConfig is hack/bench/run.sh's single-connector setup: two ilp-plugin-btp child
// listeners, USD scale 9, balance limits wide, rate limit raised, spread 0, every middleware on.
const benchBTPConfig = `
ilpAddress: test.a
backend: one-to-one
spread: 0
accounts:
  sender:
    relation: child
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 9
    balance: {minimum: "-1000000000000000", maximum: "1000000000000000"}
    rateLimit: {refillPeriod: 1000, refillCount: 1000000000000000, capacity: 1000000000000000}
    options: {listener: {host: 127.0.0.1, port: %PS%, secret: sender-secret}}
  receiver:
    relation: child
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 9
    balance: {minimum: "-1000000000000000", maximum: "1000000000000000"}
    rateLimit: {refillPeriod: 1000, refillCount: 1000000000000000, capacity: 1000000000000000}
    options: {listener: {host: 127.0.0.1, port: %PR%, secret: receiver-secret}}
`

func benchClient(b *testing.B, port int, secret string, h ilp.Handler) *btp.Client {
	b.Helper()
	cl, err := btp.NewClient(btp.ClientOptions{Server: "btp+ws://lg:" + secret + "@127.0.0.1:" + itoa(port),
		Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Start(ctx, h); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cl.Close() })
	return cl
}

// BenchmarkForwardBTP is the load generator's path through one connector, in process: a BTP
// client sends distinct Prepares to the sender account from 100 goroutines, the connector
// forwards them over BTP to a client on the receiver account that fulfills. It runs on the
// memory store and on the embedded file store (in a temporary directory), to show what
// durability costs on the packet path.
func BenchmarkForwardBTP(b *testing.B) {
	b.Run("store=memory", func(b *testing.B) { forwardBTP(b, store.NewMemory()) })
	b.Run("store=file", func(b *testing.B) {
		st, err := store.OpenFile(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		forwardBTP(b, st)
	})
}

func forwardBTP(b *testing.B, st store.Store) {
	doc := strings.NewReplacer("%PS%", itoa(freePort(b)), "%PR%", itoa(freePort(b))).Replace(benchBTPConfig)
	c, err := New(mustConfig(b, doc), Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	ful := &ilp.Fulfill{Fulfillment: preimage}
	benchClient(b, benchPort(doc, "receiver-secret"), "receiver-secret", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return ful, nil })
	snd := benchClient(b, benchPort(doc, "sender-secret"), "sender-secret", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.a.sender", "no")
	})
	deadline := time.Now().Add(5 * time.Second)
	for !(c.Connected("sender") && c.Connected("receiver")) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	workers := benchWorkers()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := prepare("test.a.receiver", 1, time.Now(), 30*time.Second)
			p.Data = make([]byte, 16)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				binary.BigEndian.PutUint64(p.Data, uint64(i))
				p.ExpiresAt = time.Now().Add(30 * time.Second) // as the load generator does
				if _, err := snd.Send(ctx, p); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
	if fs, ok := st.(*store.File); ok {
		b.ReportMetric(float64(b.N)/float64(fs.Commits()), "packets/commit")
	}
}

// benchPort finds the port of the listener whose secret is secret in the config document.
func benchPort(doc, secret string) int {
	i := strings.Index(doc, "secret: "+secret)
	j := strings.LastIndex(doc[:i], "port: ")
	n := 0
	for _, ch := range doc[j+len("port: "):] {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
}

// benchWorkers is the number of packets in flight: 100, or ILPFLEET_BENCH_WORKERS.
func benchWorkers() int {
	if n, err := strconv.Atoi(os.Getenv("ILPFLEET_BENCH_WORKERS")); err == nil && n > 0 {
		return n
	}
	return 100
}
