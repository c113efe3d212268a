package btp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/btp/internal/ws"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
)

const testAddr ilp.Address = "test.conn"

var (
	preimage  = [32]byte{1, 2, 3}
	condition = ilp.ConditionOf(preimage)
)

func quiet() Common {
	return Common{Logger: slog.New(slog.DiscardHandler), Address: func() ilp.Address { return testAddr }}
}

func prepare(dest ilp.Address, data string) *ilp.Prepare {
	return &ilp.Prepare{Amount: 10, ExpiresAt: time.Now().Add(30 * time.Second).Truncate(time.Millisecond),
		ExecutionCondition: condition, Destination: dest, Data: []byte(data)}
}

// echo fulfills every Prepare, echoing its data.
func echo(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	return &ilp.Fulfill{Fulfillment: preimage, Data: p.Data}, nil
}

func startServer(t *testing.T, port int, h ilp.Handler, mod func(*PeerServerOptions)) *PeerServer {
	t.Helper()
	o := PeerServerOptions{Host: "127.0.0.1", Port: port, Secret: "s3cret", Common: quiet()}
	if mod != nil {
		mod(&o)
	}
	s, err := NewPeerServer(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func serverURL(s interface{ Addr() net.Addr }, user, token string) string {
	return fmt.Sprintf("btp+ws://%s:%s@%s/path", user, token, s.Addr())
}

func newClient(t *testing.T, url string, mod func(*ClientOptions)) *Client {
	t.Helper()
	o := ClientOptions{Server: url, ReconnectInterval: 20 * time.Millisecond, Common: quiet()}
	if mod != nil {
		mod(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func startClient(t *testing.T, url string, h ilp.Handler, mod func(*ClientOptions)) *Client {
	t.Helper()
	c := newClient(t, url, mod)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, what, 1000, cond)
}

func TestClientPeerServerExchange(t *testing.T) {
	tests := []struct {
		name    string
		handler ilp.Handler
		check   func(t *testing.T, f *ilp.Fulfill, err error)
	}{
		{"fulfill", echo, func(t *testing.T, f *ilp.Fulfill, err error) {
			if err != nil || f.Fulfillment != preimage || string(f.Data) != "hello" {
				t.Errorf("got %+v, %v; want the echo Fulfill", f, err)
			}
		}},
		{"reject", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
			return nil, &ilp.Reject{Code: ilp.CodeInsufficientLiquidity, TriggeredBy: "test.other", Message: "no money", Data: []byte{9}}
		}, func(t *testing.T, f *ilp.Fulfill, err error) {
			var rej *ilp.Reject
			if !errors.As(err, &rej) || rej.Code != ilp.CodeInsufficientLiquidity || rej.TriggeredBy != "test.other" ||
				rej.Message != "no money" || !bytes.Equal(rej.Data, []byte{9}) {
				t.Errorf("got %+v, %v; want the T04 Reject", f, err)
			}
		}},
		{"reject without triggeredBy gets the link's address", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
			return nil, ilp.Rejectf(ilp.CodeUnreachable, "", "nowhere")
		}, func(t *testing.T, _ *ilp.Fulfill, err error) {
			var rej *ilp.Reject
			if !errors.As(err, &rej) || rej.Code != ilp.CodeUnreachable || rej.TriggeredBy != testAddr {
				t.Errorf("got %v; want F02 triggered by %s", err, testAddr)
			}
		}},
		{"plain error becomes T00", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
			return nil, errors.New("database on fire")
		}, func(t *testing.T, _ *ilp.Fulfill, err error) {
			var rej *ilp.Reject
			if !errors.As(err, &rej) || rej.Code != ilp.CodeInternalError || rej.Message != "database on fire" {
				t.Errorf("got %v; want a T00 Reject", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, 0, tt.handler, nil)
			cli := startClient(t, serverURL(srv, "alice", "s3cret"), tt.handler, nil)
			waitFor(t, "server side connected", srv.Connected)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			f, err := cli.Send(ctx, prepare("test.bob", "hello"))
			tt.check(t, f, err)
			f, err = srv.Send(ctx, prepare("test.alice", "hello")) // and the other way
			tt.check(t, f, err)
		})
	}
}

func TestWrongTokenRejected(t *testing.T) {
	srv := startServer(t, 0, echo, nil)
	for _, tok := range []string{"wrong", "", "s3cret2", "s3cre"} {
		c := newClient(t, serverURL(srv, "alice", tok), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.Start(ctx, echo)
		cancel()
		var be *Error
		if !errors.As(err, &be) || be.Code != "F00" || !bytes.Contains(be.Data, []byte("auth_token")) {
			t.Errorf("token %q: Start = %v; want an F00 BTP Error about auth_token", tok, err)
		}
		if c.Connected() || srv.Connected() {
			t.Errorf("token %q: connected after a rejected auth", tok)
		}
		if _, err := c.Send(context.Background(), prepare("test.bob", "")); !errors.Is(err, link.ErrNotConnected) {
			t.Errorf("token %q: Send = %v, want ErrNotConnected", tok, err)
		}
		c.Close()
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	srv := startServer(t, 0, echo, nil)
	port := srv.Addr().(*net.TCPAddr).Port
	cli := startClient(t, serverURL(srv, "", "s3cret"), echo, nil)
	srv.Close()
	waitFor(t, "client to see the loss", func() bool { return !cli.Connected() })
	if _, err := cli.Send(context.Background(), prepare("test.bob", "")); !errors.Is(err, link.ErrNotConnected) {
		t.Errorf("Send while down = %v, want ErrNotConnected", err)
	}
	srv2 := startServer(t, port, echo, nil)
	waitFor(t, "client to reconnect", func() bool { return cli.Connected() && srv2.Connected() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if f, err := cli.Send(ctx, prepare("test.bob", "again")); err != nil || string(f.Data) != "again" {
		t.Errorf("Send after reconnect = %+v, %v", f, err)
	}
}

func TestRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	block := func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		<-release
		return echo(ctx, p)
	}
	srv := startServer(t, 0, block, nil)
	cli := startClient(t, serverURL(srv, "", "s3cret"), echo, func(o *ClientOptions) { o.ResponseTimeout = 100 * time.Millisecond })
	defer close(release) // before the Cleanups that wait for the handler
	_, err := cli.Send(context.Background(), prepare("test.bob", ""))
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("Send = %v, want ErrTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := cli.Send(ctx, prepare("test.bob", "")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestPendingRequestFailsWhenConnectionDrops(t *testing.T) {
	release := make(chan struct{})
	block := func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		<-release
		return echo(ctx, p)
	}
	srv := startServer(t, 0, block, nil)
	cli := startClient(t, serverURL(srv, "", "s3cret"), echo, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := cli.Send(context.Background(), prepare("test.bob", ""))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	close(release)
	srv.Close()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Send = %v, want success or ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Send did not return when the connection closed")
	}
}

func TestConcurrentSends(t *testing.T) {
	srv := startServer(t, 0, echo, nil)
	cli := startClient(t, serverURL(srv, "", "s3cret"), echo, nil)
	waitFor(t, "server side connected", srv.Connected)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		l := link.Link(cli)
		if g%2 == 1 {
			l = srv
		}
		wg.Go(func() {
			for i := range 25 {
				want := strconv.Itoa(g) + "/" + strconv.Itoa(i)
				f, err := l.Send(context.Background(), prepare("test.x", want))
				if err == nil && string(f.Data) != want {
					err = fmt.Errorf("got answer %q for %q", f.Data, want)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewerConnectionReplacesOld(t *testing.T) {
	srv := startServer(t, 0, echo, nil)
	a := startClient(t, serverURL(srv, "", "s3cret"), func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return &ilp.Fulfill{Fulfillment: preimage, Data: []byte("a")}, nil
	}, func(o *ClientOptions) { o.ReconnectInterval = time.Hour })
	b := startClient(t, serverURL(srv, "", "s3cret"), func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return &ilp.Fulfill{Fulfillment: preimage, Data: []byte("b")}, nil
	}, nil)
	waitFor(t, "the first client to be dropped", func() bool { return !a.Connected() })
	if !b.Connected() {
		t.Fatal("second client not connected")
	}
	f, err := srv.Send(context.Background(), prepare("test.x", ""))
	if err != nil || string(f.Data) != "b" {
		t.Errorf("server Send = %+v, %v; want the newer client's answer", f, err)
	}
}

func TestTransferHook(t *testing.T) {
	type got struct {
		from   ilp.Address
		amount uint64
		proto  string
	}
	gotc := make(chan got, 1)
	srv := startServer(t, 0, echo, func(o *PeerServerOptions) {
		o.Money = func(_ context.Context, from ilp.Address, amount uint64, ps []ProtocolData) error {
			gotc <- got{from, amount, ps[0].Name}
			if amount > 100 {
				return errors.New("too much")
			}
			return nil
		}
	})
	cli := startClient(t, serverURL(srv, "", "s3cret"), echo, nil)
	cn := cli.cur.Load()
	for _, tt := range []struct {
		amount  uint64
		wantErr bool
	}{{5, false}, {500, true}} {
		f := Frame{Type: TypeTransfer, Amount: tt.amount, Protocols: []ProtocolData{{Name: "paychan", Data: []byte{1}}}}
		msg, err := cn.request(context.Background(), 0, nil, &f)
		if err != nil {
			t.Fatal(err)
		}
		var ans Frame
		if err := ParseFrame(msg, &ans); err != nil {
			t.Fatal(err)
		}
		if (ans.Type == TypeError) != tt.wantErr || (ans.Type == TypeResponse && len(ans.Protocols) != 0) {
			t.Errorf("amount %d: answer %+v", tt.amount, ans)
		}
		if g := <-gotc; g != (got{"", tt.amount, "paychan"}) {
			t.Errorf("hook got %+v", g)
		}
	}
}

// rawDial opens a WebSocket to s without any BTP.
func rawDial(t *testing.T, addr net.Addr) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr.String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

func writeFrame(t *testing.T, ws *websocket.Conn, f *Frame) {
	t.Helper()
	b, err := AppendFrame(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(context.Background(), websocket.MessageBinary, b); err != nil {
		t.Fatal(err)
	}
}

func readFrame(t *testing.T, ws *websocket.Conn) (*Frame, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	var f Frame
	return &f, ParseFrame(b, &f)
}

func TestServerAuthHandshake(t *testing.T) {
	auth := func(ps ...ProtocolData) *Frame { return &Frame{Type: TypeMessage, RequestID: 77, Protocols: ps} }
	authP := ProtocolData{Name: "auth", Data: []byte{}}
	tok := func(s string) ProtocolData {
		return ProtocolData{Name: "auth_token", ContentType: ContentText, Data: []byte(s)}
	}
	tests := []struct {
		name  string
		first *Frame
		ok    bool
	}{
		{"rfc 23: auth + auth_token", auth(authP, tok("s3cret")), true},
		{"js: auth + auth_username + auth_token", auth(authP, ProtocolData{Name: "auth_username", Data: []byte("x")}, tok("s3cret")), true},
		{"no auth_token", auth(authP), false},
		{"auth not first", auth(tok("s3cret"), authP), false},
		{"ilp first", auth(ProtocolData{Name: "ilp", Data: []byte{12, 0}}), false},
		{"a Transfer", &Frame{Type: TypeTransfer, RequestID: 77, Protocols: []ProtocolData{authP, tok("s3cret")}}, false},
	}
	srv := startServer(t, 0, echo, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := rawDial(t, srv.Addr())
			writeFrame(t, ws, tt.first)
			ans, err := readFrame(t, ws)
			if err != nil {
				t.Fatal(err)
			}
			if ans.RequestID != 77 {
				t.Errorf("answer to request %d, want 77", ans.RequestID)
			}
			if tt.ok != (ans.Type == TypeResponse) || (!tt.ok && ans.Code != "F00") {
				t.Errorf("answer %+v; want ok=%v", ans, tt.ok)
			}
			if !tt.ok {
				if _, err := readFrame(t, ws); err == nil {
					t.Error("connection still open after a failed auth")
				}
			}
		})
	}
}

func TestUnknownAndUnreadableFramesGetNoReply(t *testing.T) {
	srv := startServer(t, 0, echo, nil)
	ws := rawDial(t, srv.Addr())
	writeFrame(t, ws, &Frame{Type: TypeMessage, RequestID: 1, Protocols: []ProtocolData{
		{Name: "auth", Data: []byte{}}, {Name: "auth_token", Data: []byte("s3cret")}}})
	if ans, err := readFrame(t, ws); err != nil || ans.Type != TypeResponse {
		t.Fatalf("auth answer %+v, %v", ans, err)
	}
	for _, junk := range [][]byte{{9, 0, 0, 0, 2, 2, 1, 0}, {6, 0, 0, 0, 3, 9}, {1}, {1, 0, 0, 0, 99, 2, 1, 0}} {
		if err := ws.Write(context.Background(), websocket.MessageBinary, junk); err != nil {
			t.Fatal(err)
		}
	}
	pkt, _ := prepare("test.x", "after junk").MarshalBinary()
	writeFrame(t, ws, &Frame{Type: TypeMessage, RequestID: 4, Protocols: []ProtocolData{{Name: "ilp", Data: pkt}}})
	ans, err := readFrame(t, ws)
	if err != nil || ans.RequestID != 4 || ans.Type != TypeResponse {
		t.Fatalf("first answer after junk = %+v, %v; want the Response to request 4", ans, err)
	}
	// An invalid ILP packet in a valid frame is answered with an F01 Reject in a Response.
	writeFrame(t, ws, &Frame{Type: TypeMessage, RequestID: 5, Protocols: []ProtocolData{{Name: "ilp", Data: []byte{12, 1, 0}}}})
	ans, err = readFrame(t, ws)
	if err != nil || ans.Type != TypeResponse {
		t.Fatalf("answer to a bad Prepare = %+v, %v", ans, err)
	}
	_, rej, err := ilp.ParseResponse(ans.Protocol("ilp").Data)
	if err != nil || rej == nil || rej.Code != ilp.CodeInvalidPacket || rej.TriggeredBy != testAddr {
		t.Errorf("answer to a bad Prepare = %+v, %v; want F01 from %s", rej, err, testAddr)
	}
}

func TestOversizedFrameClosesConnection(t *testing.T) {
	srv := startServer(t, 0, echo, nil)
	ws := rawDial(t, srv.Addr())
	writeFrame(t, ws, &Frame{Type: TypeMessage, RequestID: 1, Protocols: []ProtocolData{
		{Name: "auth", Data: []byte{}}, {Name: "auth_token", Data: []byte("s3cret")}}})
	if _, err := readFrame(t, ws); err != nil {
		t.Fatal(err)
	}
	_ = ws.Write(context.Background(), websocket.MessageBinary, make([]byte, MaxFrameSize+1))
	_, err := readFrame(t, ws)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("read after an oversized frame: %v; want close status 1009", err)
	}
}

func TestAuthTimeout(t *testing.T) {
	srv := startServer(t, 0, echo, func(o *PeerServerOptions) { o.AuthTimeout = 100 * time.Millisecond })
	ws := rawDial(t, srv.Addr())
	if _, err := readFrame(t, ws); err == nil {
		t.Error("a silent connection was not closed")
	}
	if srv.Connected() {
		t.Error("connected without auth")
	}
}

func TestParseServerURL(t *testing.T) {
	tests := []struct {
		in, ws, user, token string
		ok                  bool
	}{
		{"btp+ws://alice:tok@localhost:7768", "ws://localhost:7768", "alice", "tok", true},
		{"btp+wss://:tok@example.com/btp?x=1", "wss://example.com/btp?x=1", "", "tok", true},
		{"btp+ws://a%40b:p%2Fq@h:1/", "ws://h:1/", "a%40b", "p%2Fq", true},
		{"btp+ws://localhost:7768", "ws://localhost:7768", "", "", true},
		{"ws://alice:tok@localhost", "", "", "", false},
		{"btp+ws://", "", "", "", false},
		{"btp+ws://a b@h", "", "", "", false},
	}
	for _, tt := range tests {
		ws, user, token, err := parseServerURL(tt.in)
		if (err == nil) != tt.ok || ws != tt.ws || user != tt.user || token != tt.token {
			t.Errorf("parseServerURL(%q) = %q %q %q %v", tt.in, ws, user, token, err)
		}
		if err != nil && bytes.Contains([]byte(err.Error()), []byte("tok")) {
			t.Errorf("error %q leaks the token", err)
		}
	}
}

// TestTransferRefusedWithoutMoneyHandler: the connector builds its BTP links without a Money
// hook; such a link must not answer a Transfer with an empty Response ("paid") while nothing
// books the amount. ilp-plugin-btp (and mini-accounts) answer F00 NotAcceptedError.
func TestTransferRefusedWithoutMoneyHandler(t *testing.T) {
	srv := startServer(t, 0, echo, nil) // quiet(): Address and Logger only, as the connector
	ws := rawDial(t, srv.Addr())
	writeFrame(t, ws, &Frame{Type: TypeMessage, RequestID: 1, Protocols: []ProtocolData{
		{Name: "auth", Data: []byte{}}, {Name: "auth_token", Data: []byte("s3cret")}}})
	if ans, err := readFrame(t, ws); err != nil || ans.Type != TypeResponse {
		t.Fatalf("auth answer %+v, %v", ans, err)
	}
	writeFrame(t, ws, &Frame{Type: TypeTransfer, RequestID: 2, Amount: 1000000,
		Protocols: []ProtocolData{{Name: "paychan", Data: []byte{1}}}})
	ans, err := readFrame(t, ws)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Type != TypeError || ans.RequestID != 2 || ans.Code != "F00" || ans.Name != "NotAcceptedError" {
		t.Fatalf("Transfer with no money handler answered %+v; want a BTP Error F00 NotAcceptedError", ans)
	}
}

// dialNoRead opens a raw WebSocket with a tiny receive buffer; the caller never reads from it
// after the auth answer.
func dialNoRead(t *testing.T, addr net.Addr) (*websocket.Conn, *net.TCPConn) {
	t.Helper()
	var tcp *net.TCPConn
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, a)
		if err == nil {
			tcp = c.(*net.TCPConn)
			_ = tcp.SetReadBuffer(4096)
		}
		return c, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr.String()+"/", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	t.Cleanup(func() { _ = tcp.Close() })
	return ws, tcp
}

// stalledChild starts a ChildServer (with mod applied), connects a child that sends n
// Prepares whose 32 kB answers the server writes only once all n handlers run, and then
// reads nothing: the server's writes fill every buffer and block. It returns the server and
// the child's connection as the server sees it.
func stalledChild(t *testing.T, n int, mod func(*ChildServerOptions)) (*ChildServer, *conn) {
	t.Helper()
	var entered atomic.Int32
	gate := make(chan struct{})
	big := make([]byte, 32000)
	srv := startChildServer(t, func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if entered.Add(1) == int32(n) {
			close(gate)
		}
		<-gate
		return &ilp.Fulfill{Fulfillment: preimage, Data: big}, nil
	}, mod)
	ws, _ := dialNoRead(t, srv.Addr())
	writeFrame(t, ws, &Frame{Type: TypeMessage, RequestID: 1, Protocols: []ProtocolData{
		{Name: "auth", Data: []byte{}}, {Name: "auth_token", Data: []byte("child")}}})
	if ans, err := readFrame(t, ws); err != nil || ans.Type != TypeResponse {
		t.Fatalf("auth answer %+v, %v", ans, err)
	}
	srv.mu.RLock()
	cn := srv.children[TokenAccount([]byte("child"))][0]
	srv.mu.RUnlock()
	pkt, _ := prepare("test.elsewhere", "x").MarshalBinary()
	for i := range n {
		writeFrame(t, ws, &Frame{Type: TypeMessage, RequestID: uint32(100 + i), Protocols: []ProtocolData{{Name: "ilp", Data: pkt}}})
	}
	// n answers of 32 kB are far more than the socket buffers and maxPending take, so most
	// handlers stay blocked writing for as long as the connection lives.
	testwait.Eventually(t, "every handler entered", 4000, func() bool { return entered.Load() == int32(n) })
	return srv, cn
}

// closeWithin runs Close and fails the test if it does not return in 20 s (a failure bound,
// not a measure: it returns in a few seconds).
func closeWithin(t *testing.T, srv *ChildServer) {
	t.Helper()
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("ChildServer.Close did not return in 20 s with a child that stopped reading")
	}
}

// TestStalledPeerIsDropped: a child that stops reading blocks every writer of its connection
// (answers, pings); the socket's write timeout or the pinger must drop it, and Close return.
func TestStalledPeerIsDropped(t *testing.T) {
	srv, _ := stalledChild(t, 600, func(o *ChildServerOptions) { o.PingInterval = time.Second })
	// A working pinger or write deadline drops the child within a few ping periods.
	testwait.Eventually(t, "the stalled child dropped", 4000, func() bool { return !srv.Connected() })
	closeWithin(t, srv)
}

// TestSendToStalledPeerEndsAtDeadline: with the link wedged (and the pinger far away), a Send
// ends at its context's deadline instead of waiting for the write lock, and Close returns:
// its close handshake is bounded even though the close frame cannot be written.
func TestSendToStalledPeerEndsAtDeadline(t *testing.T) {
	srv, cn := stalledChild(t, 600, func(o *ChildServerOptions) { o.PingInterval = time.Hour })
	testwait.Eventually(t, "the answers' writes blocked", 4000, func() bool { return cn.inFlight.Load() < 600 })
	const sends = 20
	errs := make(chan error, sends)
	for range sends {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := srv.Send(ctx, prepare(cn.from+".x", ""))
			errs <- err
		}()
	}
	for range sends {
		select {
		case err := <-errs:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Send to a wedged child = %v, want context.DeadlineExceeded", err)
			}
		case <-time.After(20 * time.Second): // failure bound only
			t.Fatal("a Send to a wedged child did not end at its deadline")
		}
	}
	if !srv.Connected() {
		t.Error("child dropped: the test wants a wedged, still connected link")
	}
	closeWithin(t, srv)
}

