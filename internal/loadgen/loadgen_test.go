package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

const fakeAddr ilp.Address = "test.fake"

var quietLog = slog.New(slog.DiscardHandler)

// fakeConnector is two BTP listeners wired together: every Prepare from the sender account
// goes through decide and, unless decide answers it, on to the receiver account. It stands in
// for a connector with spread 0 and no middleware.
type fakeConnector struct {
	sender, receiver *btp.PeerServer
}

// decide may answer a Prepare itself (return true); seq is the load generator's nonce.
type decide func(ctx context.Context, seq uint64, p *ilp.Prepare) (*ilp.Fulfill, error, bool)

func startFake(t *testing.T, d decide) *fakeConnector {
	t.Helper()
	fc := &fakeConnector{}
	common := btp.Common{Logger: quietLog, Address: func() ilp.Address { return fakeAddr }}
	fc.receiver = startPeerServer(t, common, "recv-secret", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnexpectedPayment, fakeAddr, "receiver sends nothing")
	})
	fc.sender = startPeerServer(t, common, "send-secret", func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if d != nil && len(p.Data) == dataSize {
			if f, err, done := d(ctx, binary.BigEndian.Uint64(p.Data[len(magic):]), p); done {
				return f, err
			}
		}
		return fc.receiver.Send(ctx, p)
	})
	return fc
}

func startPeerServer(t *testing.T, c btp.Common, secret string, h ilp.Handler) *btp.PeerServer {
	t.Helper()
	s, err := btp.NewPeerServer(btp.PeerServerOptions{Host: "127.0.0.1", Secret: secret, Common: c})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (fc *fakeConnector) config(n, c, warmup int) Config {
	return Config{
		Sender:      fmt.Sprintf("btp+ws://lg:send-secret@%s", fc.sender.Addr()),
		Receiver:    fmt.Sprintf("btp+ws://lg:recv-secret@%s", fc.receiver.Addr()),
		Destination: fakeAddr + ".receiver",
		Packets:     n, Concurrency: c, Warmup: warmup, Amount: 7,
		Timeout: 30 * time.Second, Expiry: 10 * time.Second, Logger: quietLog,
	}
}

func TestRunFulfillsEveryPacket(t *testing.T) {
	fc := startFake(t, nil)
	for _, tc := range []struct{ n, c, warmup int }{{1, 1, 0}, {50, 1, 5}, {300, 16, 20}, {5, 64, 0}} {
		t.Run(fmt.Sprintf("n%d_c%d", tc.n, tc.c), func(t *testing.T) {
			res, err := Run(context.Background(), fc.config(tc.n, tc.c, tc.warmup))
			if err != nil {
				t.Fatal(err)
			}
			n := uint64(tc.n)
			if res.Sent != n || res.Fulfilled != n || res.RejectedTotal() != 0 || res.ErrorTotal() != 0 {
				t.Fatalf("sent %d fulfilled %d rejected %v errors %v; want %d fulfilled", res.Sent, res.Fulfilled, res.Rejected, res.Errors, n)
			}
			// The warmup is not counted on either side.
			if res.Received.Fulfilled != n || res.Received.Amount != 7*n || res.AmountFulfilled() != 7*n {
				t.Fatalf("receiver saw %+v, sender fulfilled amount %d; want %d packets, amount %d", res.Received, res.AmountFulfilled(), n, 7*n)
			}
			l := res.Latency
			if !res.AllFulfilled() || l.Min <= 0 || l.Min > l.P50 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
				t.Fatalf("latency summary out of order or empty: %+v", l)
			}
		})
	}
}

