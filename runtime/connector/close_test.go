package connector

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
)

// handlerLink is a memLink whose Close behaves as btp.Client/PeerServer.Close: it cancels the
// context its handlers run in and waits for them.
type handlerLink struct {
	*memLink
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (l *handlerLink) deliver(p *ilp.Prepare) (*ilp.Fulfill, error) {
	l.wg.Add(1)
	defer l.wg.Done()
	return l.inject(l.ctx, p)
}

func (l *handlerLink) Close() error {
	l.cancel()
	l.wg.Wait()
	return l.memLink.Close()
}

// TestCloseBoundedByItsContext: Close(ctx) returns once ctx ends, even with a packet whose
// next hop has not answered: packets are handled in their account's life, not in the link's
// context (see packetContext), so closing the account must end that life before the link's
// Close, which waits for its handlers.
func TestCloseBoundedByItsContext(t *testing.T) {
	ml := &memLinks{}
	var alice *handlerLink
	factory := func(id string, ac config.Account) (link.Link, error) {
		l, err := ml.factory(id, ac)
		if id == "alice" {
			ctx, cancel := context.WithCancel(context.Background())
			alice = &handlerLink{memLink: l.(*memLink), ctx: ctx, cancel: cancel}
			return alice, err
		}
		return l, err
	}
	c, reached := startWithStuckBob(t, ml, factory)
	go func() { _, _ = alice.deliver(prepare("test.bob.x", 100, time.Now(), 25*time.Second)) }()
	<-reached
	closeBounded(t, c, "the source link's Close waits for a handler nothing cancels until the packet expires (25 s)")
}

// TestCloseBoundedWithAnAsyncHTTPAccount: TestCloseBoundedByItsContext with alice an async
// ILP-over-HTTP account (the real ilphttp link) whose peer's callback does not answer: the
// link's Close, which waits for its reply deliveries, gives up on them when Close's ctx ends
// (link.ContextCloser) instead of at the packet's expiry (25 s).
func TestCloseBoundedWithAnAsyncHTTPAccount(t *testing.T) {
	release := make(chan struct{})
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // the peer's callback endpoint hangs
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(peer.Close)
	t.Cleanup(func() { close(release) })
	port := freePort(t)
	ml := &memLinks{}
	factory := func(id string, ac config.Account) (link.Link, error) {
		if id != "alice" {
			return ml.factory(id, ac)
		}
		return ilphttp.New(&ilphttp.Options{Mode: ilphttp.ModeAsync, Account: id, CurrentMaxHold: func() time.Duration { return 30 * time.Second },
			Incoming: &ilphttp.IncomingOptions{Host: "127.0.0.1", Port: port, Auth: ilphttp.Auth{Token: "in"}},
			Outgoing: &ilphttp.OutgoingOptions{URL: peer.URL + "/ilp", Auth: ilphttp.Auth{Token: "out"},
				CallbackURL: "http://127.0.0.1:" + itoa(port) + "/cb"}})
	}
	c, reached := startWithStuckBob(t, ml, factory)
	body, _ := prepare("test.bob.x", 100, time.Now(), 25*time.Second).MarshalBinary()
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+itoa(port)+"/", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer in")
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Callback-Url", peer.URL+"/cb")
	req.Header.Set("Request-Id", "5f1b8c8e-4c43-4a43-9d7e-0d6f0a3b7c11")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("Prepare: %v %v", resp, err)
	}
	resp.Body.Close()
	<-reached
	closeBounded(t, c, "alice's ilphttp link Close waits for the async reply's delivery to a callback that does not answer, until the packet expires (25 s)")
}

// startWithStuckBob starts a connector on coreConfig over ml's links (factory may wrap them)
// whose bob is a next hop that never answers; reached is closed once bob has the test's
// payment (to test.bob.x). The Speaker's peer.route.control to bob does not count: counted, it
// let Close run before the payment was in flight, or closed reached twice (a panic).
func startWithStuckBob(t *testing.T, ml *memLinks, factory func(string, config.Account) (link.Link, error)) (c *Connector, reached <-chan struct{}) {
	t.Helper()
	r := make(chan struct{})
	ml.setRemote("bob", func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if p.Destination.HasPrefix("test.bob") {
			close(r) // the tests send one such packet
		}
		<-ctx.Done() // a next hop that has not answered yet
		return nil, ctx.Err()
	})
	return start(t, coreConfig, Options{newLink: factory}), r // its Close at cleanup is a no-op after the test's
}

// closeBounded calls c.Close with a 300 ms context and fails, saying why, if it is still
// running 10 s later (a failure bound only: no assertion on how long it took).
func closeBounded(t *testing.T, c *Connector, why string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_ = c.Close(ctx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close(ctx of 300ms) still running after 10 s: " + why)
	}
}

// drainConfig: alice (a child) pays bob (a peer) over in-memory links.
const drainConfig = `
ilpAddress: test.c
backend: one-to-one
spread: 0
minMessageWindow: 100
maxHoldTime: 30000
accounts:
  alice:
    relation: child
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    balance: {maximum: "1000000"}
    options: {listener: {port: 7001, secret: s}}
  bob:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    options: {listener: {port: 7002, secret: s}}
routes:
  - {targetPrefix: test.bob, peerId: bob}
`

// drainConfigWithoutAlice is drainConfig after a reload that removed alice.
var drainConfigWithoutAlice = drainConfig[:strings.Index(drainConfig, "  alice:\n")] +
	drainConfig[strings.Index(drainConfig, "  bob:\n"):]

