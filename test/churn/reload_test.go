package churn

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// TestChurnReloadAccounts: config reloads add and remove an account of every kind — a BTP
// listener (peer), a mini-accounts account, ILP-over-HTTP peers (sync and async) and
// ilp-plugin-btp clients (one connected, one whose server never answers) — with packets in flight to and from them and on the accounts that stay. A removed account
// must leave nothing: no goroutine, descriptor, metric series, route, CCP peer or store key.
func TestChurnReloadAccounts(t *testing.T) {
	ps, pxb, pxk, pxh, pxa, pxc, pxd, pts, pta := port(t), port(t), port(t), port(t), port(t), port(t), port(t), port(t), port(t)
	h := &httpSide{replies: map[string]chan []byte{}, cl: &http.Client{Transport: &http.Transport{}}}
	serve(t, pts, h.syncPeer)
	serve(t, pta, h.asyncPeer)
	// The server the client account xc dials, up for the whole test.
	xcSrv, err := btp.NewPeerServer(btp.PeerServerOptions{Host: "127.0.0.1", Port: pxc, Secret: "tok-xc",
		Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := xcSrv.Start(context.Background(), slowFulfill); err != nil {
		t.Fatal(err)
	}
	defer xcSrv.Close()

	base := []string{btpListener("sink", "child", ps, "")}
	// xd is a client account whose server never comes: it is removed while reconnecting.
	extras := []string{btpListener("xb", "peer", pxb, ""), miniAccounts("xk", pxk), httpPeer("xh", "sync", pxh, pts),
		httpPeer("xa", "async", pxa, pta), btpClient("xc", pxc), btpClient("xd", pxd)}
	extraRoutes := map[string]string{"test.xb": "xb", "test.xh": "xh", "test.xa": "xa", "test.xc": "xc"}
	// Apply does not wait for xd (it never connects): a client still connecting goes on in
	// the background.
	const noWait = "initialConnectTimeout: 1\n"
	without := noWait + doc(0, base, nil)
	with := noWait + doc(0, append(append([]string{}, base...), extras...), extraRoutes)
	extra := func(id string) bool { return len(id) == 2 && id[0] == 'x' }

	r := newRig(t, without)
	sink := client(t, ps, "sink", "tok-sink", fulfill)
	defer sink.Close()
	cycle := func(i int) {
		r.apply(with)
		// The peer of xb connects (its link must be up for packets to it); xk's child too.
		xb := client(t, pxb, "xb", "tok-xb", slowFulfill)
		kid := client(t, pxk, "kid", "tok-kid", refuse)
		// Packets in flight through the extra accounts while they are removed: each is
		// fulfilled, or rejected with a code that says the account or its route is going
		// away (or the link closed under it).
		var wg sync.WaitGroup
		for _, dest := range []string{"test.xb.a", "test.xh.a", "test.xa.a", "test.xc.a", self + ".xk.kid"} {
			wg.Go(func() { inFlight(t, sink, dest, false) })
		}
		wg.Go(func() { inFlight(t, kid, self+".sink.x", true) })
		wg.Go(func() { inFlight(t, xb, self+".sink.x", true) })
		r.apply(without)
		wg.Wait()
		_ = xb.Close()
		_ = kid.Close()
		mustFulfill(t, sink, prepare(self+".sink.x", 5*time.Second)) // the account that stays
	}
	cycle(-1)
	cycle(-1)
	r.baseline()
	for i := range minIterations / 2 { // each cycle is an add and a remove
		cycle(i)
	}
	r.check("reloads adding and removing accounts", same())
	if left := seriesOf(t, r.c, extra); len(left) > 0 {
		t.Errorf("series of removed accounts: %v", left)
	}
}

// slowFulfill fulfills after a short wait, so that packets are in flight when a reload
// removes their account.
func slowFulfill(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if strings.HasPrefix(string(p.Destination), "peer.") {
		return fulfill(ctx, p)
	}
	tm := time.NewTimer(20 * time.Millisecond)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-tm.C:
	}
	return &ilp.Fulfill{Fulfillment: preimage}, nil
}

// inFlight sends a packet that a reload may remove the path of. Fulfilled, F02 (the account
// or its route is gone) and T01 (being removed, retry) are what a removal explains; so is a
// transport error on cl when cl is the peer of a removed account (closing says so), whose link
// closes under the packet. Anything else is reported.
func inFlight(t *testing.T, cl *btp.Client, dest string, closing bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cl.Send(ctx, prepare(dest, 5*time.Second))
	var rej *ilp.Reject
	switch {
	case err == nil:
	case errors.As(err, &rej):
		if rej.Code != ilp.CodeUnreachable && rej.Code != ilp.CodePeerUnreachable {
			t.Errorf("packet to %s during a reload: %s %s (by %s)", dest, rej.Code, rej.Message, rej.TriggeredBy)
		}
	case closing:
	default:
		t.Errorf("packet to %s during a reload: %v", dest, err)
	}
}
