package redistest

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// Proxy forwards loopback TCP connections to a Server and can do to them what a network or a
// restarting Redis does: lose the replies (the command was applied, the client never hears
// it), hold the commands (the client gives up, and a late copy reaches Redis afterwards), or
// refuse them with an error reply (LOADING, READONLY) without passing them on.
//
// Rules apply to the client's writes that contain a given text (a RESP command is sent in one
// write outside pipelines; "" matches every write), counted down (n < 0: until turned off
// with n = 0).
type Proxy struct {
	Addr string // 127.0.0.1:port

	ln     net.Listener
	target string

	mu       sync.Mutex
	drop     rule // the reply to a matching write is dropped and its connection closed
	hold     rule // a matching write is held until SendHeld
	fail     rule // a matching write is answered with failWith by the proxy
	failWith string
	dropped  int
	refused  int
	replies  int
	heldConn []*pair
	closed   bool
	pairs    []*pair
}

type rule struct {
	match string
	n     int
}

// take reports whether the write b falls under the rule, and counts it.
func (r *rule) take(b []byte) bool {
	if r.n == 0 || !bytes.Contains(b, []byte(r.match)) {
		return false
	}
	if r.n > 0 {
		r.n--
	}
	return true
}

// pair is one proxied connection.
type pair struct {
	client, server net.Conn
	held           []byte
	dropNext       bool // the next reply on it is dropped
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

// DropReplies drops the replies to the next n writes that contain match: each closes its
// connection instead, both ways, after Redis applied the command.
func (p *Proxy) DropReplies(match string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = rule{match, n}
}

// HoldCommands keeps the next n writes that contain match in the proxy instead of passing
// them to Redis, until SendHeld; a connection holding bytes holds what follows on it too, to
// keep their order.
func (p *Proxy) HoldCommands(match string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold = rule{match, n}
}

// FailCommands answers the next n writes that contain match with the error reply (without
// the leading "-"), as a Redis loading its data or demoted to a replica does; Redis never sees
// them.
func (p *Proxy) FailCommands(match string, n int, reply string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail, p.failWith = rule{match, n}, reply
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

// Refused is the number of writes answered by FailCommands so far.
func (p *Proxy) Refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
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

// commands passes the client's writes to Redis, or holds them, or answers them. The server
// side stays open when the client goes, so that held commands can still arrive late.
func (p *Proxy) commands(cp *pair) {
	buf := make([]byte, 32<<10)
	for {
		n, err := cp.client.Read(buf)
		if n > 0 {
			p.mu.Lock()
			switch b := buf[:n]; {
			case cp.held != nil || p.hold.take(b):
				if cp.held == nil {
					p.heldConn = append(p.heldConn, cp)
				}
				cp.held = append(cp.held, b...)
			case p.drop.take(b):
				cp.dropNext = true
				_, _ = cp.server.Write(b)
			case p.fail.take(b):
				p.refused++
				_, _ = cp.client.Write([]byte("-" + p.failWith + "\r\n"))
			default:
				_, _ = cp.server.Write(b)
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
			drop := cp.dropNext
			if drop {
				p.dropped++
			}
			p.mu.Unlock()
			if drop {
				_ = cp.client.Close()
				_ = cp.server.Close()
				return
			}
			_, _ = cp.client.Write(buf[:n]) // a client that left: late replies are discarded
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
