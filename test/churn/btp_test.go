package churn

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// refuse is the handler of senders: they take no packets.
func refuse(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
	return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.sender", "senders take no packets")
}

// child connects as user on the mini-accounts port, sends three packets to the sink and
// disconnects. It reports failures with Errorf: it runs on the workers of parallel.
func childLifecycle(t *testing.T, kidsPort int, user, token string) {
	cl := newClient(t, kidsPort, user, token)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Start(ctx, refuse); err != nil {
		t.Errorf("child %s: %v", user, err)
		return
	}
	defer cl.Close()
	for range 3 {
		mustFulfill(t, cl, prepare(self+".sink.x", 5*time.Second))
	}
}

// TestChurnBTPChildren: children of a mini-accounts account connect, pay and disconnect —
// each under its own name, then one name over and over (a new connection replacing the
// binding's previous one). Nothing of a gone child may stay but its token binding, which is
// kept in the store on purpose (as mini-accounts keeps `<account>:hashed-token` in the JS
// connector's store): one store key per distinct name, and none per connection.
func TestChurnBTPChildren(t *testing.T) {
	pk, ps := port(t), port(t)
	r := newRig(t, doc(0, []string{miniAccounts("kids", pk), btpListener("sink", "child", ps, "")}, nil))
	sink := client(t, ps, "sink", "tok-sink", fulfill)
	defer sink.Close()
	// Warm-up: one of each kind of lifecycle, so that lazily made things (metric series of
	// kids and sink, pools) exist at the baseline.
	childLifecycle(t, pk, "warm", "tok-warm")
	childLifecycle(t, pk, "", "tok-anon-warm")
	waitFor(t, "warm-up child gone", func() bool { return !r.c.Connected("kids") })
	r.baseline()

	const n = minIterations
	parallel(n, 4, func(i int) { childLifecycle(t, pk, "user"+strconv.Itoa(i), "tok-"+strconv.Itoa(i)) })
	waitFor(t, "children gone", func() bool { return !r.c.Connected("kids") })
	want := same()
	want.storeKeys = r.base.storeKeys + n // the bindings of the n new names, and nothing else
	r.check("distinct usernames", want)

	parallel(n, 4, func(int) { childLifecycle(t, pk, "same", "tok-same") })
	// Children named by their token's hash (no username) are never bound: no key.
	parallel(n, 4, func(i int) { childLifecycle(t, pk, "", fmt.Sprintf("anon-%d", i)) })
	waitFor(t, "children gone", func() bool { return !r.c.Connected("kids") })
	want.storeKeys++ // "same"
	r.check("one username repeatedly, and anonymous children", want)

	// Connections that never become children: a wrong token for a bound name, an empty
	// token, and plain HTTP or bare TCP on the WebSocket port.
	parallel(n, 4, func(i int) {
		switch i % 4 {
		case 0:
			refusedChild(t, pk, "same", "not-its-token")
		case 1:
			refusedChild(t, pk, "nobody", "")
		case 2:
			if resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(pk) + "/"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		case 3:
			if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(pk)); err == nil {
				_, _ = c.Write([]byte("GET / HTTP/1.1\r\n")) // and hang up mid-request
				_ = c.Close()
			}
		}
	})
	http.DefaultClient.CloseIdleConnections()
	r.check("refused connections", want)
}

// refusedChild tries to connect with credentials the server refuses, and gives up.
func refusedChild(t *testing.T, kidsPort int, user, token string) {
	cl := newClient(t, kidsPort, user, token)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := cl.Start(ctx, refuse); err == nil {
		t.Errorf("child %s with token %q was let in", user, token)
	}
	_ = cl.Close()
}

// TestChurnBTPClientReconnects: the server of an ilp-plugin-btp client account restarts over
// and over; the account's client reconnects each time and carries a packet. Each outage must
// leave nothing behind: no reconnect loop, no connection, no dial.
func TestChurnBTPClientReconnects(t *testing.T) {
	pu, ps := port(t), port(t)
	serve := func(i int) *btp.PeerServer {
		srv, err := btp.NewPeerServer(btp.PeerServerOptions{Host: "127.0.0.1", Port: pu, Secret: "tok-up"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(context.Background(), fulfill); err != nil {
			t.Fatalf("server start %d: %v", i, err)
		}
		return srv
	}
	srv := serve(-1) // up before the connector, whose Start waits for its clients
	r := newRig(t, doc(0, []string{btpClient("up", pu), btpListener("sink", "child", ps, "")},
		map[string]string{"test.up": "up"}))
	sender := client(t, ps, "sink", "tok-sink", fulfill)
	defer sender.Close()
	cycle := func(i int) {
		_ = srv.Close()
		waitFor(t, "client account sees the server gone", func() bool { return !r.c.Connected("up") })
		srv = serve(i)
		waitFor(t, "client account reconnected", func() bool { return r.c.Connected("up") })
		mustFulfill(t, sender, prepare("test.up.x", 5*time.Second))
	}
	cycle(-1)
	r.baseline()
	for i := range minIterations / 2 { // each cycle is a disconnect and a reconnect
		cycle(i)
	}
	r.check("server restarts", same())
	_ = srv.Close()
}
