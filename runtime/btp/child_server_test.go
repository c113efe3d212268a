package btp

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ildcp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
)

const acct ilp.Address = "test.conn.kids"

func startChildServer(t *testing.T, h ilp.Handler, mod func(*ChildServerOptions)) *ChildServer {
	t.Helper()
	o := ChildServerOptions{Host: "127.0.0.1", AccountAddress: func() ilp.Address { return acct },
		AssetCode: "XRP", AssetScale: 9, Common: quiet()}
	if mod != nil {
		mod(&o)
	}
	s, err := NewChildServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// answerWith fulfills with fixed data, to tell children apart.
func answerWith(s string) ilp.Handler {
	return func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return &ilp.Fulfill{Fulfillment: preimage, Data: []byte(s)}, nil
	}
}

func TestTokenAccount(t *testing.T) {
	// sha256("secret") = 2bb80d53…; base64url without padding, as mini-accounts' tokenToAccount.
	if got, want := TokenAccount([]byte("secret")), "K7gNU3sdo-OL0wNhqoVWhr3g6s1xYv72ol_pe_Unols"; got != want {
		t.Errorf("TokenAccount = %q, want %q", got, want)
	}
}

func TestChildServerTwoChildren(t *testing.T) {
	fromc := make(chan ilp.Address, 1)
	srv := startChildServer(t, func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		from, _ := ChildFromContext(ctx)
		fromc <- from
		return echo(ctx, p)
	}, nil)
	if srv.Connected() {
		t.Error("connected with no child")
	}
	a := startClient(t, serverURL(srv, "", "tokA"), answerWith("A"), nil)
	b := startClient(t, serverURL(srv, "", "tokB"), answerWith("B"), nil)
	addrA := acct + "." + ilp.Address(TokenAccount([]byte("tokA")))
	addrB := acct + "." + ilp.Address(TokenAccount([]byte("tokB")))
	waitFor(t, "both children", func() bool { return len(srv.Children()) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Run("IL-DCP", func(t *testing.T) {
		for _, c := range []struct {
			cli  *Client
			want ilp.Address
		}{{a, addrA}, {b, addrB}} {
			info, err := ildcp.Fetch(ctx, c.cli.Send)
			if err != nil || info != (ildcp.Info{Address: c.want, AssetScale: 9, AssetCode: "XRP"}) {
				t.Errorf("Fetch = %+v, %v; want %s XRP 9", info, err, c.want)
			}
		}
	})
	t.Run("children's Prepares go to the handler", func(t *testing.T) {
		if f, err := a.Send(ctx, prepare("test.elsewhere", "up")); err != nil || string(f.Data) != "up" {
			t.Fatalf("Send = %+v, %v", f, err)
		}
		if from := <-fromc; from != addrA {
			t.Errorf("ChildFromContext = %q, want %q", from, addrA)
		}
	})
	t.Run("routing", func(t *testing.T) {
		tests := []struct {
			dest ilp.Address
			want string // data of the Fulfill, or "" for an F02 Reject
		}{
			{addrA, "A"},
			{addrA + ".app.7", "A"},
			{addrB + ".x", "B"},
			{addrA + "x", ""},                // not a segment boundary
			{acct + ".nobody", ""},           // unknown child
			{acct, ""},                       // the account itself
			{"test.conn.kidsx." + addrA, ""}, // another account
			{"test.other", ""},
		}
		for _, tt := range tests {
			f, err := srv.Send(ctx, prepare(tt.dest, ""))
			if tt.want != "" {
				if err != nil || string(f.Data) != tt.want {
					t.Errorf("Send to %s = %+v, %v; want child %s", tt.dest, f, err, tt.want)
				}
				continue
			}
			var rej *ilp.Reject
			if !errors.As(err, &rej) || rej.Code != ilp.CodeUnreachable || rej.TriggeredBy != testAddr {
				t.Errorf("Send to %s = %+v, %v; want F02 from %s", tt.dest, f, err, testAddr)
			}
		}
	})
	t.Run("a child that leaves is unreachable", func(t *testing.T) {
		b.Close()
		waitFor(t, "child B gone", func() bool { return len(srv.Children()) == 1 })
		var rej *ilp.Reject
		if _, err := srv.Send(ctx, prepare(addrB, "")); !errors.As(err, &rej) || rej.Code != ilp.CodeUnreachable {
			t.Errorf("Send to a gone child = %v, want F02", err)
		}
	})
}

func TestChildServerAccountModes(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name     string
		generate *bool
		user     string
		token    string
		want     string // child name, or "" for a refused auth
	}{
		{"default: hashed token", nil, "", "t1", TokenAccount([]byte("t1"))},
		{"default: username", nil, "bob", "pw", "bob"},
		{"default: username with its first token again", nil, "bob", "pw", "bob"},
		{"default: username with another token", nil, "bob", "other", ""},
		{"default: username that is not a segment", nil, "bo.b", "pw", ""},
		{"default: username with a bad character", nil, "b%21", "pw", ""},
		{"generateAccount true refuses a username", &yes, "carol", "pw", ""},
		{"generateAccount true takes the hash as username", &yes, TokenAccount([]byte("pw")), "pw", TokenAccount([]byte("pw"))},
		{"generateAccount false requires a username", &no, "", "pw", ""},
		{"generateAccount false with a username", &no, "dave", "pw", "dave"},
		// mini-accounts: assert(token, 'auth_token subprotocol is required'); else every client
		// without credentials shares the child named by sha256("").
		{"default: empty token", nil, "", "", ""},
		{"default: username with an empty token", nil, "erin", "", ""},
		{"generateAccount true: empty token", &yes, "", "", ""},
	}
	servers := map[*bool]*ChildServer{}
	for _, g := range []*bool{nil, &yes, &no} {
		servers[g] = startChildServer(t, echo, func(o *ChildServerOptions) { o.GenerateAccount = g })
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := servers[tt.generate]
			c := newClient(t, serverURL(srv, tt.user, tt.token), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := c.Start(ctx, answerWith("me"))
			defer c.Close()
			if tt.want == "" {
				var be *Error
				if !errors.As(err, &be) || be.Code != "F00" {
					t.Errorf("Start = %v; want an F00 refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Start = %v", err)
			}
			waitFor(t, "the child", func() bool { return slices.Contains(srv.Children(), acct+"."+ilp.Address(tt.want)) })
			if f, err := srv.Send(ctx, prepare(acct+"."+ilp.Address(tt.want), "")); err != nil || string(f.Data) != "me" {
				t.Errorf("Send = %+v, %v", f, err)
			}
		})
	}
}

