package operator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

func connectorObj(ns, name, addr string) *ilpv1.Connector {
	return &ilpv1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: ilpv1.ConnectorSpec{
			ILPAddress: addr, Network: "test",
			Rates:   &ilpv1.RatesSpec{Backend: "one-to-one", Spread: "0"},
			Routing: &ilpv1.RoutingSpec{Broadcast: ptr.To(false)},
			// The steady flow below sends more than the JS default bucket (10,000 a minute).
			DisableMiddleware: []ilpv1.Middleware{"rateLimit"},
		},
	}
}

func childAccount(ns, conn, name string, port int32) *ilpv1.Account {
	return &ilpv1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: ilpv1.AccountSpec{ConnectorRef: conn, Relation: ilpv1.RelationChild, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: port}}},
	}
}

func routeObj(ns, conn, name, prefix, hop string) *ilpv1.Route {
	return &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: ilpv1.RouteSpec{ConnectorRef: conn, TargetPrefix: prefix, NextHop: hop}}
}

func secretObj(ns, name, token string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"token": []byte(token)}}
}

// pair is two connectors A (test.a) and B (test.b) peered over BTP — A's client dials B's
// listener with the token of Secret peer-token — with a child account on each (alice on A,
// bob on B), static routes both ways, a sending child "tx" of alice and a receiving child "rx"
// of bob.
type pair struct {
	ns                  string
	a, b                *runtimeUnderTest
	tx, rx              *child
	portPeer, portAlice int32
	portBob             int32
}

func startPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{ns: namespace(t), portPeer: freePort(t), portAlice: freePort(t), portBob: freePort(t)}
	ns := p.ns
	alice := childAccount(ns, "a", "alice", p.portAlice)
	alice.Spec.Balance = &ilpv1.BalanceSpec{Minimum: ptr.To(ilpv1.IntegerString("-1000000000000")), Maximum: ptr.To(ilpv1.IntegerString("1000000000000"))}
	create(t,
		secretObj(ns, "peer-token", "t1"),
		connectorObj(ns, "a", "test.a"), connectorObj(ns, "b", "test.b"),
		&ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "peer-a"}, Spec: ilpv1.AccountSpec{ConnectorRef: "b", Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: p.portPeer, SecretRef: ilpv1.SecretKeyRef{Name: "peer-token", Key: "token"}}}}},
		&ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "peer-b"}, Spec: ilpv1.AccountSpec{ConnectorRef: "a", Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: fmt.Sprintf("btp+ws://127.0.0.1:%d", p.portPeer), Username: "a", TokenSecretRef: ilpv1.SecretKeyRef{Name: "peer-token", Key: "token"}}}}},
		alice, childAccount(ns, "b", "bob", p.portBob),
		routeObj(ns, "a", "to-b", "test.b", "peer-b"), routeObj(ns, "b", "to-a", "test.a", "peer-a"),
	)
	p.b = startRuntime(t, ns, "b")
	configApplied(t, ns, "b", isTrue)
	p.a = startRuntime(t, ns, "a")
	configApplied(t, ns, "a", isTrue)
	p.rx = dialChild(t, p.portBob, "rx")
	p.tx = dialChild(t, p.portAlice, "tx")
	eventually(t, "a first packet from tx to rx", func() error { return p.tx.send(10, "test.b.bob.rx.warmup") })
	return p
}

// flow sends packets from tx to rx until stopped, and keeps every failure: none of them
// should fail, whatever is reloaded meanwhile.
type flow struct {
	sent     atomic.Int64
	mu       sync.Mutex
	failures []error
	stop     context.CancelFunc
	done     chan struct{}
}

func startFlow(tx *child) *flow {
	ctx, cancel := context.WithCancel(context.Background())
	f := &flow{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		const maxPackets = 50000 // bounded even if the test forgets to stop it
		for i := 0; i < maxPackets && ctx.Err() == nil; i++ {
			if err := tx.send(10, fmt.Sprintf("test.b.bob.rx.s%d", i)); err != nil {
				f.mu.Lock()
				f.failures = append(f.failures, fmt.Errorf("packet %d: %w", i, err))
				f.mu.Unlock()
			}
			f.sent.Add(1)
			time.Sleep(3 * time.Millisecond)
		}
	}()
	return f
}

func (f *flow) finish(t *testing.T) {
	t.Helper()
	f.stop()
	<-f.done
	if f.sent.Load() == 0 {
		t.Fatal("the flow sent nothing")
	}
	if len(f.failures) > 0 {
		t.Fatalf("%d of %d packets failed during reloads, first: %v", len(f.failures), f.sent.Load(), f.failures[0])
	}
	t.Logf("flow: %d packets, none failed", f.sent.Load())
}

func patchSpec(t *testing.T, obj client.Object, spec string) time.Time {
	t.Helper()
	t0 := time.Now()
	if err := k8s.Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(`{"spec":`+spec+`}`))); err != nil {
		t.Fatal(err)
	}
	return t0
}

