package connector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// longErrorData is the size of the data of the BTP Error frames longErrorPeer sends: the most
// RFC 23 allows.
const longErrorData = 8192

// longErrorPeer connects to B's peer listener as its peer a (configB) and answers every
// Message with an RFC 23-valid BTP Error frame whose data is 8192 bytes.
func longErrorPeer(t *testing.T, port int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := dialRaw(t, ctx, port, "", "secret")
	p.ws.SetReadLimit(1 << 20)
	go func() {
		for range 1000 { // bounded
			_, b, err := p.ws.Read(ctx)
			if err != nil {
				return
			}
			var f btp.Frame
			if btp.ParseFrame(b, &f) != nil || f.Type != btp.TypeMessage {
				continue
			}
			e, err := btp.AppendFrame(nil, &btp.Frame{Type: btp.TypeError, RequestID: f.RequestID, Code: "T00",
				Name: "UnreachableError", TriggeredAt: time.Now(), ErrorData: bytes.Repeat([]byte("a"), longErrorData)})
			if err != nil {
				panic(err)
			}
			_ = p.ws.Write(ctx, websocket.MessageBinary, e)
		}
	}()
}

// TestNextHopErrorWithLongDataIsRejected: a next hop that answers a forwarded Prepare with a
// BTP Error frame carrying 8 KB of data made the connector build a Reject quoting it whole,
// longer than a Reject may be (8191 bytes): it could not be encoded, and the BTP sender got no
// answer until its packet expired. It gets a T01 quoting the start of the peer's error.
func TestNextHopErrorWithLongDataIsRejected(t *testing.T) {
	ports := map[string]int{"PB": freePort(t), "PKB": freePort(t)}
	c := startBTP(t, configB, ports)
	longErrorPeer(t, ports["PB"])
	waitFor(t, func() bool { return c.Connected("a") })
	alice := child(t, ports["PKB"], "alice", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.b.kids.alice", "no")
	})
	waitFor(t, func() bool { return c.Connected("kids") })

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	p := &ilp.Prepare{Amount: 10, ExpiresAt: time.Now().Add(2 * time.Second).Truncate(time.Millisecond),
		ExecutionCondition: ilp.ConditionOf([32]byte{9}), Destination: "test.a.bob", Data: []byte("x")}
	_, err := alice.Send(ctx, p)
	var rej *ilp.Reject
	if !errors.As(err, &rej) {
		t.Fatalf("the sender got no ILP answer (err = %v); want a Reject (T01) for its packet", err)
	}
	if rej.Code != ilp.CodePeerUnreachable || len(rej.Message) > maxLinkErrorText+64 || !strings.Contains(rej.Message, "UnreachableError: aaa") {
		t.Errorf("Reject %s %q; want T01 quoting the start of the peer's error", rej.Code, rej.Message)
	}
}

// TestEncodable: a Reject whose message is longer than a Reject can carry is cut, between
// characters, to one that encodes; the original is left as it was; other answers pass.
func TestEncodable(t *testing.T) {
	long := &ilp.Reject{Code: ilp.CodeBadRequest, TriggeredBy: "test.a", Message: strings.Repeat("é", ilp.MaxMessageSize)}
	fits := &ilp.Reject{Code: ilp.CodeBadRequest, TriggeredBy: "test.a", Message: strings.Repeat("m", ilp.MaxMessageSize)}
	other := errors.New("not a reject")
	for _, err := range []error{nil, other, fits} {
		if got := encodable(err); got != err {
			t.Errorf("encodable(%v) = %v; want it unchanged", err, got)
		}
	}
	for _, err := range []error{long, fmt.Errorf("next hop: %w", long)} {
		got, ok := encodable(err).(*ilp.Reject)
		if !ok || got == long || got.Code != long.Code || !utf8.ValidString(got.Message) || !strings.HasSuffix(got.Message, "…") {
			t.Fatalf("encodable(%.40q…) = %#v; want a new Reject with a cut, valid message", err.Error(), got)
		}
		if _, err := got.MarshalBinary(); err != nil {
			t.Errorf("cut Reject does not encode: %v", err)
		}
	}
	if len(long.Message) != 2*ilp.MaxMessageSize {
		t.Errorf("the original Reject was changed")
	}
}
