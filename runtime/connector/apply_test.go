package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

const reloadBase = `
ilpAddress: test.c
backend: one-to-one
spread: 0
minMessageWindow: 100
accounts:
  alice:
    relation: child
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    balance: {maximum: "%MAX%"}
    # TestApplyWhileSending sends as fast as it can: more than the default 10000 per second.
    rateLimit: {refillPeriod: 1000, refillCount: 1000000000000, capacity: 1000000000000}
    options: {listener: {port: 7001, secret: s}}
  bob:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    options: {listener: {port: 7002, secret: %BOBSECRET%}}
%EXTRA%
routes:
  - {targetPrefix: test.bob, peerId: bob}
%ROUTES%
`

func reloadConfig(max, bobSecret, extra, routes string) string {
	return strings.NewReplacer("%MAX%", max, "%BOBSECRET%", bobSecret, "%EXTRA%", extra, "%ROUTES%", routes).Replace(reloadBase)
}

const spareAccount = `  spare:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    options: {listener: {port: 7003, secret: s}}`

const carolAccount = `  carol:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    options: {listener: {port: 7004, secret: s}}`

func TestApplyWhileSending(t *testing.T) {
	ml := &memLinks{}
	bob, carol := &fulfiller{}, &fulfiller{}
	ml.setRemote("bob", bob.handle)
	ml.setRemote("carol", carol.handle)
	c := start(t, reloadConfig("100000", "s", spareAccount, ""), Options{newLink: ml.factory})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := ml.get("alice")

	// The sender keeps packets flowing (bounded) until told to stop.
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200000 {
			select {
			case <-stop:
				return
			default:
			}
			pr := prepare("test.bob.x", 1, time.Now(), 10*time.Second)
			pr.Data = []byte(itoa(i)) // distinct, so that no dedupe cache answers it
			_, err := alice.inject(ctx, pr)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
			sent.Add(1)
		}
	})
	waitFor(t, func() bool { return sent.Load() >= 100 })

	next := mustConfig(t, reloadConfig("10000000", "s", carolAccount, "  - {targetPrefix: test.carol, peerId: carol}"))
	if err := c.Apply(ctx, next); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	after := sent.Load()
	waitFor(t, func() bool { return sent.Load() >= after+100 })

	// An invalid config is refused while packets keep flowing.
	bad := mustConfig(t, reloadConfig("10000000", "s", carolAccount, ""))
	bad.Routes = append(bad.Routes, bad.Routes[0])
	bad.Routes[1].PeerID = "nobody"
	if err := c.Apply(ctx, bad); err == nil {
		t.Error("Apply accepted a route to an unknown account")
	}
	if c.Config() != next {
		t.Error("the running config changed after a refused Apply")
	}
	close(stop)
	wg.Wait()

	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d packets failed during the reload; first: %v", n, sent.Load(), firstErr.Load())
	}
	// The balance was not reset by the limit change, and the new limit is in force: the
	// packet below would have passed the old maximum of 100000.
	total := sent.Load()
	if b, _ := c.Balance(ctx, "alice"); b != total {
		t.Errorf("alice balance %d, want %d (one per packet)", b, total)
	}
	if _, err := alice.inject(ctx, prepare("test.bob.x", 100000, time.Now(), 10*time.Second)); err != nil {
		t.Errorf("packet within the raised limit: %v", err)
	}
	if _, err := alice.inject(ctx, prepare("test.carol.x", 5, time.Now(), 10*time.Second)); err != nil || carol.n.Load() != 1 {
		t.Errorf("packet to the added account: %v (carol got %d)", err, carol.n.Load())
	}
	if !ml.get("spare").closed.Load() || c.Connected("spare") {
		t.Error("removed account's link is still open")
	}
	for _, a := range c.Accounts() {
		if a.ID == "spare" {
			t.Error("removed account still listed")
		}
	}
	if _, err := alice.inject(ctx, prepare("test.spare.x", 1, time.Now(), 10*time.Second)); rejectOf(t, err).Code != ilp.CodeUnreachable {
		t.Errorf("packet to a removed account: %v", err)
	}
}