// percentile of sorted durations, nearest rank.
func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// TestHotReloadThroughTheAPIServer adds an Account, changes a limit many times and deletes an
// Account while packets flow: each change reaches the running connector (the same object, never
// restarted) and no packet of the flow fails. It logs how long each change took to take effect.
func TestHotReloadThroughTheAPIServer(t *testing.T) {
	p := startPair(t)
	connA, connB := p.a.conn.Load(), p.b.conn.Load()
	fl := startFlow(p.tx)

	// A limit, changed back and forth: a probe of 100 is refused (F08) under 50 and passes under 1000.
	const rounds = 20
	var effect, applied []time.Duration
	alice := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: "alice"}}
	for i := range rounds {
		low := i%2 == 0
		limit := map[bool]string{true: "50", false: "1000"}[low]
		t0 := patchSpec(t, alice, `{"maxPacketAmount":"`+limit+`"}`)
		var seen time.Duration
		eventually(t, "limit "+limit+" in force", func() error {
			err := p.tx.send(100, fmt.Sprintf("test.b.bob.rx.p%d", i))
			switch {
			case low && rejectCode(err) == ilp.CodeAmountTooLarge, !low && err == nil:
				seen = time.Since(t0)
				return nil
			case err != nil && rejectCode(err) != ilp.CodeAmountTooLarge:
				t.Fatalf("probe: unexpected %v", err)
			}
			return errors.New("old limit still in force")
		})
		effect = append(effect, seen)
		// The sync is recorded when it ends, which may be a moment after the new limit is in
		// force (the probe above can see it as soon as the pipelines are swapped).
		var s kube.SyncResult
		eventually(t, "a sync recorded after the change", func() error {
			var ok bool
			if s, ok = p.a.syncAfter(t0); !ok {
				return errors.New("none yet")
			}
			return nil
		})
		if s.Err != nil {
			t.Fatalf("the sync after the change failed: %+v", s)
		}
		applied = append(applied, s.End.Sub(t0))
	}

	// A new Account: a child can connect to it and pay through it.
	portCarol := freePort(t)
	t0 := time.Now()
	create(t, childAccount(p.ns, "a", "carol", portCarol))
	var carol *child
	eventually(t, "carol reachable", func() error {
		c, err := tryChild(portCarol, "c1", 200*time.Millisecond)
		if err != nil {
			return err
		}
		carol = c
		return nil
	})
	defer carol.cl.Close()
	eventually(t, "a packet through carol", func() error { return carol.send(10, "test.b.bob.rx.carol") })
	addEffect := time.Since(t0)

	// Deleting it disconnects its child and frees its port.
	t0 = time.Now()
	if err := k8s.Delete(context.Background(), &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: "carol"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "carol gone", func() error {
		if carol.cl.Connected() {
			return errors.New("carol's child is still connected")
		}
		return nil
	})
	deleteEffect := time.Since(t0)
	if err := carol.send(10, "test.b.bob.rx.carol2"); err == nil {
		t.Fatal("a packet went through a deleted account")
	}

	fl.finish(t)
	if p.a.conn.Load() != connA || p.b.conn.Load() != connB || p.a.starts.Load() != 1 || p.b.starts.Load() != 1 {
		t.Fatalf("a connector was restarted: starts a=%d b=%d", p.a.starts.Load(), p.b.starts.Load())
	}
	t.Logf("limit change, API write → first packet that sees it: p50 %v p99 %v (n=%d)", percentile(effect, .5), percentile(effect, .99), len(effect))
	t.Logf("limit change, API write → Apply done in the runtime:  p50 %v p99 %v (n=%d)", percentile(applied, .5), percentile(applied, .99), len(applied))
	t.Logf("new Account, API write → first packet through it: %v; deleted Account, API write → its child disconnected: %v", addEffect, deleteEffect)

	// The pods' report: alice is connected and carries the flow's balance (positive: tx owes A).
	eventually(t, "alice's status", func() error {
		var a ilpv1.Account
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: p.ns, Name: "alice"}, &a); err != nil {
			return err
		}
		if !a.Status.Connected || a.Status.Balance == "" || a.Status.Balance == "0" || strings.HasPrefix(a.Status.Balance, "-") {
			return fmt.Errorf("status %+v", a.Status)
		}
		return nil
	})
	eventually(t, "peer-b's status", func() error {
		var a ilpv1.Account
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: p.ns, Name: "peer-b"}, &a); err != nil {
			return err
		}
		if !a.Status.Connected || a.Status.Balance != "0" {
			return fmt.Errorf("status %+v", a.Status)
		}
		return nil
	})
}

// markAvailable makes the Connector's Deployment look rolled out (envtest runs no pods), so
// that the operator's Ready depends on the pods' ConfigApplied only.
func markAvailable(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, "Deployment "+name+" available", func() error {
		var d appsv1.Deployment
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &d); err != nil {
			return err
		}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
		return k8s.Status().Update(context.Background(), &d)
	})
}

