package redistest

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards loopback TCP connections to a Server and can do to them what a network does:
// lose the replies (the command was applied, the client never hears it), or hold the commands
// (the client gives up, and a late copy reaches Redis afterwards).
type Proxy struct {
	Addr string // 127.0.0.1:port

	ln     net.Listener
	target string

	mu       sync.Mutex
	drop     int // replies still to drop; < 0: all
	hold     int // commands still to hold; < 0: all
	dropped  int
	replies  int
	heldConn []*pair
	closed   bool
	pairs    []*pair
}

// pair is one proxied connection.
type pair struct {
	client, server net.Conn
	held           []byte
}

// StartProxy listens on a free loopback port and forwards to s until t ends.
func StartProxy(t testing.TB, s *Server) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: s.Addr}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's redis:// URL, database 0.
func (p *Proxy) URL() string { return "redis://" + p.Addr + "/0" }

// DropReplies makes the next n replies read from Redis (n < 0: all, until DropReplies(0))
// vanish, each closing its connection both ways: the client sees the connection break after
// its command was applied.
func (p *Proxy) DropReplies(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = n
}

// HoldCommands keeps the next n writes of clients (n < 0: all, until HoldCommands(0)) in the
// proxy instead of passing them to Redis, until SendHeld; a connection holding bytes holds
// what follows on it too, to keep their order.
func (p *Proxy) HoldCommands(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = n
}

// SendHeld sends the held commands to Redis, on their own connections, and returns the number
// of replies Redis had sent before (see Replies): their replies come after it.
func (p *Proxy) SendHeld() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.heldConn {
		_, _ = c.server.Write(c.held)
		c.held = nil
	}
	p.heldConn = nil
	return p.replies
}

// Dropped is the number of replies dropped so far.
func (p *Proxy) Dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// Replies is the number of reads of replies from Redis so far, dropped or not.
func (p *Proxy) Replies() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replies
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		cp := &pair{client: c, server: s}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = s.Close()
			return
		}
		p.pairs = append(p.pairs, cp)
		p.mu.Unlock()
		go p.commands(cp)
		go p.replyPump(cp)
	}
}

// commands passes the client's bytes to Redis, or holds them. The server side stays open when
// the client goes, so that held commands can still arrive late.
func (p *Proxy) commands(cp *pair) {
	buf := make([]byte, 32<<10)
	for {
		n, err := cp.client.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if p.hold != 0 || cp.held != nil {
				if p.hold > 0 && cp.held == nil {
					p.hold--
				}
				if cp.held == nil {
					p.heldConn = append(p.heldConn, cp)
				}
				cp.held = append(cp.held, buf[:n]...)
			} else {
				_, _ = cp.server.Write(buf[:n])
			}
			p.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// replyPump passes Redis's replies to the client, or drops them and breaks the connection.
func (p *Proxy) replyPump(cp *pair) {
	buf := make([]byte, 32<<10)
	for {
		n, err := cp.server.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.replies++
			drop := p.drop != 0
			if drop {
				p.dropped++
				if p.drop > 0 {
					p.drop--
				}
			}
			p.mu.Unlock()
			if drop {
				_ = cp.client.Close()
				_ = cp.server.Close()
				return
			}
			if _, werr := cp.client.Write(buf[:n]); werr != nil && err == nil {
				continue // the client left; late replies are read and discarded
			}
		}
		if err != nil {
			_ = cp.client.Close()
			return
		}
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	pairs := p.pairs
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, cp := range pairs {
		_ = cp.client.Close()
		_ = cp.server.Close()
	}
}