func TestApplyReconnectsChangedLink(t *testing.T) {
	ml := &memLinks{}
	bob := &fulfiller{}
	ml.setRemote("bob", bob.handle)
	c := start(t, reloadConfig("100000", "s", "", ""), Options{newLink: ml.factory})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	oldBob, oldAlice := ml.get("bob"), ml.get("alice")
	if err := c.Apply(ctx, mustConfig(t, reloadConfig("200000", "s2", "", ""))); err != nil {
		t.Fatal(err)
	}
	if !oldBob.closed.Load() || ml.get("bob") == oldBob || !ml.get("bob").Connected() {
		t.Error("bob's link was not replaced after its options changed")
	}
	if oldAlice.closed.Load() || ml.get("alice") != oldAlice {
		t.Error("alice's link was replaced though only her limits changed")
	}
	if _, err := oldAlice.inject(ctx, prepare("test.bob.x", 1, time.Now(), 10*time.Second)); err != nil || bob.n.Load() != 1 {
		t.Errorf("packet over the new link: %v", err)
	}
}

func TestApplyRefusesRestartSettings(t *testing.T) {
	c, _ := startMem(t, reloadConfig("100000", "s", "", ""), nil)
	next := mustConfig(t, reloadConfig("100000", "s", "", ""))
	next.ILPAddress = "test.other"
	err := c.Apply(context.Background(), next)
	if err == nil || !strings.Contains(err.Error(), "ilpAddress") {
		t.Errorf("got %v, want a refusal naming ilpAddress", err)
	}
	if c.Address() != "test.c" {
		t.Errorf("address changed to %s", c.Address())
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, "condition", 2000, cond)
}

func TestApplyRefusesAccountThatCannotStart(t *testing.T) {
	ml := &memLinks{broken: map[string]bool{"carol": true}}
	c := start(t, reloadConfig("100000", "s", spareAccount, ""), Options{newLink: ml.factory})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	running := c.Config()
	// Adds carol (whose link cannot start), removes spare and raises alice's limit: none of
	// it may happen.
	err := c.Apply(ctx, mustConfig(t, reloadConfig("200000", "s", carolAccount, "  - {targetPrefix: test.carol, peerId: carol}")))
	if err == nil || !strings.Contains(err.Error(), "carol") || !strings.Contains(err.Error(), "keeping the running one") {
		t.Fatalf("Apply: %v", err)
	}
	// The Kubernetes source leaves out the accounts it names and applies the rest.
	var lse *LinkStartError
	if !errors.As(err, &lse) || !slices.Equal(lse.IDs(), []string{"carol"}) {
		t.Errorf("Apply: %v; want a *LinkStartError naming carol alone", err)
	}
	if c.Config() != running || !c.Connected("spare") || ml.get("spare").closed.Load() {
		t.Error("a refused config was partly applied")
	}
	if !ml.get("carol").closed.Load() {
		t.Error("the link of the refused account was left open")
	}
	if bs, _ := c.Balances(ctx); *bs["alice"].Maximum != 100000 {
		t.Errorf("alice's maximum changed to %d", *bs["alice"].Maximum)
	}
}

// TestApplyRefusesAnEngineWithoutItsAPI: the first account with a settlement engine needs the
// settlement API; a reload whose API port is taken is refused like the same config at start,
// instead of putting an engine in force with nowhere to report incoming settlements.
func TestApplyRefusesAnEngineWithoutItsAPI(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	c, _ := startMem(t, reloadConfig("100000", "s", "", ""), nil)
	running := c.Config()
	next := mustConfig(t, reloadConfig("100000", "s", "", "")+
		fmt.Sprintf("settlementApiHost: 127.0.0.1\nsettlementApiPort: %d\n", taken.Addr().(*net.TCPAddr).Port))
	bob := next.Accounts["bob"]
	bob.SettlementEngine = &config.SettlementEngine{URL: "http://127.0.0.1:1"}
	next.Accounts["bob"] = bob
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Apply(ctx, next)
	if err == nil || !strings.Contains(err.Error(), "settlement API") || !strings.Contains(err.Error(), "keeping the running one") {
		t.Errorf("Apply: %v; want a refusal naming the settlement API", err)
	}
	if c.Config() != running {
		t.Error("the running config was replaced")
	}
}