func ready(t *testing.T, ns, name string, want metav1.ConditionStatus, reason string) {
	t.Helper()
	eventually(t, "Ready of "+name, func() error {
		var c ilpv1.Connector
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &c); err != nil {
			return err
		}
		r := meta.FindStatusCondition(c.Status.Conditions, ilpv1.ConditionReady)
		if r == nil || r.Status != want || r.Reason != reason {
			return fmt.Errorf("Ready %+v, want %s %s", r, want, reason)
		}
		return nil
	})
}

// TestBadAccountAndSecretRotation: an Account whose Secret is missing is left out and reported
// (ConfigApplied False, so the operator's Ready False) while the rest keeps working, and is
// configured once the Secret appears; rotating the peer token reaches both runtimes, whose
// link reconnects with the new token.
func TestBadAccountAndSecretRotation(t *testing.T) {
	p := startPair(t)
	markAvailable(t, p.ns, "a")
	ready(t, p.ns, "a", metav1.ConditionTrue, "Available")

	broken := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: "broken"}, Spec: ilpv1.AccountSpec{ConnectorRef: "a", Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9,
		Link: ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: fmt.Sprintf("btp+ws://127.0.0.1:%d", p.portBob), Username: "broken", TokenSecretRef: ilpv1.SecretKeyRef{Name: "late", Key: "token"}}}}}
	create(t, broken)
	configApplied(t, p.ns, "a", func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionFalse || c.Reason != "ObjectsLeftOut" || !strings.Contains(c.Message, `Account broken: link.btpClient.tokenSecretRef: Secret "late" does not exist`) {
			return fmt.Errorf("ConfigApplied %s %s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
	ready(t, p.ns, "a", metav1.ConditionFalse, "ConfigNotApplied")
	if err := p.tx.send(10, "test.b.bob.rx.while-broken"); err != nil {
		t.Fatalf("the other accounts stopped working: %v", err)
	}

	create(t, secretObj(p.ns, "late", "any"))
	configApplied(t, p.ns, "a", isTrue)
	ready(t, p.ns, "a", metav1.ConditionTrue, "Available")
	eventually(t, "broken connected", func() error {
		if !p.a.conn.Load().Connected("broken") {
			return errors.New("not connected")
		}
		return nil
	})

	// Rotation: both ends read the new token and the peer link comes back with it.
	var sec corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: p.ns, Name: "peer-token"}, &sec); err != nil {
		t.Fatal(err)
	}
	sec.Data["token"] = []byte("t2")
	if err := k8s.Update(context.Background(), &sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new token in both runtimes", func() error {
		a := string(p.a.conn.Load().Config().Accounts["peer-b"].Options)
		b := string(p.b.conn.Load().Config().Accounts["peer-a"].Options)
		if !strings.Contains(a, ":t2@") || !strings.Contains(b, `"secret":"t2"`) {
			return fmt.Errorf("a %s, b %s", a, b)
		}
		return nil
	})
	eventually(t, "a packet over the re-keyed link", func() error { return p.tx.send(10, "test.b.bob.rx.rotated") })
	if !p.a.conn.Load().Connected("peer-b") {
		t.Fatal("peer-b not connected after rotation")
	}
	old, err := btp.NewClient(btp.ClientOptions{Server: fmt.Sprintf("btp+ws://a:t1@127.0.0.1:%d", p.portPeer), Common: btp.Common{Logger: quiet}})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := old.Start(ctx, func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) { return nil, errors.New("unused") }); err == nil {
		t.Fatal("B's listener still accepts the old token")
	}
	if p.a.starts.Load() != 1 || p.b.starts.Load() != 1 {
		t.Fatal("a connector was restarted")
	}
}

// TestRefusedConfigIsAppliedAgain: an Account the running connector cannot start for a passing
// reason (its port still held by another process) is left out — the rest of the config applies —
// and applied once the reason is gone, without another change to the objects.
func TestRefusedConfigIsAppliedAgain(t *testing.T) {
	ns := namespace(t)
	create(t, connectorObj(ns, "c", "test.c"), childAccount(ns, "c", "kid", freePort(t)))
	startRuntime(t, ns, "c")
	configApplied(t, ns, "c", isTrue)

	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := int32(held.Addr().(*net.TCPAddr).Port)
	create(t, childAccount(ns, "c", "late", port))
	configApplied(t, ns, "c", func(c *metav1.Condition) error {
		if c.Status != metav1.ConditionFalse || c.Reason != "ObjectsLeftOut" || !strings.Contains(c.Message, "late") {
			return fmt.Errorf("ConfigApplied %s %s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
	_ = held.Close()
	configApplied(t, ns, "c", isTrue)
	dialChild(t, port, "tx") // the late account's server listens
}