func TestChildServerNotConnected(t *testing.T) {
	srv := startChildServer(t, echo, nil)
	if srv.Connected() {
		t.Error("Connected with no child")
	}
	var _ link.Link = srv
	if _, err := NewChildServer(ChildServerOptions{}); err == nil {
		t.Error("NewChildServer without AccountAddress succeeded")
	}
}

// upgradeStatus sends a WebSocket upgrade with the given Host and Origin (none when "") and
// returns the HTTP status of the answer.
func upgradeStatus(t *testing.T, addr net.Addr, host, origin string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	if origin != "" {
		req += "Origin: " + origin + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// TestServerOrigins: the ChildServer refuses every browser Origin that allowedOrigins does not
// allow (none by default), as ilp-plugin-mini-accounts, including one equal to the Host
// header: under DNS rebinding both are the attacker's name, pointed at a local connector. The
// PeerServer, like ilp-plugin-btp's listener, checks no Origin: its peer needs the secret.
func TestServerOrigins(t *testing.T) {
	child := startChildServer(t, echo, nil)
	allowing := startChildServer(t, echo, func(o *ChildServerOptions) { o.AllowedOrigins = []string{"*.example.com"} })
	peer := startServer(t, 0, echo, nil)
	_, port, _ := net.SplitHostPort(child.Addr().String())
	rebound := "attacker.example:" + port
	tests := []struct {
		name   string
		addr   net.Addr
		host   string
		origin string
		want   int
	}{
		{"child: no Origin (not a browser)", child.Addr(), rebound, "", http.StatusSwitchingProtocols},
		{"child: Origin equal to Host (DNS rebinding)", child.Addr(), rebound, "http://" + rebound, http.StatusForbidden},
		{"child: Origin of the listening address", child.Addr(), child.Addr().String(), "http://" + child.Addr().String(), http.StatusForbidden},
		{"child: allowed Origin", allowing.Addr(), rebound, "https://app.example.com", http.StatusSwitchingProtocols},
		{"child: Origin not allowed", allowing.Addr(), rebound, "https://evil.test", http.StatusForbidden},
		{"peer: any Origin", peer.Addr(), rebound, "http://" + rebound, http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := upgradeStatus(t, tt.addr, tt.host, tt.origin); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
}