// TestApplySwapsPorts: two accounts that swap their ports in one reload both come back: no new
// link starts before every replaced link is closed (each would find its port taken).
func TestApplySwapsPorts(t *testing.T) {
	ml := &memLinks{}
	c := start(t, reloadConfig("100000", "s", "", ""), Options{newLink: ml.factory})
	oldAlice, oldBob := ml.get("alice"), ml.get("bob")
	var early atomic.Int64
	checkClosed := func(ilp.Handler) {
		if !oldAlice.closed.Load() || !oldBob.closed.Load() {
			early.Add(1)
		}
	}
	ml.mu.Lock()
	ml.onStart = map[string]func(ilp.Handler){"alice": checkClosed, "bob": checkClosed}
	ml.mu.Unlock()
	swapped := strings.NewReplacer("port: 7001", "port: 7002", "port: 7002", "port: 7001").Replace(reloadConfig("100000", "s", "", ""))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Apply(ctx, mustConfig(t, swapped)); err != nil {
		t.Fatal(err)
	}
	if ml.get("alice") == oldAlice || ml.get("bob") == oldBob {
		t.Fatal("the links were not replaced")
	}
	if n := early.Load(); n != 0 {
		t.Errorf("%d new links started while a replaced link still held its port", n)
	}
	if !c.Connected("alice") || !c.Connected("bob") {
		t.Error("an account is down after the swap")
	}
}

// TestApplyReconnectsWithoutWaitingForOtherDrains: a reconnected account's new link starts
// while a removed account on another port still drains a packet in flight.
func TestApplyReconnectsWithoutWaitingForOtherDrains(t *testing.T) {
	ml := &memLinks{}
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	ml.setRemote("spare", func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		entered <- struct{}{}
		<-release
		return &ilp.Fulfill{Fulfillment: preimage}, nil
	})
	c := start(t, reloadConfig("100000", "s", spareAccount, "  - {targetPrefix: test.spare, peerId: spare}"), Options{newLink: ml.factory})
	done := sync.OnceFunc(func() { close(release) })
	t.Cleanup(done) // before the connector's Close (cleanups run last first), even on failure
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() { _, _ = ml.get("alice").inject(ctx, prepare("test.spare.x", 1, time.Now(), 15*time.Second)) }()
	<-entered // a packet in flight on spare: its drain waits for it
	oldBob := ml.get("bob")
	applied := make(chan error, 1)
	go func() { applied <- c.Apply(ctx, mustConfig(t, reloadConfig("100000", "s2", "", ""))) }() // spare removed, bob reconnected
	waitFor(t, func() bool { b := ml.get("bob"); return b != oldBob && b.Connected() })
	done()
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
}

// refusedBase runs alice with wide limits; the refused configs below change one of them and add
// carol, whose link cannot start, so Apply refuses them after building every pipeline.
const refusedBase = `
ilpAddress: test.c
backend: one-to-one
spread: 0
minMessageWindow: 100
accounts:
  alice:
    relation: child
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    rateLimit: {refillPeriod: 3600000, refillCount: 1000, capacity: 1000}
    throughput: {refillPeriod: 3600000, incomingAmount: "1000000"}
    options: {listener: {port: 7001, secret: s}}
  bob:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    options: {listener: {port: 7002, secret: s}}
%EXTRA%
routes:
  - {targetPrefix: test.bob, peerId: bob}
`

