package ildcp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Vectors of ILPJS packages/ilp-protocol-ildcp/test/index.spec.ts (ilp-protocol.md §1.6).
// The JS test freezes the clock at startDate; requests expire 60 s later.
const (
	requestHex      = "0c460000000000000000323031353036313630303031303030303066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f29250b706565722e636f6e66696700"
	requestCustom   = "0c460000000000000000323031353036313630303030303132333466687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f29250b706565722e636f6e66696700"
	wrongDestHex    = "0c460000000000000000323031353036313630303031303030303066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f29250b706565722e626f6e66696700"
	wrongCondHex    = "0c460000000000000000323031353036313630303031303030303066687aadf862bd776c8fc18b8e9f8e30089714856ee233b3902a591d0d5f29250b706565722e636f6e66696700"
	expiredHex      = "0c460000000000000000323031343036313630303031303030303066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f29250b706565722e636f6e66696700"
	responseHex     = "0d350000000000000000000000000000000000000000000000000000000000000000140e6578616d706c652e636c69656e740d0358414d"
	wrongFulfillHex = "0d350000000000000000000000000000100000000000000000000000000000000000140e6578616d706c652e636c69656e740d0358414d"
	rejectHandler   = "0e3f4630300e6578616d706c652e7365727665722b736f6d657468696e6720626164206f6363757272656420696e20746865206e65696768626f72686f6f642e00"
	rejectUnknown   = "0e254630300e6578616d706c652e73657276657211756e6578706563746564206572726f722e00"
)

var (
	startDate  = time.UnixMilli(1434412800000).UTC() // 2015-06-16T00:00:00Z
	clientInfo = Info{Address: "example.client", AssetScale: 13, AssetCode: "XAM"}
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func marshal(t *testing.T, v interface{ MarshalBinary() ([]byte, error) }) string {
	t.Helper()
	b, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestRequestVectors(t *testing.T) {
	if got := marshal(t, Request(startDate.Add(DefaultExpiry))); got != requestHex {
		t.Errorf("request\n got %s\nwant %s", got, requestHex)
	}
	if got := marshal(t, Request(startDate.Add(1234*time.Millisecond))); got != requestCustom {
		t.Errorf("request with custom expiry\n got %s\nwant %s", got, requestCustom)
	}
	p, err := ilp.ParsePrepare(mustHex(t, requestHex))
	if err != nil {
		t.Fatal(err)
	}
	if p.Destination != Destination || p.Amount != 0 || p.ExecutionCondition != ilp.PeerCondition ||
		len(p.Data) != 0 || !p.ExpiresAt.Equal(startDate.Add(time.Minute)) {
		t.Fatalf("parsed request %+v", p)
	}
}

func TestResponseVectors(t *testing.T) {
	if got := marshal(t, clientInfo.Fulfill()); got != responseHex {
		t.Errorf("response\n got %s\nwant %s", got, responseHex)
	}
	f, err := ilp.ParseFulfill(mustHex(t, responseHex))
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseResponse(f)
	if err != nil || info != clientInfo {
		t.Fatalf("ParseResponse = %+v, %v", info, err)
	}
	f, err = ilp.ParseFulfill(mustHex(t, wrongFulfillHex))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseResponse(f); err == nil || !strings.Contains(err.Error(), "not the 32 zero bytes") {
		t.Fatalf("wrong fulfillment: %v", err)
	}
}

func TestParseResponseMalformed(t *testing.T) {
	data := func(parts ...[]byte) *ilp.Fulfill { return &ilp.Fulfill{Data: bytes.Join(parts, nil)} }
	vs := func(s string) []byte { return ilp.AppendVarString(nil, s) }
	tests := []struct {
		name     string
		f        *ilp.Fulfill
		fragment string
	}{
		{"nil", nil, "no response"},
		{"empty data", data(), "unexpected end"},
		{"no scale", data(vs("g.a")), "unexpected end"},
		{"no asset code", data(vs("g.a"), []byte{2}), "unexpected end"},
		{"asset code past end", data(vs("g.a"), []byte{2, 5, 'U', 'S'}), "unexpected end"},
		{"invalid address", data(vs("g..a"), []byte{2}, vs("USD")), "client address"},
		{"empty address", data(vs(""), []byte{2}, vs("USD")), "address is empty"},
		{"empty asset code", data(vs("g.a"), []byte{2}, vs("")), "asset code is empty"},
		{"asset code not UTF-8", data(vs("g.a"), []byte{2}, vs("\xff")), "not UTF-8"},
		{"asset code too long", data(vs("g.a"), []byte{2}, vs(strings.Repeat("X", 256))), "256 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseResponse(tt.f)
			if err == nil || !strings.Contains(err.Error(), tt.fragment) {
				t.Fatalf("error %v, want %q", err, tt.fragment)
			}
		})
	}
	// Bytes after the asset code are a future extension, not an error.
	info, err := ParseResponse(data(vs("g.a"), []byte{2}, vs("USD"), []byte("more")))
	if err != nil || info != (Info{Address: "g.a", AssetScale: 2, AssetCode: "USD"}) {
		t.Fatalf("%+v %v", info, err)
	}
}

func TestFetch(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second).Truncate(time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	calls := 0
	info, err := Fetch(ctx, func(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		calls++
		if p.Destination != Destination || p.ExecutionCondition != ilp.PeerCondition || p.Amount != 0 || len(p.Data) != 0 {
			t.Errorf("request %+v", p)
		}
		if !p.ExpiresAt.Equal(deadline) {
			t.Errorf("request expires at %s, want the context deadline %s", p.ExpiresAt, deadline)
		}
		return ilp.ParseFulfill(mustHex(t, responseHex))
	})
	if err != nil || info != clientInfo || calls != 1 {
		t.Fatalf("Fetch = %+v, %v after %d calls", info, err, calls)
	}
}

func TestFetchWithoutDeadlineUsesDefaultExpiry(t *testing.T) {
	before := time.Now()
	_, _ = Fetch(context.Background(), func(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if p.ExpiresAt.Before(before.Add(DefaultExpiry)) || p.ExpiresAt.After(time.Now().Add(DefaultExpiry)) {
			t.Errorf("expiry %s is not DefaultExpiry from the call", p.ExpiresAt)
		}
		return clientInfo.Fulfill(), nil
	})
}

func TestFetchErrors(t *testing.T) {
	rejected := &ilp.Reject{Code: ilp.CodeBadRequest, TriggeredBy: "example.server", Message: "something went wrong."}
	transport := errors.New("link down")
	tests := []struct {
		name     string
		send     Send
		is       error
		fragment string
	}{
		{"rejected", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, rejected }, rejected, "parent example.server rejected the peer.config request: F00 Bad Request: something went wrong."},
		{"transport error", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, transport }, transport, "request failed: link down"},
		{"unrecognized response", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
			f, _, err := ilp.ParseResponse(mustHex(t, "89"))
			return f, err
		}, ilp.ErrWrongType, "wrong packet type"},
		{"nil fulfill", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, nil }, nil, "no response"},
		{"wrong fulfillment", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
			return ilp.ParseFulfill(mustHex(t, wrongFulfillHex))
		}, nil, "not the 32 zero bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Fetch(context.Background(), tt.send)
			if err == nil || !strings.Contains(err.Error(), tt.fragment) {
				t.Fatalf("error %v, want %q", err, tt.fragment)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

func TestFetchCanceledContextSendsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Fetch(ctx, func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		t.Error("send called with a canceled context")
		return nil, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
}
