package connector

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
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
		return ilphttp.New(&ilphttp.Options{Mode: ilphttp.ModeAsync, Account: id, MaxHold: 30 * time.Second,
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
