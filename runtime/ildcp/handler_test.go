package ildcp

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

func fixedClock() time.Time { return startDate }

// serve parses a request vector and runs h on it.
func serve(t *testing.T, h ilp.Handler, reqHex string) (*ilp.Fulfill, error) {
	t.Helper()
	p, err := ilp.ParsePrepare(mustHex(t, reqHex))
	if err != nil {
		t.Fatal(err)
	}
	return h(context.Background(), p)
}

func TestHandlerVectors(t *testing.T) {
	ok := func() (Info, error) { return clientInfo, nil }
	f, err := serve(t, Handler(ok, WithClock(fixedClock)), requestHex)
	if err != nil {
		t.Fatal(err)
	}
	if got := marshal(t, f); got != responseHex {
		t.Errorf("response\n got %s\nwant %s", got, responseHex)
	}

	// ilp-protocol-ildcp serve: a handler error becomes F00 with its text, from the server.
	for msg, want := range map[string]string{
		"something bad occurred in the neighborhood.": rejectHandler,
		"unexpected error.":                           rejectUnknown,
	} {
		h := Handler(func() (Info, error) { return Info{}, errors.New(msg) }, WithAddress("example.server"), WithClock(fixedClock))
		_, err := serve(t, h, requestHex)
		var rej *ilp.Reject
		if !errors.As(err, &rej) {
			t.Fatalf("error %v is not a Reject", err)
		}
		if got := marshal(t, rej); got != want {
			t.Errorf("reject\n got %s\nwant %s", got, want)
		}
	}
}

func TestHandlerRejects(t *testing.T) {
	ok := func() (Info, error) { return clientInfo, nil }
	parentReject := ilp.Rejectf(ilp.CodeUnreachable, "g.parent", "no such child")
	tests := []struct {
		name        string
		info        func() (Info, error)
		opts        []HandlerOption
		req         string
		code        ilp.ErrorCode
		triggeredBy ilp.Address
		fragment    string
	}{
		{"wrong destination", ok, nil, wrongDestHex, ilp.CodeUnreachable, Destination, "not peer.bonfig"},
		{"wrong condition", ok, []HandlerOption{WithAddress("g.parent")}, wrongCondHex, ilp.CodeWrongCondition, "g.parent", "peer protocol condition 66687aad"},
		{"expired", ok, nil, expiredHex, ilp.CodeInsufficientTimeout, Destination, "expired at 2014-06-16T00:01:00Z"},
		{"expires now", ok, []HandlerOption{WithClock(func() time.Time { return startDate.Add(time.Minute) })}, requestHex, ilp.CodeInsufficientTimeout, Destination, "expired"},
		{"info returns a Reject", func() (Info, error) { return Info{}, parentReject }, nil, requestHex, ilp.CodeUnreachable, "g.parent", "no such child"},
		{"invalid info", func() (Info, error) { return Info{Address: "nope", AssetCode: "USD"}, nil }, nil, requestHex, ilp.CodeInternalError, Destination, "no valid IL-DCP configuration"},
		{"huge error text", func() (Info, error) { return Info{}, errors.New(strings.Repeat("é", ilp.MaxMessageSize)) }, nil, requestHex, ilp.CodeBadRequest, Destination, "é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]HandlerOption{WithClock(fixedClock)}, tt.opts...)
			f, err := serve(t, Handler(tt.info, opts...), tt.req)
			var rej *ilp.Reject
			if f != nil || !errors.As(err, &rej) {
				t.Fatalf("got %v, %v; want a Reject", f, err)
			}
			if rej.Code != tt.code || rej.TriggeredBy != tt.triggeredBy || !strings.Contains(rej.Message, tt.fragment) {
				t.Errorf("reject %s by %q: %q; want %s by %q saying %q", rej.Code, rej.TriggeredBy, rej.Message, tt.code, tt.triggeredBy, tt.fragment)
			}
			if _, err := rej.MarshalBinary(); err != nil {
				t.Errorf("the Reject does not encode: %v", err)
			}
		})
	}
}

// Fetch against Handler: a child and its parent agree end to end.
func TestFetchFromHandler(t *testing.T) {
	h := Handler(func() (Info, error) { return clientInfo, nil })
	info, err := Fetch(context.Background(), func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		b, err := p.MarshalBinary() // through the wire format, like a real link
		if err != nil {
			return nil, err
		}
		q, err := ilp.ParsePrepare(b)
		if err != nil {
			return nil, err
		}
		f, err := h(ctx, q)
		if err != nil {
			return nil, err
		}
		fb, _ := f.MarshalBinary()
		t.Logf("response %s", hex.EncodeToString(fb))
		return ilp.ParseFulfill(fb)
	})
	if err != nil || info != clientInfo {
		t.Fatalf("%+v %v", info, err)
	}
}