// TestRefusedWhileDraining: while alice drains for a packet still in flight, a new Prepare
// from her peer is refused with what is really happening: the connector shutting down (Close,
// retry elsewhere or later) or, after a reload removed her, her account being removed.
func TestRefusedWhileDraining(t *testing.T) {
	tests := []struct {
		name    string
		drain   func(ctx context.Context, c *Connector) error
		reason  closeReason
		wantMsg string
		notMsg  string
	}{
		{"connector shutting down", func(ctx context.Context, c *Connector) error { return c.Close(ctx) },
			stopping, "connector test.c is shutting down; retry on another connector or later", "removed"},
		{"account removed by a reload", func(ctx context.Context, c *Connector) error {
			return c.Apply(ctx, mustConfig(t, drainConfigWithoutAlice))
		}, removing, "account alice is being removed from this connector", "shutting down"},
		{"account's link replaced by a reload", func(ctx context.Context, c *Connector) error {
			return c.Apply(ctx, mustConfig(t, strings.Replace(drainConfig, "secret: s}", "secret: s2}", 1)))
		}, relinking, "account alice is reconnecting after a configuration change; retry", "removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ml, release := &memLinks{}, make(chan struct{})
			reached := holdBob(ml, release)
			c := start(t, drainConfig, Options{newLink: ml.factory})
			alice, acct := ml.get("alice"), (*c.accounts.Load())["alice"]
			first := make(chan error, 1)
			go func() {
				_, err := alice.inject(context.Background(), prepare("test.bob.first", 100, time.Now(), 25*time.Second))
				first <- err
			}()
			waitClosed(t, reached, "the first payment never reached bob")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			drained := make(chan error, 1)
			go func() { drained <- tt.drain(ctx, c) }()
			waitFor(t, func() bool { return closeReason(acct.closing.Load()) == tt.reason })

			_, err := alice.inject(ctx, prepare("test.bob.second", 100, time.Now(), 25*time.Second))
			r := rejectOf(t, err)
			if r.Code != ilp.CodePeerUnreachable || r.TriggeredBy != "test.c" || r.Message != tt.wantMsg {
				t.Errorf("new Prepare while draining: %s %q by %s, want T01 %q by test.c", r.Code, r.Message, r.TriggeredBy, tt.wantMsg)
			}
			if strings.Contains(r.Message, tt.notMsg) {
				t.Errorf("message %q says %q", r.Message, tt.notMsg)
			}
			close(release) // the packet in flight finishes, and with it the drain
			waitClosed(t, first, "the packet in flight was never answered")
			select {
			case err := <-drained:
				if err != nil {
					t.Errorf("drain: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the drain did not end once the packet in flight was answered")
			}
		})
	}
}

// holdBob makes bob a next hop that answers the test's payments (to test.bob.*) only once
// release is closed; reached is closed when the first one arrives. bob's peer protocols (the
// Speaker's route requests) are refused at once.
func holdBob(ml *memLinks, release <-chan struct{}) <-chan struct{} {
	reached := make(chan struct{})
	var once sync.Once
	ml.setRemote("bob", func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if !p.Destination.HasPrefix("test.bob") {
			return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.c.bob", "this fake peer speaks no peer protocols")
		}
		once.Do(func() { close(reached) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ilp.Rejectf(ilp.CodeFinalApplicationError, "test.c.bob", "no thanks")
	})
	return reached
}

// waitClosed waits for ch to be closed or to deliver, and fails with why after 10 s (a
// failure bound only).
func waitClosed[T any](t *testing.T, ch <-chan T, why string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal(why)
	}
}

// TestClosedAccountRejects: the Rejects of packets from or to an account that takes no more
// of them. A stop is temporary for the sender (T01, retry elsewhere or later) on both sides;
// an account removed by a reload keeps its messages, final (F02) when it was the next hop.
func TestClosedAccountRejects(t *testing.T) {
	const stop = "connector test.c is shutting down; retry on another connector or later"
	tests := []struct {
		name     string
		r        *ilp.Reject
		wantCode ilp.ErrorCode
		wantMsg  string
	}{
		{"from an account removed", closedReject("test.c", "alice", removing, false, ""), ilp.CodePeerUnreachable, "account alice is being removed from this connector"},
		{"from an account, connector stopping", closedReject("test.c", "alice", stopping, false, ""), ilp.CodePeerUnreachable, stop},
		{"to a next hop removed", closedReject("test.c", "bob", removing, true, "test.bob.x"), ilp.CodeUnreachable, "no route to test.bob.x: next hop account bob is being removed"},
		{"to a next hop, connector stopping", closedReject("test.c", "bob", stopping, true, "test.bob.x"), ilp.CodePeerUnreachable, stop},
		{"from an account relinking", closedReject("test.c", "alice", relinking, false, ""), ilp.CodePeerUnreachable, "account alice is reconnecting after a configuration change; retry"},
		{"to a next hop relinking", closedReject("test.c", "bob", relinking, true, "test.bob.x"), ilp.CodePeerUnreachable, "account bob is reconnecting after a configuration change; retry"},
	}
	for _, tt := range tests {
		if tt.r.Code != tt.wantCode || tt.r.Message != tt.wantMsg || tt.r.TriggeredBy != "test.c" {
			t.Errorf("%s: %s %q by %s, want %s %q by test.c", tt.name, tt.r.Code, tt.r.Message, tt.r.TriggeredBy, tt.wantCode, tt.wantMsg)
		}
	}
}