// smallBufListener accepts connections with a small receive buffer, so that a peer that stops
// reading soon blocks the writer.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
	}
	return c, err
}

// TestClientSendToStalledServerEndsAtDeadline: the client-side twin of
// TestSendToStalledPeerEndsAtDeadline. A Client whose server answers the auth and then reads
// nothing (its socket buffers small, so the client's writes block): every Send ends at its
// context's deadline, not at the write deadline (a ping interval, an hour here).
func TestClientSendToStalledServerEndsAtDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, ws.AcceptOptions{})
		if err != nil {
			return
		}
		_, msg, err := c.Read(nil)
		if err != nil {
			return
		}
		var f Frame
		if err := ParseFrame(msg, &f); err != nil {
			return
		}
		b, _ := AppendFrame(nil, &Frame{Type: TypeResponse, RequestID: f.RequestID})
		_ = c.Write(ws.Binary, b)
		<-stop // read nothing more
		_ = c.CloseNow()
	})}
	go srv.Serve(smallBufListener{ln})
	t.Cleanup(func() { close(stop); srv.Close() })

	cl := startClient(t, "btp+ws://u:tok@"+ln.Addr().String()+"/", echo, func(o *ClientOptions) {
		o.PingInterval = time.Hour
	})
	const sends = 400
	data := strings.Repeat("x", 32000)
	errs := make(chan error, sends)
	for range sends {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := cl.Send(ctx, prepare("test.peer.x", data))
			errs <- err
		}()
	}
	deadline := time.After(20 * time.Second) // failure bound only
	for i := range sends {
		select {
		case <-errs:
		case <-deadline:
			t.Fatalf("%d of %d Sends to a stalled server still blocked 20 s past their 300 ms deadline", sends-i, sends)
		}
	}
}
