package connector

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ildcp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Connector A (test.a) has children in USD scale 2 and peer b in EUR scale 4, with a 1 % spread;
// connector B (test.b) has peer a in EUR scale 4 and children in EUR scale 6. One EUR is 1.25 USD.
const configA = `
ilpAddress: test.a
backend: static
backendConfig: {base: EUR, rates: {USD: "1.25", EUR: "1"}}
spread: 0.01
minMessageWindow: 100
initialConnectTimeout: 5000
reflectPayments: false
accounts:
  b:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: EUR
    assetScale: 4
    balance: {minimum: "-1000000000000", maximum: "1000000000000"}
    options: {server: "btp+ws://a:secret@127.0.0.1:%PB%"}
  kids:
    relation: child
    plugin: ilp-plugin-mini-accounts
    assetCode: USD
    assetScale: 2
    balance: {maximum: "9000000000000000000"}
    options: {wsOpts: {host: 127.0.0.1, port: %PKA%}}
routes:
  - {targetPrefix: test.b, peerId: b}
`

const configB = `
ilpAddress: test.b
backend: static
backendConfig: {base: EUR, rates: {USD: "1.25", EUR: "1"}}
spread: 0
minMessageWindow: 100
accounts:
  a:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: EUR
    assetScale: 4
    maxPacketAmount: "1000000000"
    balance: {minimum: "-1000000000000", maximum: "1000000000000"}
    options: {listener: {host: 127.0.0.1, port: %PB%, secret: secret}}
  kids:
    relation: child
    plugin: ilp-plugin-mini-accounts
    assetCode: EUR
    assetScale: 6
    balance: {maximum: "1000000000000"}
    options: {wsOpts: {host: 127.0.0.1, port: %PKB%}}
routes:
  - {targetPrefix: test.a, peerId: a}
`

type pair struct {
	a, b       *Connector
	pb, pka    int
	alice, bob *btp.Client
	bobF       *fulfiller
}

func startBTP(t *testing.T, doc string, ports map[string]int) *Connector {
	t.Helper()
	for k, v := range ports {
		doc = strings.ReplaceAll(doc, "%"+k+"%", itoa(v))
	}
	return start(t, doc, Options{})
}

