// Package testproxy is an HTTP CONNECT proxy for tests of clients that must honour
// HTTPS_PROXY. net/http never proxies loopback addresses, so a client under test dials a name
// (peer.example:PORT) that only this proxy resolves: it tunnels every target's port to
// 127.0.0.1, whatever the host.
package testproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// Start serves CONNECT on 127.0.0.1 until the test ends; it returns the proxy's URL (for
// HTTPS_PROXY) and a reader of the targets clients asked it for, in order.
func Start(t testing.TB) (string, func() []string) {
	var mu sync.Mutex
	var targets []string
	var conns []net.Conn
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		_, port, err := net.SplitHostPort(r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		down, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		mu.Lock()
		targets, conns = append(targets, r.Host), append(conns, up, down)
		mu.Unlock()
		_, _ = down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		go tunnel(up, rw.Reader, down)
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(targets)
	}
}

// tunnel copies both ways between up and down (whose reader may hold bytes already read)
// until either side closes.
func tunnel(up net.Conn, downR *bufio.Reader, down net.Conn) {
	defer up.Close()
	defer down.Close()
	go func() { _, _ = io.Copy(up, downR); up.Close() }()
	_, _ = io.Copy(down, up)
}
