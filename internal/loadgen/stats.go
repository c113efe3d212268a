package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"time"
)

// Percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of sorted, ascending samples:
// the smallest sample such that at least q of all samples are ≤ it. It returns 0 for no
// samples. Nearest rank never interpolates, so every figure printed is a latency that was
// really measured.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 || q <= 0 {
		if n == 0 {
			return 0
		}
		return sorted[0]
	}
	if q >= 1 {
		return sorted[n-1]
	}
	// rank = ceil(q·n); the epsilon absorbs float artefacts such as 0.99·100 = 99.00000000000001.
	rank := int(math.Ceil(q*float64(n) - 1e-9))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// Latency summarizes the round-trip times of fulfilled packets.
type Latency struct {
	Min, P50, P99, P999, Max, Mean time.Duration
}

// summarize sorts samples in place and computes the summary.
func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	return Latency{
		Min:  samples[0],
		P50:  Percentile(samples, 0.50),
		P99:  Percentile(samples, 0.99),
		P999: Percentile(samples, 0.999),
		Max:  samples[len(samples)-1],
		Mean: sum / time.Duration(len(samples)),
	}
}

// Result is what a run measured. Counts cover the measured packets only (not the warmup).
type Result struct {
	Destination string
	Packets     int // requested
	Concurrency int
	Warmup      int
	Amount      uint64 // per packet

	Sent      uint64            // Prepares sent (responses or not)
	Fulfilled uint64            // valid Fulfills
	Rejected  map[string]uint64 // ILP Rejects by code
	Errors    map[string]uint64 // failures that are not Rejects, by kind (timeout, BTP error, …)
	Samples   map[string]string // one message per reject code or error kind, to say why
	Elapsed   time.Duration     // first send to last response of the measured phase
	Latency   Latency           // of fulfilled packets
	Received  ReceiverCounts    // what the receiver side saw
	TimedOut  bool              // -timeout stopped the run before every packet was answered
}

// ReceiverCounts is what the receiving BTP client fulfilled.
type ReceiverCounts struct {
	Fulfilled uint64
	Amount    uint64 // sum of the amounts of the fulfilled Prepares; saturates at 2^64-1
}

// RejectedTotal is the number of Rejects of every code.
func (r *Result) RejectedTotal() uint64 { return sumCounts(r.Rejected) }

// ErrorTotal is the number of failures that were not Rejects.
func (r *Result) ErrorTotal() uint64 { return sumCounts(r.Errors) }

// AmountFulfilled is Fulfilled × Amount, saturating at 2^64-1.
func (r *Result) AmountFulfilled() uint64 {
	hi, lo := bits.Mul64(r.Fulfilled, r.Amount)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

// PacketsPerSecond is the rate of answered packets (Fulfills and Rejects) in the measured phase.
func (r *Result) PacketsPerSecond() float64 {
	return rate(r.Fulfilled+r.RejectedTotal(), r.Elapsed)
}

// FulfilledPerSecond is the rate of fulfilled packets in the measured phase.
func (r *Result) FulfilledPerSecond() float64 { return rate(r.Fulfilled, r.Elapsed) }

// AllFulfilled reports whether every requested packet was fulfilled.
func (r *Result) AllFulfilled() bool {
	return !r.TimedOut && r.Fulfilled == uint64(r.Packets) && r.ErrorTotal() == 0 && r.RejectedTotal() == 0
}

func rate(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func sumCounts(m map[string]uint64) uint64 {
	var t uint64
	for _, v := range m {
		t += v
	}
	return t
}

// WriteText prints the result for a person.
func (r *Result) WriteText(w io.Writer) error {
	p := &errWriter{w: w}
	p.printf("loadgen: %d packets of amount %d to %s, concurrency %d, warmup %d\n",
		r.Packets, r.Amount, r.Destination, r.Concurrency, r.Warmup)
	if r.TimedOut {
		p.printf("  STOPPED BY -timeout: %d of %d packets sent\n", r.Sent, r.Packets)
	}
	p.printf("  elapsed      %s\n", r.Elapsed.Round(time.Millisecond))
	p.printf("  packets/s    %.0f answered, %.0f fulfilled\n", r.PacketsPerSecond(), r.FulfilledPerSecond())
	p.printf("  fulfilled    %d\n", r.Fulfilled)
	p.printf("  rejected     %d\n", r.RejectedTotal())
	r.writeCounts(p, r.Rejected)
	p.printf("  errors       %d\n", r.ErrorTotal())
	r.writeCounts(p, r.Errors)
	l := r.Latency
	p.printf("  latency      p50 %s  p99 %s  p99.9 %s  (min %s, mean %s, max %s; fulfilled packets)\n",
		ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Min), ms(l.Mean), ms(l.Max))
	p.printf("  amount       %d fulfilled by the sender, %d received (%d packets) by the receiver\n",
		r.AmountFulfilled(), r.Received.Amount, r.Received.Fulfilled)
	return p.err
}

func (r *Result) writeCounts(p *errWriter, m map[string]uint64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p.printf("    %-10s %d  (%s)\n", k, m[k], r.Samples[k])
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// jsonResult is the stable -json shape: snake_case keys, times in milliseconds (floats are
// fine for times; amounts stay integers).
type jsonResult struct {
	Destination        string             `json:"destination"`
	Packets            int                `json:"packets"`
	Concurrency        int                `json:"concurrency"`
	Warmup             int                `json:"warmup"`
	Amount             uint64             `json:"amount"`
	Sent               uint64             `json:"sent"`
	Fulfilled          uint64             `json:"fulfilled"`
	Rejected           map[string]uint64  `json:"rejected"`
	Errors             map[string]uint64  `json:"errors"`
	Samples            map[string]string  `json:"samples,omitempty"`
	ElapsedMS          float64            `json:"elapsed_ms"`
	PacketsPerSecond   float64            `json:"packets_per_second"`
	FulfilledPerSecond float64            `json:"fulfilled_per_second"`
	LatencyMS          map[string]float64 `json:"latency_ms"`
	AmountFulfilled    uint64             `json:"amount_fulfilled"`
	ReceivedPackets    uint64             `json:"received_packets"`
	ReceivedAmount     uint64             `json:"received_amount"`
	TimedOut           bool               `json:"timed_out"`
	AllFulfilled       bool               `json:"all_fulfilled"`
}

// MarshalJSON writes the -json shape.
func (r *Result) MarshalJSON() ([]byte, error) {
	f := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	l := r.Latency
	return json.Marshal(jsonResult{
		Destination: r.Destination, Packets: r.Packets, Concurrency: r.Concurrency,
		Warmup: r.Warmup, Amount: r.Amount, Sent: r.Sent, Fulfilled: r.Fulfilled,
		Rejected: nonNil(r.Rejected), Errors: nonNil(r.Errors), Samples: r.Samples,
		ElapsedMS: f(r.Elapsed), PacketsPerSecond: r.PacketsPerSecond(),
		FulfilledPerSecond: r.FulfilledPerSecond(),
		LatencyMS: map[string]float64{
			"min": f(l.Min), "p50": f(l.P50), "p99": f(l.P99), "p999": f(l.P999),
			"max": f(l.Max), "mean": f(l.Mean),
		},
		AmountFulfilled: r.AmountFulfilled(), ReceivedPackets: r.Received.Fulfilled,
		ReceivedAmount: r.Received.Amount, TimedOut: r.TimedOut, AllFulfilled: r.AllFulfilled(),
	})
}

func nonNil(m map[string]uint64) map[string]uint64 {
	if m == nil {
		return map[string]uint64{}
	}
	return m
}
