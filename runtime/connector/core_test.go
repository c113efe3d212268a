package connector

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ildcp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// coreConfig: alice is a USD child, bob an EUR peer, huge an asset of scale 18 (for overflow),
// down a peer whose link is disconnected.
const coreConfig = `
ilpAddress: test.c
env: test
backend: static
backendConfig: {base: EUR, rates: {USD: "1.25", EUR: "1"}}
spread: 0.01
minMessageWindow: 100
maxHoldTime: 30000
reflectPayments: false
accounts:
  alice:
    relation: child
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    balance: {maximum: "1000000"}
    options: {listener: {port: 7001, secret: s}}
  bob:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: EUR
    assetScale: 4
    maxPacketAmount: "5000000"
    balance: {minimum: "-100000000", maximum: "100000000"}
    options: {listener: {port: 7002, secret: s}}
  huge:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: EUR
    assetScale: 18
    options: {listener: {port: 7003, secret: s}}
  down:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: EUR
    assetScale: 4
    options: {listener: {port: 7004, secret: s}}
routes:
  - {targetPrefix: test.bob, peerId: bob}
  - {targetPrefix: test.huge, peerId: huge}
  - {targetPrefix: test.down, peerId: down}
  - {targetPrefix: test.alice-again, peerId: alice}
`

// bobRemote fulfills, except for destinations ending in .slow (never answers) and .reject.
func bobRemote(f *fulfiller) ilp.Handler {
	return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		switch {
		case strings.HasSuffix(string(p.Destination), ".slow"):
			<-ctx.Done()
			return nil, ctx.Err()
		case strings.HasSuffix(string(p.Destination), ".reject"):
			return nil, ilp.Rejectf(ilp.CodeFinalApplicationError, "test.bob", "no thanks")
		}
		return f.handle(ctx, p)
	}
}

func echoData(source string) []byte {
	d := append([]byte(nil), echoPrefix...)
	d = append(d, echoRequest)
	return ilp.AppendVarString(d, source)
}

