package churn

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

const octets = "application/octet-stream"

// httpSide is the test's end of the ILP-over-HTTP peers hs (sync) and ha (async): one server
// per peer that the connector POSTs its Prepares to (and, for ha, the replies to the test's
// async Prepares), and a client of the test's own.
type httpSide struct {
	cl      *http.Client
	mu      sync.Mutex
	replies map[string]chan []byte // Request-Id of the test's async Prepares → reply
	wg      sync.WaitGroup         // async replies being POSTed to the connector
}

// serve runs h on 127.0.0.1:port until the test ends.
func serve(t *testing.T, port int, h http.HandlerFunc) *http.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// dropIdle closes the idle kept-alive connections between the connector and the test, both
// ways, so that what stays after a phase is what leaked, not a connection pool. (Not an idle
// timeout on the servers: a Prepare POSTed on a connection as the server closes it fails, a
// race every keep-alive client has and that the churn does not test.)
func dropIdle(cl *http.Client, srvs ...*http.Server) {
	cl.CloseIdleConnections()
	for _, s := range srvs {
		s.SetKeepAlivesEnabled(false) // closes the idle ones
		s.SetKeepAlivesEnabled(true)
	}
}

// isHold reports whether a Prepare is one the test's peer never answers.
func isHold(p *ilp.Prepare) bool { return strings.HasSuffix(string(p.Destination), ".hold") }

// syncPeer answers the connector's Prepares in the response, or holds them until the
// connector gives up on the request.
func (h *httpSide) syncPeer(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p, err := ilp.ParsePrepare(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if isHold(p) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second): // bounded: the connector gives up long before
		}
		return
	}
	out, _ := (&ilp.Fulfill{Fulfillment: preimage}).MarshalBinary()
	w.Header().Set("Content-Type", octets)
	_, _ = w.Write(out)
}