func child(t *testing.T, port int, name string, h ilp.Handler) *btp.Client {
	t.Helper()
	cl, err := btp.NewClient(btp.ClientOptions{Server: "btp+ws://" + name + ":tok-" + name + "@127.0.0.1:" + itoa(port),
		Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Start(ctx, h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func startPair(t *testing.T) *pair {
	p := &pair{bobF: &fulfiller{}}
	ports := map[string]int{"PB": freePort(t), "PKA": freePort(t), "PKB": freePort(t)}
	p.pb, p.pka = ports["PB"], ports["PKA"]
	p.b = startBTP(t, configB, ports)
	p.a = startBTP(t, configA, ports)
	if !p.a.Connected("b") {
		t.Fatal("A's peer link to B is not up after Start")
	}
	p.bob = child(t, ports["PKB"], "bob", bobRemote(p.bobF))
	p.alice = child(t, p.pka, "alice", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.a.kids.alice", "alice takes no payments")
	})
	// The BTP servers register a child just after answering its auth, so the child's Start
	// may return a moment before the server counts it as connected.
	waitFor(t, func() bool { return p.a.Connected("kids") && p.b.Connected("kids") && p.b.Connected("a") })
	return p
}

type balances map[string]int64

func (p *pair) balances(t *testing.T) balances {
	t.Helper()
	ctx := context.Background()
	out := balances{}
	for name, c := range map[string]*Connector{"A": p.a, "B": p.b} {
		bs, err := c.Balances(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for id, b := range bs {
			out[name+"."+id] = b.Balance
		}
	}
	return out
}

func TestTwoConnectorsOverBTP(t *testing.T) {
	p := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	info, err := ildcp.Fetch(ctx, p.alice.Send)
	if err != nil || info.Address != "test.a.kids.alice" || info.AssetCode != "USD" || info.AssetScale != 2 {
		t.Fatalf("alice's IL-DCP: %+v %v", info, err)
	}

	steps := []struct {
		name       string
		dest       string
		amount     uint64
		expiry     time.Duration
		wantCode   ilp.ErrorCode
		wantBy     ilp.Address
		wantAmount uint64 // at bob
		want       balances
	}{
		// 100 cents × 79.2 = 7920 EUR units of scale 4 at B, × 100 = 792000 at scale 6.
		{name: "fulfil", dest: "test.b.kids.bob", amount: 100, expiry: 10 * time.Second, wantAmount: 792000,
			want: balances{"A.kids": 100, "A.b": -7920, "B.a": 7920, "B.kids": -792000}},
		// floor(7 × 79.2) = 554, then × 100.
		{name: "floor", dest: "test.b.kids.bob", amount: 7, expiry: 10 * time.Second, wantAmount: 55400,
			want: balances{"A.kids": 107, "A.b": -8474, "B.a": 8474, "B.kids": -847400}},
		{name: "reject", dest: "test.b.kids.bob.reject", amount: 50, expiry: 10 * time.Second, wantCode: ilp.CodeFinalApplicationError, wantBy: "test.bob",
			want: balances{"A.kids": 107, "A.b": -8474, "B.a": 8474, "B.kids": -847400}},
		{name: "timeout", dest: "test.b.kids.bob.slow", amount: 50, expiry: 600 * time.Millisecond, wantCode: ilp.CodeTransferTimedOut,
			want: balances{"A.kids": 107, "A.b": -8474, "B.a": 8474, "B.kids": -847400}},
		{name: "no route", dest: "test.nowhere", amount: 1, expiry: 10 * time.Second, wantCode: ilp.CodeUnreachable, wantBy: "test.a"},
		{name: "no route at B", dest: "test.b.nobody", amount: 1, expiry: 10 * time.Second, wantCode: ilp.CodeUnreachable, wantBy: "test.b"},
		{name: "reflect off", dest: "test.a.kids.carol", amount: 1, expiry: 10 * time.Second, wantCode: ilp.CodeUnreachable, wantBy: "test.a"},
		{name: "too little time", dest: "test.b.kids.bob", amount: 1, expiry: 150 * time.Millisecond, wantCode: ilp.CodeInsufficientTimeout, wantBy: "test.a"},
		// 20 000 000 cents become 1 584 000 000 at B, above its maxPacketAmount of 10^9.
		{name: "maxPacketAmount at B", dest: "test.b.kids.bob", amount: 20000000, expiry: 10 * time.Second, wantCode: ilp.CodeAmountTooLarge, wantBy: "test.b"},
		{name: "rate overflow at A", dest: "test.b.kids.bob", amount: 300000000000000000, expiry: 10 * time.Second, wantCode: ilp.CodeAmountTooLarge, wantBy: "test.a"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := p.bobF.n.Load()
			pr := prepare(s.dest, s.amount, time.Now(), s.expiry)
			// Distinct data, or A's dedupe cache could answer a repeat of the same packet.
			pr.Data = []byte(s.name)
			f, err := p.alice.Send(ctx, pr)
			if s.wantCode == "" {
				if err != nil || f == nil || f.Fulfillment != preimage {
					t.Fatalf("want the Fulfill, got %v %v", f, err)
				}
				if got := p.bobF.lastPrepare(); p.bobF.n.Load() != before+1 || got.Amount != s.wantAmount {
					t.Errorf("bob got %d, want %d", got.Amount, s.wantAmount)
				}
			} else if r := rejectOf(t, err); r.Code != s.wantCode || (s.wantBy != "" && r.TriggeredBy != s.wantBy) {
				t.Fatalf("got %s by %s %q, want %s by %s", r.Code, r.TriggeredBy, r.Message, s.wantCode, s.wantBy)
			} else if r.Code == ilp.CodeAmountTooLarge {
				if got, max, err := ilp.ParseAmountTooLargeData(r.Data); err != nil || got == 0 || max == 0 {
					t.Errorf("F08 without usable data: %d %d %v", got, max, err)
				}
			}
			if s.want != nil {
				if got := p.balances(t); !sameBalances(got, s.want) {
					t.Errorf("balances %v, want %v", got, s.want)
				}
			}
		})
	}

	t.Run("malformed prepare then still working", func(t *testing.T) {
		r := sendRaw(t, ctx, p.pka, []byte{ilp.TypePrepare, 3, 1, 2, 3})
		if r.Code != ilp.CodeInvalidPacket || r.TriggeredBy != "test.a" {
			t.Errorf("malformed Prepare answered %s by %s %q", r.Code, r.TriggeredBy, r.Message)
		}
		if _, err := p.alice.Send(ctx, prepare("test.b.kids.bob", 1, time.Now(), 10*time.Second)); err != nil {
			t.Errorf("after a malformed Prepare: %v", err)
		}
	})

	t.Run("next hop disconnected", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := p.b.Close(cctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return !p.a.Connected("b") })
		_, err := p.alice.Send(ctx, prepare("test.b.kids.bob", 1, time.Now(), 10*time.Second))
		if r := rejectOf(t, err); r.Code != ilp.CodePeerUnreachable || r.TriggeredBy != "test.a" || !strings.Contains(r.Message, "account b") {
			t.Errorf("got %s by %s %q", r.Code, r.TriggeredBy, r.Message)
		}
	})
}

func sameBalances(got, want balances) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// sendRaw connects to a mini-accounts server as a new child and sends one ILP payload as is.
func sendRaw(t *testing.T, ctx context.Context, port int, payload []byte) *ilp.Reject {
	t.Helper()
	p := dialRaw(t, ctx, port, "mallory", "tok")
	defer p.ws.CloseNow()
	p.write(&btp.Frame{Type: btp.TypeMessage, RequestID: 2, Protocols: []btp.ProtocolData{
		{Name: btp.ProtocolILP, ContentType: btp.ContentOctetStream, Data: payload},
	}})
	f := p.read()
	d := f.Protocol(btp.ProtocolILP)
	if f.Type != btp.TypeResponse || d == nil {
		t.Fatalf("answer frame type %d without ilp data", f.Type)
	}
	_, r, err := ilp.ParseResponse(d.Data)
	if err != nil || r == nil {
		t.Fatalf("answer is not a Reject: %v", err)
	}
	return r
}

// rawPeer is a BTP connection made by hand, for frames the btp package would not send.
type rawPeer struct {
	t   *testing.T
	ctx context.Context
	ws  *websocket.Conn
}

// dialRaw connects to the BTP server on port and authenticates with username (none when "")
// and token; the connection closes when the test ends.
func dialRaw(t *testing.T, ctx context.Context, port int, username, token string) *rawPeer {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://127.0.0.1:"+itoa(port), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	p := &rawPeer{t, ctx, ws}
	auth := []btp.ProtocolData{{Name: btp.ProtocolAuth, ContentType: btp.ContentOctetStream, Data: []byte{}}}
	if username != "" {
		auth = append(auth, btp.ProtocolData{Name: btp.ProtocolAuthUsername, ContentType: btp.ContentText, Data: []byte(username)})
	}
	auth = append(auth, btp.ProtocolData{Name: btp.ProtocolAuthToken, ContentType: btp.ContentText, Data: []byte(token)})
	p.write(&btp.Frame{Type: btp.TypeMessage, RequestID: 1, Protocols: auth})
	if f := p.read(); f.Type != btp.TypeResponse {
		t.Fatalf("auth answered with frame type %d", f.Type)
	}
	return p
}

func (p *rawPeer) write(f *btp.Frame) {
	p.t.Helper()
	b, err := btp.AppendFrame(nil, f)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.ws.Write(p.ctx, websocket.MessageBinary, b); err != nil {
		p.t.Fatal(err)
	}
}

func (p *rawPeer) read() *btp.Frame {
	p.t.Helper()
	_, b, err := p.ws.Read(p.ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	var f btp.Frame
	if err := btp.ParseFrame(b, &f); err != nil {
		p.t.Fatal(err)
	}
	return &f
}

func TestReloadOverBTPWhileSending(t *testing.T) {
	p := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 100000 {
			select {
			case <-stop:
				return
			default:
			}
			pr := prepare("test.b.kids.bob", 1, time.Now(), 10*time.Second)
			pr.Data = []byte(itoa(i)) // distinct, so that no dedupe cache answers it
			if _, err := p.alice.Send(ctx, pr); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
			sent.Add(1)
		}
	})
	waitFor(t, func() bool { return sent.Load() >= 50 })

	base := strings.NewReplacer("%PB%", itoa(p.pb), "%PKA%", itoa(p.pka)).Replace(configA)
	kids2 := "  kids2:\n    relation: child\n    plugin: ilp-plugin-mini-accounts\n    assetCode: USD\n    assetScale: 2\n    options: {wsOpts: {host: 127.0.0.1, port: " + itoa(freePort(t)) + "}}\nroutes:"
	added := strings.Replace(strings.Replace(base, `maximum: "9000000000000000000"`, `maximum: "9100000000000000000"`, 1), "routes:", kids2, 1)
	steps := []string{added, base} // add kids2 and raise a limit, then remove kids2
	for i, doc := range steps {
		if err := p.a.Apply(ctx, mustConfig(t, doc)); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
		n := sent.Load()
		waitFor(t, func() bool { return sent.Load() >= n+50 })
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d packets failed during the reloads; first: %v", n, sent.Load(), firstErr.Load())
	}
	if got := p.balances(t)["A.kids"]; got != sent.Load() {
		t.Errorf("A.kids balance %d after %d packets of 1", got, sent.Load())
	}
	if len(p.a.Accounts()) != 2 {
		t.Errorf("accounts after removing kids2: %+v", p.a.Accounts())
	}
}