func TestPacketOutcomes(t *testing.T) {
	clock := &fakeClock{}
	t0 := time.Now()
	clock.ns.Store(t0.UnixNano())
	c, ml := startMem(t, coreConfig, clock)
	bob := &fulfiller{}
	ml.get("bob").setRemote(bobRemote(bob))
	ml.get("huge").setRemote(bob.handle)
	ml.get("down").connected.Store(false)

	tests := []struct {
		name     string
		from     string
		p        *ilp.Prepare
		wantCode ilp.ErrorCode // "" means fulfilled
		wantMsg  string        // substring of the Reject message
		wantBy   ilp.Address   // triggeredBy; default test.c
		check    func(t *testing.T, f *ilp.Fulfill, r *ilp.Reject)
	}{
		{name: "forwarded with rate, spread and floor", from: "alice", p: prepare("test.bob.x", 7, t0, 10*time.Second),
			check: func(t *testing.T, _ *ilp.Fulfill, _ *ilp.Reject) {
				got := bob.lastPrepare()
				// 7 cents at 1 EUR = 1.25 USD, scale 2 → 4, spread 1 %: floor(7 × 79.2) = 554.
				if got.Amount != 554 || got.Destination != "test.bob.x" || got.ExecutionCondition != condition() {
					t.Errorf("next hop got %+v", got)
				}
				if want := t0.Add(10*time.Second - 100*time.Millisecond); !got.ExpiresAt.Equal(want) {
					t.Errorf("expiry %v, want source − minMessageWindow = %v", got.ExpiresAt, want)
				}
			}},
		{name: "expiry capped at maxHoldTime", from: "alice", p: prepare("test.bob.x", 100, t0, time.Minute),
			check: func(t *testing.T, _ *ilp.Fulfill, _ *ilp.Reject) {
				got := bob.lastPrepare()
				if got.Amount != 7920 || !got.ExpiresAt.Equal(t0.Add(30*time.Second)) {
					t.Errorf("next hop got amount %d expiry %v, want 7920 and now+30s", got.Amount, got.ExpiresAt)
				}
			}},
		{name: "no route", from: "alice", p: prepare("test.nowhere", 1, t0, 10*time.Second), wantCode: ilp.CodeUnreachable, wantMsg: "test.nowhere"},
		{name: "reflection refused", from: "alice", p: prepare("test.alice-again.x", 1, t0, 10*time.Second), wantCode: ilp.CodeUnreachable},
		{name: "wrong network", from: "alice", p: prepare("g.bob", 1, t0, 10*time.Second), wantCode: ilp.CodeUnreachable, wantMsg: "test network"},
		{name: "own address, no child", from: "bob", p: prepare("test.c.nobody", 1, t0, 10*time.Second), wantCode: ilp.CodeUnreachable},
		{name: "already expired", from: "alice", p: prepare("test.bob.x", 1, t0, -time.Second), wantCode: ilp.CodeInsufficientTimeout, wantMsg: "already expired"},
		{name: "too little time", from: "alice", p: prepare("test.bob.x", 1, t0, 150*time.Millisecond), wantCode: ilp.CodeInsufficientTimeout, wantMsg: "expires too soon"},
		{name: "next hop does not answer", from: "alice", p: prepare("test.bob.slow", 1, t0, 400*time.Millisecond), wantCode: ilp.CodeTransferTimedOut},
		{name: "next hop disconnected", from: "alice", p: prepare("test.down.x", 1, t0, 10*time.Second), wantCode: ilp.CodePeerUnreachable, wantMsg: "down"},
		{name: "next hop rejects", from: "alice", p: prepare("test.bob.reject", 1, t0, 10*time.Second), wantCode: ilp.CodeFinalApplicationError, wantBy: "test.bob"},
		{name: "rate overflow", from: "alice", p: prepare("test.huge.x", 10000, t0, 10*time.Second), wantCode: ilp.CodeAmountTooLarge,
			check: func(t *testing.T, _ *ilp.Fulfill, r *ilp.Reject) {
				got, max, err := ilp.ParseAmountTooLargeData(r.Data)
				if err != nil || got != 10000 || max == 0 || max >= 10000 {
					t.Errorf("F08 data: received %d maximum %d err %v", got, max, err)
				}
			}},
		{name: "maxPacketAmount", from: "bob", p: prepare("test.c.alice", 5000001, t0, 10*time.Second), wantCode: ilp.CodeAmountTooLarge,
			check: func(t *testing.T, _ *ilp.Fulfill, r *ilp.Reject) {
				if got, max, err := ilp.ParseAmountTooLargeData(r.Data); err != nil || got != 5000001 || max != 5000000 {
					t.Errorf("F08 data: %d %d %v", got, max, err)
				}
			}},
		{name: "peer.route with a payment condition", from: "bob", p: prepare("peer.route.control", 0, t0, 10*time.Second), wantCode: ilp.CodeWrongCondition, wantMsg: "peer protocol condition"},
		{name: "peer.config for a peer", from: "bob", p: ildcp.Request(t0.Add(10 * time.Second)), wantCode: ilp.CodeBadRequest, wantMsg: "only for child"},
		{name: "peer.config for a child", from: "alice", p: ildcp.Request(t0.Add(10 * time.Second)),
			check: func(t *testing.T, f *ilp.Fulfill, _ *ilp.Reject) {
				info, err := ildcp.ParseResponse(f)
				if err != nil || info.Address != "test.c.alice" || info.AssetCode != "USD" || info.AssetScale != 2 {
					t.Errorf("IL-DCP answer %+v %v", info, err)
				}
			}},
		{name: "echo", from: "alice", p: &ilp.Prepare{Amount: 100, ExpiresAt: t0.Add(10 * time.Second), ExecutionCondition: condition(),
			Destination: "test.c", Data: echoData("test.bob.echo")},
			check: func(t *testing.T, _ *ilp.Fulfill, _ *ilp.Reject) {
				got := bob.lastPrepare()
				want := append(append([]byte(nil), echoPrefix...), echoResponse)
				if got.Destination != "test.bob.echo" || string(got.Data) != string(want) || got.ExecutionCondition != condition() {
					t.Errorf("echo reply %+v", got)
				}
			}},
		{name: "echo response to us", from: "alice", p: &ilp.Prepare{Amount: 1, ExpiresAt: t0.Add(10 * time.Second),
			Destination: "test.c", Data: append(append([]byte(nil), echoPrefix...), echoResponse)}, wantCode: ilp.CodeInvalidPacket},
		{name: "above maximum balance", from: "alice", p: prepare("test.bob.x", 2000000, t0, 10*time.Second), wantCode: ilp.CodeInsufficientLiquidity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			f, err := ml.get(tt.from).inject(ctx, tt.p)
			var r *ilp.Reject
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("want a Fulfill, got %v", err)
				}
			} else {
				r = rejectOf(t, err)
				wantBy := tt.wantBy
				if wantBy == "" {
					wantBy = "test.c"
				}
				if r.Code != tt.wantCode || r.TriggeredBy != wantBy || !strings.Contains(r.Message, tt.wantMsg) {
					t.Fatalf("got %s by %s %q, want %s by %s containing %q", r.Code, r.TriggeredBy, r.Message, tt.wantCode, wantBy, tt.wantMsg)
				}
			}
			if tt.check != nil {
				tt.check(t, f, r)
			}
		})
	}

	// Balances: alice sent 7, 100 and 100 (echo) that were fulfilled; everything else was
	// refunded. Bob got 554 + 7920 + 7920 in EUR units, owed by us.
	ctx := context.Background()
	if b, _ := c.Balance(ctx, "alice"); b != 207 {
		t.Errorf("alice balance %d, want 207", b)
	}
	if b, _ := c.Balance(ctx, "bob"); b != -(554 + 7920 + 7920) {
		t.Errorf("bob balance %d, want %d", b, -(554 + 7920 + 7920))
	}
}