// asyncPeer takes the connector's async Prepares (202, then the Fulfill to its callback, or
// nothing for a held one) and the connector's replies to the test's async Prepares.
func (h *httpSide) asyncPeer(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("Request-Id")
	if len(body) == 0 || id == "" {
		http.Error(w, "want an ILP packet and a Request-Id", http.StatusBadRequest)
		return
	}
	if body[0] != ilp.TypePrepare {
		h.mu.Lock()
		ch := h.replies[id]
		delete(h.replies, id)
		h.mu.Unlock()
		if ch == nil {
			http.Error(w, "unknown Request-Id", http.StatusBadRequest)
			return
		}
		ch <- body
		return
	}
	p, err := ilp.ParsePrepare(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusAccepted)
	if isHold(p) {
		return
	}
	cb := r.Header.Get("Callback-Url")
	// The connector's account X signs with out-X and takes in-X (httpPeer).
	auth := strings.Replace(r.Header.Get("Authorization"), "Bearer out-", "Bearer in-", 1)
	h.wg.Go(func() {
		out, _ := (&ilp.Fulfill{Fulfillment: preimage}).MarshalBinary()
		req, _ := http.NewRequest(http.MethodPost, cb, bytes.NewReader(out))
		req.Header.Set("Content-Type", octets)
		req.Header.Set("Request-Id", id)
		req.Header.Set("Authorization", auth)
		if resp, err := h.cl.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// post sends p to the connector's incoming endpoint of account id as the test's peer, and
// returns the answer: in the response (sync), or the reply POSTed to callback (async, when
// callback is set). ctx may end it early: the client disconnects mid-request.
func (h *httpSide) post(ctx context.Context, inPort int, id, callback string, p *ilp.Prepare) ([]byte, error) {
	body, _ := p.MarshalBinary()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(inPort)+"/ilp", bytes.NewReader(body))
	req.Header.Set("Content-Type", octets)
	req.Header.Set("Authorization", "Bearer in-"+id)
	var ch chan []byte
	if callback != "" {
		rid := uuid()
		ch = make(chan []byte, 1)
		h.mu.Lock()
		h.replies[rid] = ch
		h.mu.Unlock()
		req.Header.Set("Request-Id", rid)
		req.Header.Set("Callback-Url", callback)
	}
	resp, err := h.cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if ch == nil {
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %d: %s", resp.StatusCode, out)
		}
		return out, nil
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("status %d, want 202: %s", resp.StatusCode, out)
	}
	select {
	case out := <-ch:
		return out, nil
	case <-time.After(10 * time.Second):
		return nil, errors.New("no reply at the callback in 10 s")
	}
}

// outcome is "F" for a Fulfill, the code of a Reject, or the error.
func outcome(b []byte, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	f, rej, err := ilp.ParseResponse(b)
	switch {
	case err != nil:
		return "unparsable reply: " + err.Error()
	case f != nil:
		return "F"
	}
	return string(rej.Code)
}

// TestChurnHTTPPeers: ILP-over-HTTP packets both ways on a sync and an async peer, fulfilled,
// timed out at the connector (held by the test's peer, or by a BTP receiver downstream) and
// abandoned by the client mid-request. Every request and every held packet must be gone
// without a trace once it expired.
func TestChurnHTTPPeers(t *testing.T) {
	phs, pha, pts, pta, ps, pslow := port(t), port(t), port(t), port(t), port(t), port(t)
	h := &httpSide{replies: map[string]chan []byte{},
		cl: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	sts, sta := serve(t, pts, h.syncPeer), serve(t, pta, h.asyncPeer)
	r := newRig(t, doc(0, []string{httpPeer("hs", "sync", phs, pts), httpPeer("ha", "async", pha, pta),
		btpListener("sink", "child", ps, ""), btpListener("slow", "child", pslow, "")},
		map[string]string{"test.hs": "hs", "test.ha": "ha"}))
	sink := client(t, ps, "sink", "tok-sink", fulfill)
	defer sink.Close()
	slow := client(t, pslow, "slow", "tok-slow", hold)
	defer slow.Close()
	callback := "http://127.0.0.1:" + strconv.Itoa(pta) + "/callback"
	const held = 300 * time.Millisecond
	kinds := []struct {
		name, want string
		run        func() string
	}{
		{"sync in, fulfilled", "F", func() string {
			return outcome(h.post(context.Background(), phs, "hs", "", prepare(self+".sink.x", 5*time.Second)))
		}},
		{"async in, fulfilled", "F", func() string {
			return outcome(h.post(context.Background(), pha, "ha", callback, prepare(self+".sink.x", 5*time.Second)))
		}},
		{"sync out, fulfilled", "", func() string { mustFulfill(t, sink, prepare("test.hs.x", 5*time.Second)); return "" }},
		{"async out, fulfilled", "", func() string { mustFulfill(t, sink, prepare("test.ha.x", 5*time.Second)); return "" }},
		{"sync in, expires downstream", "R00", func() string {
			return outcome(h.post(context.Background(), phs, "hs", "", prepare(self+".slow.x", held)))
		}},
		{"async in, expires downstream", "R00", func() string {
			return outcome(h.post(context.Background(), pha, "ha", callback, prepare(self+".slow.x", held)))
		}},
		{"sync in, client gone mid-request", "", func() string {
			ctx, cancel := context.WithTimeout(context.Background(), held/4)
			defer cancel()
			if _, err := h.post(ctx, phs, "hs", "", prepare(self+".slow.x", held)); !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Sprintf("want the client's own timeout, got %v", err)
			}
			return ""
		}},
		{"sync out, peer holds it", "R00", func() string { return rejectCode(sink, prepare("test.hs.hold", held)) }},
		{"async out, peer never replies", "R00", func() string { return rejectCode(sink, prepare("test.ha.hold", held)) }},
	}
	run := func(n int) {
		parallel(n, 8, func(i int) {
			k := kinds[i%len(kinds)]
			if got := k.run(); got != k.want {
				t.Errorf("%s: %s, want %q", k.name, got, k.want)
			}
		})
	}
	run(2 * len(kinds)) // warm-up
	h.wg.Wait()
	r.quiesce = func() { dropIdle(h.cl, sts, sta) }
	r.baseline()
	run(minIterations / len(kinds) * len(kinds) * 2)
	h.wg.Wait()
	r.check("ILP-over-HTTP churn", same())
}