func TestRunCountsRejectsByCode(t *testing.T) {
	fc := startFake(t, func(_ context.Context, seq uint64, _ *ilp.Prepare) (*ilp.Fulfill, error, bool) {
		switch seq % 4 {
		case 1:
			return nil, ilp.Rejectf(ilp.CodeInsufficientLiquidity, fakeAddr, "balance limit"), true
		case 2:
			if seq%8 == 2 {
				return nil, ilp.Rejectf(ilp.CodeUnreachable, fakeAddr, "no route"), true
			}
			return nil, ilp.Rejectf(ilp.CodeRateLimited, fakeAddr, "slow down"), true
		case 3:
			// A wrong fulfillment must not count as fulfilled.
			return &ilp.Fulfill{Fulfillment: [32]byte{9}}, nil, true
		}
		return nil, nil, false
	})
	res, err := Run(context.Background(), fc.config(80, 8, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"T04": 20, "F02": 10, "T05": 10}
	if fmt.Sprint(res.Rejected) != fmt.Sprint(want) {
		t.Errorf("rejected = %v, want %v", res.Rejected, want)
	}
	if res.Fulfilled != 20 || res.Received.Fulfilled != 20 || res.Errors["bad-fulfill"] != 20 || res.Sent != 80 {
		t.Errorf("fulfilled %d, received %d, errors %v, sent %d; want 20, 20, 20 bad-fulfill, 80",
			res.Fulfilled, res.Received.Fulfilled, res.Errors, res.Sent)
	}
	if !strings.Contains(res.Samples["T05"], "slow down") || res.AllFulfilled() {
		t.Errorf("sample for T05 = %q, AllFulfilled = %v", res.Samples["T05"], res.AllFulfilled())
	}
	var text bytes.Buffer
	if err := res.WriteText(&text); err != nil || !strings.Contains(text.String(), "T04        20") {
		t.Errorf("text output lacks the T04 count (err %v):\n%s", err, text.String())
	}
}

func TestRunStopsAtTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	fc := startFake(t, func(ctx context.Context, seq uint64, _ *ilp.Prepare) (*ilp.Fulfill, error, bool) {
		if seq < 3 {
			return nil, nil, false
		}
		select { // hang until the run gives up
		case <-ctx.Done():
		case <-release:
		}
		return nil, ilp.Rejectf(ilp.CodeTransferTimedOut, fakeAddr, "gave up"), true
	})
	cfg := fc.config(1000, 2, 0)
	cfg.Timeout = 2 * time.Second
	res, err := Run(context.Background(), cfg)
	if err == nil || res == nil || !res.TimedOut {
		t.Fatalf("want a timed-out partial result, got %+v, %v", res, err)
	}
	if res.Fulfilled != 3 || res.Errors["stopped"] != 2 || res.Sent != 5 {
		t.Errorf("fulfilled %d, errors %v, sent %d; want 3 fulfilled, 2 stopped in flight, 5 sent", res.Fulfilled, res.Errors, res.Sent)
	}
}

func TestRunRefusesBadConfigAndUnreachableConnector(t *testing.T) {
	fc := startFake(t, nil)
	bad := fc.config(10, 1, 0)
	bad.Receiver = strings.Replace(bad.Receiver, "recv-secret", "wrong", 1)
	bad.Timeout = 2 * time.Second
	_, err := Run(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), "receiver") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong receiver secret: err = %v, want a receiver connect error without the token", err)
	}
	for name, mod := range map[string]func(*Config){
		"no sender":    func(c *Config) { c.Sender = "" },
		"zero packets": func(c *Config) { c.Packets = 0 },
		"concurrency":  func(c *Config) { c.Concurrency = MaxConcurrency + 1 },
		"bad address":  func(c *Config) { c.Destination = "nope" },
		"short expiry": func(c *Config) { c.Expiry = time.Millisecond },
		"no timeout":   func(c *Config) { c.Timeout = 0 },
	} {
		c := fc.config(10, 1, 0)
		mod(&c)
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: want a config error", name)
		}
	}
}

func TestReceiverFulfillsOnlyThisRun(t *testing.T) {
	for _, precomputed := range []bool{false, true} {
		t.Run(fmt.Sprintf("precomputed=%v", precomputed), func(t *testing.T) { testReceiver(t, precomputed) })
	}
}