func TestRemovedAccountRefusesPackets(t *testing.T) {
	c, ml := startMem(t, coreConfig, nil)
	bob := ml.get("bob")
	a := (*c.accounts.Load())["bob"]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.drain(ctx, a, time.Second)
	_, err := bob.inject(ctx, prepare("test.c.alice", 1, time.Now(), 10*time.Second))
	if r := rejectOf(t, err); r.Code != ilp.CodePeerUnreachable || r.TriggeredBy != "test.c" {
		t.Errorf("got %v", r)
	}
	if !bob.closed.Load() {
		t.Error("link of a drained account is not closed")
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"store cannot open", "ilpAddress: test.x\nstore: redis\n", "needs a URL"},
		{"bad plugin options", "ilpAddress: test.x\naccounts: {a: {relation: peer, plugin: ilp-plugin-btp, assetCode: X, assetScale: 0, options: {bogus: 1}}}\n", "account a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.FromData([]byte(tt.doc), "test")
			if err == nil {
				_, err = New(cfg, Options{})
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestInheritAddressFromParent(t *testing.T) {
	ml := &memLinks{}
	up := &fulfiller{}
	parentInfo := ildcp.Handler(func() (ildcp.Info, error) {
		return ildcp.Info{Address: "test.up.me", AssetCode: "USD", AssetScale: 2}, nil
	})
	ml.setRemote("up", func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if p.Destination == ildcp.Destination {
			return parentInfo(ctx, p)
		}
		return up.handle(ctx, p)
	})
	doc := `
defaultRoute: auto
spread: 0
minMessageWindow: 100
accounts:
  up: {relation: parent, plugin: ilp-plugin-btp, assetCode: USD, assetScale: 2, options: {listener: {port: 7001, secret: s}}}
  kid: {relation: child, plugin: ilp-plugin-btp, assetCode: USD, assetScale: 2, options: {listener: {port: 7002, secret: s}}}
`
	c, err := New(mustConfig(t, doc), Options{newLink: ml.factory})
	if err != nil {
		t.Fatal(err)
	}
	if c.Address() != "" {
		t.Errorf("address %q before Start", c.Address())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if c.Address() != "test.up.me" {
		t.Fatalf("address %q, want test.up.me", c.Address())
	}
	f, err := ml.get("kid").inject(ctx, ildcp.Request(time.Now().Add(10*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := ildcp.ParseResponse(f); err != nil || info.Address != "test.up.me.kid" {
		t.Errorf("child's IL-DCP answer %+v %v", info, err)
	}
	if _, err := ml.get("kid").inject(ctx, prepare("test.elsewhere", 3, time.Now(), 10*time.Second)); err != nil || up.lastPrepare().Amount != 3 {
		t.Errorf("default route to the parent: %v", err)
	}
}

// TestInheritAddressFails: a parent that refuses IL-DCP, or gives an address of the other
// network (g. to a connector on the test network: refused at once, as a configured address of
// that network would be — test and live networks never mix), fails Start with a message that
// says so, asked as often as it takes to know, and the parent's link is closed.
func TestInheritAddressFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(*atomic.Int32) ilp.Handler
		want   []string
		asked  int32 // 0: any number
	}{
		{"refused", func(asked *atomic.Int32) ilp.Handler {
			return func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
				asked.Add(1)
				return nil, ilp.Rejectf(ilp.CodeBadRequest, "test.up", "not for you")
			}
		}, []string{"IL-DCP"}, 0},
		{"other network", func(asked *atomic.Int32) ilp.Handler {
			return ildcp.Handler(func() (ildcp.Info, error) {
				asked.Add(1)
				return ildcp.Info{Address: "g.up.me", AssetCode: "USD", AssetScale: 2}, nil
			})
		}, []string{"g.up.me", `env "test"`}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ml := &memLinks{}
			var asked atomic.Int32
			ml.setRemote("up", tc.answer(&asked))
			doc := "accounts:\n  up: {relation: parent, plugin: ilp-plugin-btp, assetCode: USD, assetScale: 2, options: {listener: {port: 7001, secret: s}}}\ninitialConnectTimeout: 300\n"
			c, err := New(mustConfig(t, doc), Options{newLink: ml.factory})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = c.Start(ctx)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Start: %v; want an error naming %q", err, w)
				}
			}
			if c.Address() != "" || tc.asked != 0 && asked.Load() != tc.asked {
				t.Errorf("address %q after %d IL-DCP requests; want none, asked %d", c.Address(), asked.Load(), tc.asked)
			}
			if !ml.get("up").closed.Load() {
				t.Error("parent link left open after a failed Start")
			}
		})
	}
}