// startRefused starts refusedBase and applies it with change made and carol added, which must
// be refused; it returns alice's link as it was before (a reconnect makes a new one).
func startRefused(t *testing.T, change func(string) string) (*Connector, *memLink) {
	t.Helper()
	ml := &memLinks{broken: map[string]bool{"carol": true}}
	var f fulfiller
	ml.setRemote("bob", bobRemote(&f))
	c := start(t, strings.ReplaceAll(refusedBase, "%EXTRA%", ""), Options{newLink: ml.factory})
	alice := ml.get("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad := change(strings.ReplaceAll(refusedBase, "%EXTRA%", carolAccount))
	if err := c.Apply(ctx, mustConfig(t, bad)); err == nil || !strings.Contains(err.Error(), "keeping the running one") {
		t.Fatalf("Apply: %v", err)
	}
	return c, alice
}

// A refused Apply leaves the running limits in force: building the new pipelines must not
// reconfigure the token buckets they share with the running ones.
func TestRefusedApplyKeepsRunningLimits(t *testing.T) {
	tests := []struct {
		name   string
		change func(string) string
	}{
		{"rate limit 1 per hour", func(d string) string {
			return strings.Replace(d, "refillCount: 1000, capacity: 1000", "refillCount: 1, capacity: 1", 1)
		}},
		{"throughput 10 per hour", func(d string) string {
			return strings.Replace(d, `incomingAmount: "1000000"`, `incomingAmount: "10"`, 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, alice := startRefused(t, tt.change)
			for i := range 3 {
				if _, err := alice.inject(context.Background(), prepare("test.bob.x", 100, time.Now(), 10*time.Second)); err != nil {
					r := rejectOf(t, err)
					t.Fatalf("packet %d under the running limits: %s %s", i, r.Code, r.Message)
				}
			}
		})
	}
}

// A refused Apply that changes an account's asset keeps the running account's metric series,
// and leaves none for the account it would have added.
func TestRefusedApplyKeepsMetrics(t *testing.T) {
	c, alice := startRefused(t, func(d string) string {
		return strings.Replace(d, "assetCode: USD", "assetCode: EUR", 1) // alice's
	})
	if _, err := alice.inject(context.Background(), prepare("test.bob.x", 1, time.Now(), 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	mfs, err := c.gatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	found := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := m.String()
			got = append(got, s)
			if strings.Contains(s, `value:"carol"`) || strings.Contains(s, `value:"EUR"`) {
				t.Errorf("series of the refused config: %s %s", mf.GetName(), s)
			}
			if mf.GetName() == "ilp_connector_incoming_ilp_packets" && strings.Contains(s, `value:"alice"`) &&
				strings.Contains(s, `value:"USD"`) && strings.Contains(s, `value:"fulfilled"`) && m.GetCounter().GetValue() == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("alice (still USD) has no fulfilled incoming series counting its packet; series: %v", got)
	}
}

// TestLaterGlobalsLogged: a change of a setting read once warns that it waits for a restart
// only while its value differs from the one in force — taking a change back needs none — and
// a settlement API not bound yet takes its new port when first bound.
func TestLaterGlobalsLogged(t *testing.T) {
	withPorts := func(admin, settle int) *config.Config {
		return mustConfig(t, fmt.Sprintf("adminApiPort: %d\nsettlementApiPort: %d\n", admin, settle)+drainConfig)
	}
	var logs testlog.Buffer
	ml := &memLinks{}
	c := start(t, "adminApiPort: 7780\nsettlementApiPort: 7771\n"+drainConfig,
		Options{newLink: ml.factory, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	steps := []struct {
		name          string
		cfg           *config.Config
		warn, backMsg bool
	}{
		{"admin port changed", withPorts(7790, 7771), true, false},
		{"admin port taken back", withPorts(7780, 7771), false, true},
		{"settlement port changed, API not bound", withPorts(7780, 7772), false, false},
	}
	for _, s := range steps {
		before := len(logs.String())
		if err := c.Apply(context.Background(), s.cfg); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got := logs.String()[before:]
		if w := strings.Contains(got, "takes effect at the next restart"); w != s.warn {
			t.Errorf("%s: restart warning = %v, want %v; log:\n%s", s.name, w, s.warn, got)
		}
		if b := strings.Contains(got, "back to the value in force"); b != s.backMsg {
			t.Errorf("%s: 'back to the value in force' = %v, want %v; log:\n%s", s.name, b, s.backMsg, got)
		}
	}
}

// TestReloadDoesNotWaitForADownPeer: a reload that adds a client account whose peer is down
// returns without waiting the start-up's initialConnectTimeout (an hour here): reloads are
// serial, so every later change would wait behind it. The client goes on trying.
func TestReloadDoesNotWaitForADownPeer(t *testing.T) {
	kidPort := itoa(freePort(t))
	doc := func(extra string) string {
		return `ilpAddress: test.a
initialConnectTimeout: 3600000
accounts:
  kid:
    relation: child
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    options: {listener: {port: ` + kidPort + `, secret: s}}
` + extra
	}
	c := start(t, doc(""), Options{})
	down := `  up:
    relation: peer
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 2
    options: {server: "btp+ws://:t@127.0.0.1:` + itoa(freePort(t)) + `"}
`
	done := make(chan error, 1)
	go func() { done <- c.Apply(context.Background(), mustConfig(t, doc(down))) }()
	select { // a bound for a hung test, far below the hour, not a measure of speed
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Apply still waits for the down peer after a minute")
	}
	if _, ok := c.Config().Accounts["up"]; !ok {
		t.Error("the client account is not in force")
	}
}