func testReceiver(t *testing.T, precomputed bool) {
	key := bytes.Repeat([]byte{1}, 32)
	r := &receiver{keys: newKeyring(key), address: fakeAddr}
	if precomputed {
		r.table.Store(r.keys.precompute(40, 5))
	}
	data := packetData(nil, 42)
	f := r.keys.fulfillment(data)
	other := newKeyring(bytes.Repeat([]byte{2}, 32)).fulfillment(data)
	for _, tc := range []struct {
		name string
		data []byte
		cond [32]byte
		code ilp.ErrorCode // "" = fulfilled
	}{
		{"ours", data, ilp.ConditionOf(f), ""},
		{"other run", data, ilp.ConditionOf(other), ilp.CodeWrongCondition},
		{"foreign data", []byte("hello"), ilp.ConditionOf(f), ilp.CodeUnexpectedPayment},
		{"empty", nil, ilp.ConditionOf(f), ilp.CodeUnexpectedPayment},
		{"bad magic", append([]byte("ilpfleet-loadgeX"), data[len(magic):]...), ilp.ConditionOf(f), ilp.CodeUnexpectedPayment},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.reset()
			ful, err := r.handle(context.Background(), &ilp.Prepare{Amount: 5, ExecutionCondition: tc.cond, Data: tc.data})
			var rej *ilp.Reject
			switch {
			case tc.code == "" && (err != nil || !ful.Matches(tc.cond) || r.counts() != ReceiverCounts{1, 5}):
				t.Fatalf("want a matching fulfill counted once, got %v, %v, %+v", ful, err, r.counts())
			case tc.code != "" && (!errors.As(err, &rej) || rej.Code != tc.code || rej.TriggeredBy != fakeAddr || r.counts().Fulfilled != 0):
				t.Fatalf("want %s from %s, got %v", tc.code, fakeAddr, err)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	seq := func(n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i+1) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.999, 7 * time.Millisecond},
		{"median odd", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"median even is the lower", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p50 of 100", seq(100), 0.5, 50 * time.Millisecond},
		{"p99 of 100", seq(100), 0.99, 99 * time.Millisecond},
		{"p999 of 100 is the max", seq(100), 0.999, 100 * time.Millisecond},
		{"p999 of 1000", seq(1000), 0.999, 999 * time.Millisecond},
		{"p999 of 20000", seq(20000), 0.999, 19980 * time.Millisecond},
		{"p99 of 20000", seq(20000), 0.99, 19800 * time.Millisecond},
		{"q=0 is the min", seq(10), 0, time.Millisecond},
		{"q=1 is the max", seq(10), 1, 10 * time.Millisecond},
	} {
		if got := Percentile(tc.samples, tc.q); got != tc.want {
			t.Errorf("%s: Percentile(q=%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
	l := summarize(ms(5, 1, 4, 2, 3))
	if l != (Latency{Min: ms(1)[0], P50: ms(3)[0], P99: ms(5)[0], P999: ms(5)[0], Max: ms(5)[0], Mean: ms(3)[0]}) {
		t.Errorf("summarize = %+v", l)
	}
}

func TestMainFlagsAndJSON(t *testing.T) {
	fc := startFake(t, nil)
	cfg := fc.config(0, 0, 0)
	base := []string{"-sender", cfg.Sender, "-receiver", cfg.Receiver, "-destination", string(cfg.Destination)}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"float amount", []string{"-amount", "1.5"}, "amount"},
		{"negative amount", []string{"-amount", "-1"}, "amount"},
		{"amount overflow", []string{"-amount", "18446744073709551616"}, "amount"},
		{"zero packets", []string{"-n", "0"}, "packets"},
		{"stray argument", []string{"extra"}, "unexpected"},
		{"unknown flag", []string{"-rate", "5"}, "flag"},
	} {
		err := Main(context.Background(), append(append([]string{}, base...), tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want one mentioning %q", tc.name, err, tc.wantErr)
		}
	}
	var out bytes.Buffer
	args := append(base, "-n", "20", "-c", "4", "-warmup", "2", "-amount", "18446744073709551615", "-json")
	if err := Main(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Fulfilled       uint64             `json:"fulfilled"`
		AmountFulfilled uint64             `json:"amount_fulfilled"`
		AllFulfilled    bool               `json:"all_fulfilled"`
		Latency         map[string]float64 `json:"latency_ms"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	// 20 × (2^64-1) saturates instead of wrapping.
	if got.Fulfilled != 20 || !got.AllFulfilled || got.AmountFulfilled != 1<<64-1 || got.Latency["p99"] <= 0 {
		t.Errorf("json = %s", out.String())
	}
	if err := Main(context.Background(), []string{"-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"btp+ws://user:tok@127.0.0.1:7000": "btp+ws://…@127.0.0.1:7000",
		"btp+ws://127.0.0.1:7000/a@b":      "btp+ws://127.0.0.1:7000/a@b",
		"btp+wss://:tok@host/path":         "btp+wss://…@host/path",
		"not a url":                        "not a url",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// The precomputed table must give exactly the pairs the keyring derives, and pairOf must
// derive the packets outside it, so that table and no table fulfill the same packets.
func TestPrecomputedPairs(t *testing.T) {
	k := newKeyring(bytes.Repeat([]byte{3}, 32))
	tab := k.precompute(100, 5) // seqs 100..104
	for _, tc := range []struct {
		name    string
		data    []byte
		inTable bool
		ok      bool
	}{
		{"first of the table", packetData(nil, 100), true, true},
		{"last of the table", packetData(nil, 104), true, true},
		{"before the table", packetData(nil, 99), false, true},
		{"after the table", packetData(nil, 105), false, true},
		{"seq 0", packetData(nil, 0), false, true},
		{"foreign data", []byte("hello"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq, _ := seqOf(tc.data)
			if _, in := tab.lookup(seq); in != tc.inTable {
				t.Errorf("lookup(%d) in table = %v, want %v", seq, in, tc.inTable)
			}
			for _, tb := range []*table{tab, nil} {
				pr, ok := k.pairOf(tb, tc.data)
				if ok != tc.ok {
					t.Fatalf("pairOf ok = %v, want %v", ok, tc.ok)
				}
				if !ok {
					continue
				}
				f := k.fulfillment(tc.data)
				if pr.fulfill.Fulfillment != f || pr.condition != ilp.ConditionOf(f) {
					t.Errorf("pair of seq %d differs from the derived one", seq)
				}
			}
		})
	}
	if n := len(k.precompute(0, maxPrecomputed+1).pairs); n != maxPrecomputed {
		t.Errorf("precomputed %d pairs, want the bound %d", n, maxPrecomputed)
	}
}