// The echo response keeps the request's expiry, which forward then shortens once by
// minMessageWindow as for any packet (JS v23: the echo middleware passes expiresAt on and the
// route builder shortens it).
func TestEchoResponseExpiry(t *testing.T) {
	clock := &fakeClock{}
	t0 := time.Now()
	clock.ns.Store(t0.UnixNano())
	_, ml := startMem(t, coreConfig, clock)
	bob := &fulfiller{}
	ml.get("bob").setRemote(bobRemote(bob))
	p := &ilp.Prepare{Amount: 1, ExpiresAt: t0.Add(10 * time.Second), ExecutionCondition: condition(),
		Destination: "test.c", Data: echoData("test.bob.echo")}
	if _, err := ml.get("alice").inject(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if got, want := bob.lastPrepare().ExpiresAt, t0.Add(10*time.Second-100*time.Millisecond); !got.Equal(want) {
		t.Fatalf("echo response expires %v before the request, want one minMessageWindow (100ms)", p.ExpiresAt.Sub(got))
	}
}

// A sender that stops waiting (an ILP-over-HTTP client that disconnects, which cancels the
// link's ctx) must not make us stop waiting for the next hop: a Fulfill it sends later is
// still ours to pass on and to book, since the next hop counts it paid.
func TestUpstreamCancelKeepsWaitingForNextHop(t *testing.T) {
	c, ml := startMem(t, coreConfig, nil)
	entered, release := make(chan uint64, 1), make(chan struct{})
	gaveUp := make(chan struct{}, 1)
	ml.get("bob").setRemote(func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		if p.Destination != "test.bob.late" {
			return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.bob", "only test.bob.late")
		}
		entered <- p.Amount
		select {
		case <-release:
		case <-ctx.Done(): // a real link stops waiting; the peer fulfills all the same
			gaveUp <- struct{}{}
			<-release
			return nil, ctx.Err()
		}
		return &ilp.Fulfill{Fulfillment: preimage}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := ml.get("alice").inject(ctx, prepare("test.bob.late", 100, time.Now(), 10*time.Second))
		res <- err
	}()
	sent := <-entered
	cancel()
	select {
	case <-gaveUp:
		t.Error("the sender's cancel reached the wait for the next hop")
	case <-time.After(100 * time.Millisecond): // not a timing assertion: only a chance to fail
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("the next hop fulfilled, but we answered %v", err)
	}
	b, err := c.store.Get(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if want := -int64(sent); b.Balance != want || b.Pending != 0 {
		t.Fatalf("bob's books: %+v, want balance %d (the Fulfill paid) and nothing pending", b, want)
	}
}

// TestPacketContext: a packet's context keeps the link context's values but not its
// cancellation, for itself, for contexts derived from it and for context.Cause; the
// connector's lifetime ends it.
func TestPacketContext(t *testing.T) {
	type key struct{}
	link, cancelLink := context.WithCancelCause(context.WithValue(context.Background(), key{}, "v"))
	life, endLife := context.WithCancel(context.Background())
	ctx := packetContext(link, life)
	derived, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	cancelLink(errors.New("sender gone"))
	if ctx.Err() != nil || derived.Err() != nil || context.Cause(ctx) != nil || context.Cause(derived) != nil {
		t.Fatalf("the link's cancellation shows through: %v %v %v %v", ctx.Err(), derived.Err(), context.Cause(ctx), context.Cause(derived))
	}
	if ctx.Value(key{}) != "v" || derived.Value(key{}) != "v" {
		t.Error("the link context's values are lost")
	}
	endLife()
	<-derived.Done()
	if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(context.Cause(derived), context.Canceled) {
		t.Errorf("after the lifetime: %v, cause %v", ctx.Err(), context.Cause(derived))
	}
}
