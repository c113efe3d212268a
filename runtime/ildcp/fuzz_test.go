package ildcp

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// The seeds are what this package encodes (Info.Fulfill, Request) plus the JS vectors of
// ildcp_test.go, and a few shapes a broken parent could send.

func FuzzParseResponse(f *testing.F) {
	infos := []Info{
		clientInfo,
		{Address: "g.a", AssetScale: 255, AssetCode: "€"},
		{Address: ilp.Address("test." + strings.Repeat("x", 200)), AssetScale: 0, AssetCode: strings.Repeat("C", maxAssetCode)},
	}
	for _, i := range infos {
		data := i.Fulfill().Data
		f.Add(data, true)
		f.Add(append(bytes.Clone(data), 0xde, 0xad), true) // trailing bytes: ignored
		f.Add(data[:len(data)-1], true)
		f.Add(data, false)
	}
	f.Add(mustHex(f, "0e6578616d706c652e636c69656e740d0358414d"), true) // the JS vector's data
	f.Add([]byte("\x03g.a\x02\x02\xff\xfe"), true)                      // asset code not UTF-8
	f.Add([]byte("\x03g.a\x02\x00"), true)                              // empty asset code
	f.Add([]byte("\x03x.a\x02\x01X"), true)                             // bad scheme
	f.Fuzz(func(t *testing.T, data []byte, zero bool) {
		ful := &ilp.Fulfill{Fulfillment: ilp.PeerFulfillment, Data: data}
		if !zero {
			ful.Fulfillment[31] = 1
		}
		info, err := ParseResponse(ful)
		if err != nil {
			if info != (Info{}) {
				t.Fatalf("an Info and an error: %+v, %v", info, err)
			}
			return
		}
		if !zero {
			t.Fatal("accepted a fulfillment that is not the peer-protocol one")
		}
		if err := info.Validate(); err != nil {
			t.Fatalf("accepted an invalid Info %+v: %v", info, err)
		}
		enc := info.Fulfill()
		if !bytes.HasPrefix(data, enc.Data) {
			t.Fatalf("re-encoding %x is not a prefix of the data %x", enc.Data, data)
		}
		if again, err := ParseResponse(enc); err != nil || again != info {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, info)
		}
		if _, err := enc.MarshalBinary(); err != nil {
			t.Fatalf("the Fulfill does not encode: %v", err)
		}
	})
}

// FuzzHandler feeds the parent's handler the Prepares a child can send and the Infos a
// parent's configuration can hold: every answer must be the one the request deserves, and
// must encode.
func FuzzHandler(f *testing.F) {
	now := startDate
	valid, _ := Request(now.Add(DefaultExpiry)).MarshalBinary()
	expired, _ := Request(now).MarshalBinary()
	other := Request(now.Add(time.Second))
	other.Destination = "peer.route.control"
	otherEnc, _ := other.MarshalBinary()
	for _, p := range [][]byte{valid, expired, otherEnc, mustHex(f, requestHex), mustHex(f, wrongCondHex)} {
		f.Add(p, string(clientInfo.Address), clientInfo.AssetScale, clientInfo.AssetCode)
	}
	f.Add(valid, "g.a", uint8(9), "")
	f.Add(valid, "g", uint8(9), "USD")
	f.Add(valid, "g.a", uint8(9), "\xff")
	f.Add(valid, "g."+strings.Repeat("a", ilp.MaxAddressSize), uint8(0), strings.Repeat("é", 200))
	f.Fuzz(func(t *testing.T, prepare []byte, addr string, scale uint8, code string) {
		p, err := ilp.ParsePrepare(prepare)
		if err != nil {
			return
		}
		info := Info{Address: ilp.Address(addr), AssetScale: scale, AssetCode: code}
		h := Handler(func() (Info, error) { return info, nil }, WithClock(func() time.Time { return now }))
		ful, err := h(context.Background(), p)
		want := expectedCode(p, now, info)
		if want == "" {
			checkFulfilled(t, ful, err, info)
			return
		}
		rej, ok := errors.AsType[*ilp.Reject](err)
		if ful != nil || !ok || rej.Code != want {
			t.Fatalf("want a %s Reject, got %v, %v", want, ful, err)
		}
		if _, err := rej.MarshalBinary(); err != nil {
			t.Fatalf("the Reject does not encode: %v", err)
		}
	})
}

// expectedCode is the Reject code the handler owes p, or "" when it must fulfill.
func expectedCode(p *ilp.Prepare, now time.Time, info Info) ilp.ErrorCode {
	switch {
	case p.Destination != Destination:
		return ilp.CodeUnreachable
	case p.ExecutionCondition != ilp.PeerCondition:
		return ilp.CodeWrongCondition
	case !now.Before(p.ExpiresAt):
		return ilp.CodeInsufficientTimeout
	case info.Validate() != nil:
		return ilp.CodeInternalError
	}
	return ""
}

func checkFulfilled(t *testing.T, ful *ilp.Fulfill, err error, info Info) {
	t.Helper()
	if err != nil || ful == nil {
		t.Fatalf("a valid request and Info were not fulfilled: %v", err)
	}
	if _, err := ful.MarshalBinary(); err != nil {
		t.Fatalf("the Fulfill does not encode: %v", err)
	}
	if got, err := ParseResponse(ful); err != nil || got != info {
		t.Fatalf("the child reads %+v, %v; want %+v", got, err, info)
	}
}
