//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/fleetcheck"
	"github.com/ilpfleet/ilpfleet/internal/loadgen"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// The fleet: two connectors of a test network peered over BTP. alice listens for bob on 7768
// and keeps its balances in the file store (a StatefulSet with a volume); bob dials alice by
// her Service name, btp+ws://alice:7768, which only cluster DNS resolves, and keeps balances in
// memory. Each has a child account that a BTP client outside the cluster dials through the
// Services: alice-sender pays, bob-receiver is paid. Static routes only (CCP off), rate 1:1, no
// spread, so that every amount is exact.
const (
	peerPort     = 7768
	childPort    = 7769 // alice-sender on alice, bob-receiver on bob
	carolPort    = 7770 // the Account added live
	adminPort    = 7780
	settlePort   = 7771 // each connector's settlement API, on <name>-admin
	enginePort   = 3000
	destination  = "test.bob.bob-receiver"
	wideLimit    = "1000000000000"
	firstLimit   = "1000000" // alice-sender's maxPacketAmount before the change
	changedLimit = "500"     // and after it
)

var (
	gvkPod = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	quiet  = slog.New(slog.DiscardHandler)
)

func connector(ns, name, addr string, store ilpv1.StoreType) *ilpv1.Connector {
	c := &ilpv1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: ilpv1.ConnectorSpec{
			ILPAddress: addr, Network: "test",
			Rates:     &ilpv1.RatesSpec{Backend: "one-to-one", Spread: "0"},
			Routing:   &ilpv1.RoutingSpec{Broadcast: ptr.To(false)},
			Listeners: &ilpv1.ListenersSpec{Settlement: &ilpv1.ListenerSpec{Port: settlePort}},
		},
	}
	if store == ilpv1.StoreFile {
		c.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreFile, File: &ilpv1.FileStoreSpec{Size: ptr.To(resource.MustParse("64Mi"))}}
	}
	return c
}

func balance() *ilpv1.BalanceSpec {
	return &ilpv1.BalanceSpec{Minimum: ptr.To(ilpv1.IntegerString("-" + wideLimit)), Maximum: ptr.To(ilpv1.IntegerString(wideLimit))}
}

func account(ns, name, conn string, rel ilpv1.Relation, link ilpv1.AccountLink) *ilpv1.Account {
	return &ilpv1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       ilpv1.AccountSpec{ConnectorRef: conn, Relation: rel, AssetCode: "USD", AssetScale: 9, Link: link, Balance: balance()},
	}
}

func listener(port int32, secret string) ilpv1.AccountLink {
	return ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: port, SecretRef: ilpv1.SecretKeyRef{Name: secret, Key: "token"}}}
}

func secret(ns, name, token string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: map[string]string{"token": token}}
}

func route(ns, name, conn, prefix, hop string) *ilpv1.Route {
	return &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: ilpv1.RouteSpec{ConnectorRef: conn, TargetPrefix: prefix, NextHop: hop}}
}

// fleet is the test's view of the running fleet: the Service addresses it pays through and the
// balances every account must have, kept from what was fulfilled.
type fleet struct {
	ns          string
	alice, bob  string // ClusterIPs of the peer Services
	aliceAdmin  string // ClusterIP of alice-admin
	bobAdmin    string // ClusterIP of bob-admin
	senderToken string
	ledger      map[string]int64
	pods        map[string]fleetcheck.PodID // by Connector: the pods the hot-reload steps must keep
	objects     []client.Object             // what the fleet is made of, waited on for Ready
}

func TestFleet(t *testing.T) {
	f := &fleet{ns: testNamespace(t), senderToken: "sender-1", ledger: map[string]int64{}}
	dumpOnFailure(t, f.ns)
	deployOperator(t)
	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"apply the fleet and wait for Ready", f.apply},
		{"Service names resolve in cluster DNS", f.dns},
		{"the operator exports the fleet's status to Prometheus", f.operatorMetrics},
		{"pay across the peering from outside the cluster", f.payAcross},
		{"add an Account", f.addAccount},
		{"change a limit", f.changeLimit},
		{"rotate a Secret", f.rotateSecret},
		{"delete an Account", f.deleteAccount},
		{"balances survive a killed file-store pod", f.killFileStorePod},
		{"settle the peering through settlement engines", f.settle},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.FailNow() // each step builds on the previous one
		}
	}
}

func testNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace %s", ns.Name)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("E2E_KEEP") != "" {
			t.Logf("namespace %s kept", ns.Name)
			return
		}
		_ = k8s.Delete(context.Background(), ns)
	})
	return ns.Name
}

// apply creates the fleet and waits until every Connector, Account and Route is Ready for its
// current generation — conditions only, as `kubectl wait --for=condition=Ready` would.
func (f *fleet) apply(t *testing.T) {
	ns := f.ns
	bobAlice := account(ns, "bob-alice", "bob", ilpv1.RelationPeer, ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{
		URL: fmt.Sprintf("btp+ws://alice:%d", peerPort), Username: "bob", TokenSecretRef: ilpv1.SecretKeyRef{Name: "peer-token", Key: "token"}}})
	sender := account(ns, "alice-sender", "alice", ilpv1.RelationChild, listener(childPort, "sender-token"))
	sender.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString(firstLimit))
	f.objects = []client.Object{
		secret(ns, "peer-token", "peer-1"), secret(ns, "sender-token", f.senderToken), secret(ns, "receiver-token", "receiver-1"),
		connector(ns, "alice", "test.alice", ilpv1.StoreFile), connector(ns, "bob", "test.bob", ilpv1.StoreMemory),
		account(ns, "alice-bob", "alice", ilpv1.RelationPeer, listener(peerPort, "peer-token")), bobAlice,
		sender, account(ns, "bob-receiver", "bob", ilpv1.RelationChild, listener(childPort, "receiver-token")),
		route(ns, "alice-to-bob", "alice", "test.bob", "alice-bob"), route(ns, "bob-to-alice", "bob", "test.alice", "bob-alice"),
	}
	for _, o := range f.objects {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	f.waitReady(t)

	var c ilpv1.Connector
	f.get(t, "alice", &c)
	if c.Status.Workload != "StatefulSet/alice" {
		t.Fatalf("alice has the file store: want StatefulSet/alice, status.workload is %q", c.Status.Workload)
	}
	var pvc corev1.PersistentVolumeClaim
	f.get(t, "data-alice-0", &pvc)
	if pvc.Status.Phase != corev1.ClaimBound {
		t.Fatalf("alice's volume claim is %s, not Bound", pvc.Status.Phase)
	}
	f.alice, f.bob = f.clusterIP(t, "alice"), f.clusterIP(t, "bob")
	f.aliceAdmin, f.bobAdmin = f.clusterIP(t, "alice-admin"), f.clusterIP(t, "bob-admin")
	// The peering is up once the pods report their link: bob found alice by her Service name.
	f.waitConnected(t, "bob-alice", "alice-bob")
	f.waitPeering(t)
	f.pods = f.connectorPods(t)
	t.Logf("fleet Ready; connector pods %v", f.pods)
}

// operatorMetrics scrapes the operator pod's metrics endpoint (--metrics-bind-address=:8080,
// on the pod's IP: the node is this machine) and finds, in the text that Prometheus reads, the
// series the alerting rules (config/prometheus/alerts.yaml) fire on, as the fleet now is:
// Connector alice Ready, and the peer Account alice-bob connected.
func (f *fleet) operatorMetrics(t *testing.T) {
	want := []string{
		fmt.Sprintf(`ilpfleet_condition{kind="Connector",name="alice",namespace=%q,reason="Available",status="true",type="Ready"} 1`, f.ns),
		fmt.Sprintf(`ilpfleet_condition{kind="Connector",name="alice",namespace=%q,reason="Available",status="false",type="Ready"} 0`, f.ns),
		fmt.Sprintf(`ilpfleet_account_connected{connector="alice",name="alice-bob",namespace=%q,relation="peer"} 1`, f.ns),
	}
	var pods corev1.PodList
	if err := k8s.List(context.Background(), &pods, client.InNamespace(operatorNamespace),
		client.MatchingLabels{"app.kubernetes.io/component": "manager"}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 || pods.Items[0].Status.PodIP == "" {
		t.Fatalf("no operator pod with an IP in %s: %d pods", operatorNamespace, len(pods.Items))
	}
	url := fmt.Sprintf("http://%s:8080/metrics", pods.Items[0].Status.PodIP)
	eventually(t, "the status series in "+url, readyTimeout, func() error {
		body, err := httpGet(url)
		if err != nil {
			return err
		}
		for _, line := range want {
			if !strings.Contains(body, "\n"+line+"\n") {
				return fmt.Errorf("no line %s", line)
			}
		}
		return nil
	})
}

// httpGet returns the body of a GET that answers 200.
func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// waitReady waits for Ready=True at the current generation of every Connector, Account and
// Route of the fleet.
func (f *fleet) waitReady(t *testing.T) {
	t.Helper()
	for _, o := range f.objects {
		gvk, err := apiutil.GVKForObject(o, k8s.Scheme())
		if err != nil {
			t.Fatal(err)
		}
		if gvk.Group == ilpv1.GroupVersion.Group { // not the Secrets
			waitCondition(t, gvk, f.ns, o.GetName(), ilpv1.ConditionReady, readyTimeout)
		}
	}
}

// dns checks, when E2E_CLUSTER_DNS names the cluster DNS, that the Service names the fleet
// uses resolve there to the Services' ClusterIPs. The pods' own lookups were proven by the
// peering coming up (bob dials btp+ws://alice:7768).
func (f *fleet) dns(t *testing.T) {
	server := os.Getenv("E2E_CLUSTER_DNS")
	if server == "" {
		t.Skip("E2E_CLUSTER_DNS unset; the pods' own lookup of alice was checked by the peering")
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
	for name, want := range map[string]string{"alice": f.alice, "bob": f.bob, "alice-admin": f.aliceAdmin} {
		fqdn := name + "." + f.ns + ".svc.cluster.local"
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := r.LookupHost(ctx, fqdn)
		cancel()
		if err != nil || len(addrs) != 1 || addrs[0] != want {
			t.Fatalf("%s at %s: %v %v, want [%s]", fqdn, server, addrs, err, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if addrs, err := r.LookupHost(ctx, "nothing-here."+f.ns+".svc.cluster.local"); err == nil {
		t.Fatalf("a Service that does not exist resolves: %v", addrs)
	}
}

// payAcross pays from alice-sender to bob-receiver, through alice, the peering and bob, right
// after the wait: the fleet said Ready and its links connected, so the first payment must go
// through — no retry hides a Ready condition that lies.
func (f *fleet) payAcross(t *testing.T) {
	f.pay(t, "alice-sender", f.senderURL(f.senderToken), 50, 1000)
	f.checkBalances(t)
	f.assertNoRestart(t)
}

// addAccount adds a child account on alice while the pods run: the pods take it (it appears in
// their status reports and on the Service) and a client pays through it, without a restart.
func (f *fleet) addAccount(t *testing.T) {
	carol := account(f.ns, "alice-carol", "alice", ilpv1.RelationChild, listener(carolPort, "carol-token"))
	for _, o := range []client.Object{secret(f.ns, "carol-token", "carol-1"), carol} {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	f.objects = append(f.objects, carol)
	f.waitReady(t)
	// A pod reports the balance of every account it runs: this one runs alice-carol.
	eventually(t, "alice-carol in alice's pod (status.balance reported)", effectTimeout, func() error {
		var a ilpv1.Account
		f.get(t, "alice-carol", &a)
		if a.Status.Balance != "0" {
			return fmt.Errorf("status %+v", a.Status)
		}
		return nil
	})
	f.pay(t, "alice-carol", fmt.Sprintf("btp+ws://carol:carol-1@%s:%d", f.alice, carolPort), 20, 700)
	f.checkBalances(t)
	f.assertNoRestart(t)
}

// changeLimit lowers alice-sender's maxPacketAmount: a packet above the new limit is refused by
// alice with F08 Amount Too Large, one below it still goes through, without a restart.
func (f *fleet) changeLimit(t *testing.T) {
	patch(t, &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "alice-sender"}}, `{"spec":{"maxPacketAmount":"`+changedLimit+`"}}`)
	f.waitReady(t)
	limit, _ := strconv.ParseUint(changedLimit, 10, 64)
	// Until the pod applies the change, a probe above the new limit passes alice and is refused
	// further on: no receiver is connected to bob-receiver during the probes, so no probe can
	// be fulfilled and every balance stays as it was.
	var rej *ilp.Reject
	eventually(t, "the new limit refuses a packet above it", effectTimeout, func() error {
		err := f.probe(limit + 100)
		if !errors.As(err, &rej) {
			return fmt.Errorf("probe: %v", err)
		}
		if rej.Code != ilp.CodeAmountTooLarge {
			return fmt.Errorf("probe refused with %s %s by %s: %s (the old limit is still in force?)", rej.Code, rej.Code.Name(), rej.TriggeredBy, rej.Message)
		}
		return nil
	})
	if rej.TriggeredBy != "test.alice" {
		t.Fatalf("F08 triggered by %q, want test.alice", rej.TriggeredBy)
	}
	got, max, err := ilp.ParseAmountTooLargeData(rej.Data)
	if err != nil || got != limit+100 || max != limit {
		t.Fatalf("F08 data: received %d, maximum %d (%v); want %d and %d", got, max, err, limit+100, limit)
	}
	t.Logf("refused: %s %s by %s: %s", rej.Code, rej.Code.Name(), rej.TriggeredBy, rej.Message)
	f.pay(t, "alice-sender", f.senderURL(f.senderToken), 10, limit)
	f.checkBalances(t)
	f.assertNoRestart(t)
}

// rotateSecret changes the token of alice-sender's BTP listener: once the pod has read it the
// new token is accepted and the old one refused at authentication, without a restart.
func (f *fleet) rotateSecret(t *testing.T) {
	old, rotated := f.senderToken, "sender-2"
	patch(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "sender-token"}}, `{"stringData":{"token":"`+rotated+`"}}`)
	f.waitReady(t)
	eventually(t, "the new token accepted", effectTimeout, func() error { return f.auth(rotated) })
	f.senderToken = rotated
	err := f.auth(old)
	var be *btp.Error
	if !errors.As(err, &be) {
		t.Fatalf("the old token after the rotation: want a BTP authentication error, got %v", err)
	}
	t.Logf("old token refused: %v", err)
	f.pay(t, "alice-sender", f.senderURL(f.senderToken), 10, 300)
	f.checkBalances(t)
	f.assertNoRestart(t)
}

// deleteAccount deletes alice-carol: its port stops taking clients and leaves the Service,
// while the other accounts keep working, without a restart.
func (f *fleet) deleteAccount(t *testing.T) {
	carol := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "alice-carol"}}
	if err := k8s.Delete(context.Background(), carol); err != nil {
		t.Fatal(err)
	}
	f.objects = slices.DeleteFunc(f.objects, func(o client.Object) bool { return o.GetName() == "alice-carol" })
	eventually(t, "alice-carol deleted", effectTimeout, func() error {
		err := k8s.Get(context.Background(), client.ObjectKeyFromObject(carol), carol)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	eventually(t, "the Service without alice-carol's port", effectTimeout, func() error {
		var svc corev1.Service
		f.get(t, "alice", &svc)
		for _, p := range svc.Spec.Ports {
			if p.Port == carolPort {
				return fmt.Errorf("port %d still on Service alice", carolPort)
			}
		}
		return nil
	})
	// With its port off the Service the pod may still listen: ask the pod itself, through its
	// admin API, that the account is gone from the running connector.
	eventually(t, "alice-carol gone from alice's running connector", effectTimeout, func() error {
		b, err := f.adminBalances(f.aliceAdmin)
		if err != nil {
			return err
		}
		if _, ok := b["alice-carol"]; ok {
			return errors.New("alice still runs alice-carol")
		}
		return nil
	})
	delete(f.ledger, "alice-carol")
	f.waitReady(t)
	f.pay(t, "alice-sender", f.senderURL(f.senderToken), 10, 200)
	f.checkBalances(t)
	f.assertNoRestart(t)
}

// killFileStorePod deletes alice's pod — the one with the file store — and checks that the
// pod that replaces it (a new UID, same volume) starts from the balances the old one kept, then
// keeps counting from them. bob's pod is not touched, and must not restart meanwhile.
func (f *fleet) killFileStorePod(t *testing.T) {
	before := f.pods["alice"]
	if err := k8s.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: before.Name}}); err != nil {
		t.Fatal(err)
	}
	var after fleetcheck.PodID
	eventually(t, "a new pod of alice", readyTimeout, func() error {
		pods, err := fleetcheck.ConnectorPods(context.Background(), k8s, f.ns)
		if err != nil {
			return err
		}
		if after = pods["alice"]; after.UID == before.UID || after.UID == "" {
			return fmt.Errorf("alice's pods: %v", pods)
		}
		return nil
	})
	waitCondition(t, gvkPod, f.ns, after.Name, "Ready", readyTimeout)
	f.waitReady(t)
	// The new pod's running connector, asked directly: its balances are the ones kept. (The
	// old pod is gone, so only the new one answers on alice-admin.)
	want := map[string]int64{"alice-sender": f.ledger["alice-sender"], "alice-bob": f.ledger["alice-bob"]}
	var b map[string]int64
	eventually(t, "alice's admin API", effectTimeout, func() (err error) {
		b, err = f.adminBalances(f.aliceAdmin)
		return err
	})
	for id, w := range want {
		if w == 0 {
			t.Fatalf("the ledger of %s is 0: nothing would show a lost balance", id)
		}
		if b[id] != w {
			t.Fatalf("after the restart alice's new pod has %s = %d, want %d: balance lost; all: %v", id, b[id], w, b)
		}
	}
	// Account status.connected may still say true from before the kill: ask the pods. bob
	// redials alice by name; a dial may first hang on the old pod's address, hence the bound.
	f.waitPeering(t)
	f.pay(t, "alice-sender", f.senderURL(f.senderToken), 10, 100)
	f.checkBalances(t)
	if now := f.connectorPods(t); now["bob"] != f.pods["bob"] {
		t.Fatalf("bob's pod restarted while alice's was replaced: before %v, now %v", f.pods["bob"], now["bob"])
	}
	f.pods = f.connectorPods(t) // alice's new pod is the one the next steps must keep
}

// settle runs a settlement engine on each side of the peering — ilpfleet's mock, in the fleet's
// own image, which settles by a message to the other mock: no money moves — and points
// alice-bob and bob-alice at them, with a threshold alice's debt to bob is already past. The
// operator runs the engines (Deployment and Service <name>-engine), the pods take the change
// live, and the debt is settled: alice-bob back to settleTo (0), bob-alice down by as much,
// through alice's engine, a peer.settle message over the BTP peering, bob's engine and bob's
// settlement API on bob-admin. Then a payment past the threshold is settled the same way.
func (f *fleet) settle(t *testing.T) {
	img := f.operatorImage(t)
	engine := func(name, conn string) *ilpv1.SettlementEngine {
		return &ilpv1.SettlementEngine{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
			Spec: ilpv1.SettlementEngineSpec{AssetCode: "USD", AssetScale: 9, Image: img, Port: enginePort,
				Args: []string{"settlement-engine", fmt.Sprintf("--listen=0.0.0.0:%d", enginePort), "--asset-scale=9", "--mock-scale=9"},
				Env:  []corev1.EnvVar{{Name: "CONNECTOR_URL", Value: fmt.Sprintf("http://%s-admin:%d", conn, settlePort)}}}}
	}
	engines := []client.Object{engine("alice-usd", "alice"), engine("bob-usd", "bob")}
	for _, o := range engines {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
	f.objects = append(f.objects, engines...)
	f.waitReady(t) // the engines run before any account names them
	if f.ledger["alice-bob"] >= -1 {
		t.Fatalf("alice owes bob %d: nothing to settle", -f.ledger["alice-bob"])
	}
	// The receiving side first: a settlement message that reached bob before bob-alice had
	// its engine would be refused, and a failed settlement counts as paid (settlement-core's
	// rule, which the framework keeps).
	patch(t, &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "bob-alice"}}, `{"spec":{"settlementEngineRef":"bob-usd"}}`)
	f.waitEngine(t, f.bobAdmin, "bob-alice", "bob-usd")
	patch(t, &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "alice-bob"}},
		`{"spec":{"settlementEngineRef":"alice-usd","balance":{"settleThreshold":"-1","settleTo":"0"}}}`)
	f.waitEngine(t, f.aliceAdmin, "alice-bob", "alice-usd")
	f.settled(t)
	f.pay(t, "alice-sender", f.senderURL(f.senderToken), 10, 100)
	f.settled(t)
	f.assertNoRestart(t)
}

// waitEngine waits until the connector behind adminIP runs account with engine's URL.
func (f *fleet) waitEngine(t *testing.T, adminIP, account, engine string) {
	t.Helper()
	want := fmt.Sprintf("http://%s-engine.%s.svc:%d", engine, f.ns, enginePort)
	eventually(t, account+" settled by "+engine, effectTimeout, func() error {
		var got struct {
			Accounts map[string]struct {
				Info struct {
					SettlementEngine *struct{ URL string } `json:"settlementEngine"`
				} `json:"info"`
			} `json:"accounts"`
		}
		if err := adminGet(adminIP, "/accounts", &got); err != nil {
			return err
		}
		if se := got.Accounts[account].Info.SettlementEngine; se == nil || se.URL != want {
			return fmt.Errorf("settlementEngine %+v, want %s", se, want)
		}
		return nil
	})
}

// settled books alice's debt to bob as settled and waits for the pods to show it.
func (f *fleet) settled(t *testing.T) {
	t.Helper()
	f.ledger["bob-alice"] += f.ledger["alice-bob"]
	f.ledger["alice-bob"] = 0
	f.checkBalances(t)
}

// operatorImage is the image of the operator's pod, which is the connectors' and the engines'.
func (f *fleet) operatorImage(t *testing.T) string {
	var d appsv1.Deployment
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: operatorNamespace, Name: operatorDeployment}, &d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// pay sends n packets of amount from the account `from` (dialled at senderURL) to bob-receiver
// with the load generator and requires every one fulfilled and received; it books them.
func (f *fleet) pay(t *testing.T, from, senderURL string, n int, amount uint64) {
	t.Helper()
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		Sender: senderURL, Receiver: fmt.Sprintf("btp+ws://receiver:receiver-1@%s:%d", f.bob, childPort),
		Destination: destination, Packets: n, Concurrency: 4, Amount: amount,
		Timeout: effectTimeout, Expiry: 10 * time.Second, Logger: quiet,
	})
	if err != nil {
		t.Fatalf("paying %d × %d from %s: %v", n, amount, from, err)
	}
	total := uint64(n) * amount
	if !res.AllFulfilled() || res.Received.Amount != total {
		t.Fatalf("paying %d × %d from %s: %d fulfilled, rejects %v, errors %v (%v); receiver got %d of %d",
			n, amount, from, res.Fulfilled, res.Rejected, res.Errors, res.Samples, res.Received.Amount, total)
	}
	// Positive: the counterparty owes the connector (RFC 32). The sender owes alice, alice owes
	// bob, bob owes the receiver.
	f.ledger[from] += int64(total)
	f.ledger["alice-bob"] -= int64(total)
	f.ledger["bob-alice"] += int64(total)
	f.ledger["bob-receiver"] -= int64(total)
	t.Logf("paid %d × %d from %s to %s", n, amount, from, destination)
}

// checkBalances waits until every Account reports (status.balance, written by the pods) the
// balance the ledger says, and checks alice's pod directly through its admin API.
func (f *fleet) checkBalances(t *testing.T) {
	t.Helper()
	for _, id := range slices.Sorted(maps.Keys(f.ledger)) {
		want := strconv.FormatInt(f.ledger[id], 10)
		eventually(t, "status.balance of "+id, effectTimeout, func() error {
			var a ilpv1.Account
			f.get(t, id, &a)
			if a.Status.Balance != want {
				return fmt.Errorf("status.balance %q, want %s", a.Status.Balance, want)
			}
			return nil
		})
	}
	b, err := f.adminBalances(f.aliceAdmin)
	if err != nil {
		t.Fatal(err)
	}
	for id, w := range f.ledger {
		if _, onAlice := map[string]bool{"alice-sender": true, "alice-bob": true, "alice-carol": true}[id]; onAlice && b[id] != w {
			t.Fatalf("alice's admin API: %s = %d, want %d", id, b[id], w)
		}
	}
}

// probe sends one packet from alice-sender towards bob-receiver and returns its outcome.
func (f *fleet) probe(amount uint64) error {
	return fleetcheck.Probe(context.Background(), f.senderURL(f.senderToken), destination, amount)
}

// auth connects to alice-sender's listener with token and reports the outcome.
func (f *fleet) auth(token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := fleetcheck.Dial(ctx, f.senderURL(token))
	if err != nil {
		return err
	}
	return cl.Close()
}

func (f *fleet) senderURL(token string) string {
	return fmt.Sprintf("btp+ws://sender:%s@%s:%d", token, f.alice, childPort)
}

// adminBalances reads the balances of a running connector from its admin API (GET /balance
// on its -admin Service).
func (f *fleet) adminBalances(adminIP string) (map[string]int64, error) {
	var body struct {
		Accounts map[string]struct {
			Balance string `json:"balance"`
		} `json:"accounts"`
	}
	if err := adminGet(adminIP, "/balance", &body); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(body.Accounts))
	for id, b := range body.Accounts {
		v, err := strconv.ParseInt(b.Balance, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("balance of %s: %w", id, err)
		}
		out[id] = v
	}
	return out, nil
}

// adminGet decodes the JSON answer of GET path on the admin API at adminIP.
func adminGet(adminIP, path string, into any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s:%d%s", adminIP, adminPort, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// waitPeering waits until both running connectors say, live (GET /status), that their side
// of the peering is connected.
func (f *fleet) waitPeering(t *testing.T) {
	t.Helper()
	for _, side := range []struct{ admin, account string }{{f.aliceAdmin, "alice-bob"}, {f.bobAdmin, "bob-alice"}} {
		eventually(t, side.account+" connected (admin API)", readyTimeout, func() error {
			var st struct {
				Connected map[string]bool `json:"connected"`
			}
			if err := adminGet(side.admin, "/status", &st); err != nil {
				return err
			}
			if !st.Connected[side.account] {
				return fmt.Errorf("connected: %v", st.Connected)
			}
			return nil
		})
	}
}

// waitConnected waits until the pods report the accounts' links up (status.connected).
func (f *fleet) waitConnected(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		eventually(t, name+" connected", readyTimeout, func() error {
			var a ilpv1.Account
			f.get(t, name, &a)
			if !a.Status.Connected {
				return fmt.Errorf("status %+v", a.Status)
			}
			return nil
		})
	}
}

func (f *fleet) clusterIP(t *testing.T, svc string) string {
	t.Helper()
	var s corev1.Service
	f.get(t, svc, &s)
	if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Fatalf("Service %s has no ClusterIP", svc)
	}
	return s.Spec.ClusterIP
}

// connectorPods is fleetcheck.ConnectorPods, failing unless each Connector has exactly one pod.
func (f *fleet) connectorPods(t *testing.T) map[string]fleetcheck.PodID {
	t.Helper()
	pods, err := fleetcheck.ConnectorPods(context.Background(), k8s, f.ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 2 || pods["alice"].UID == "" || pods["bob"].UID == "" {
		t.Fatalf("want one pod per Connector, have %v", pods)
	}
	return pods
}

// assertNoRestart fails when a connector pod was replaced or restarted since the fleet came up.
func (f *fleet) assertNoRestart(t *testing.T) {
	t.Helper()
	now := f.connectorPods(t)
	if !maps.Equal(now, f.pods) {
		t.Fatalf("a connector pod restarted or was replaced during a hot reload: before %v, now %v", f.pods, now)
	}
}

// get reads the object name of the fleet's namespace.
func (f *fleet) get(t *testing.T, name string, obj client.Object) {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, obj); err != nil {
		t.Fatalf("get %T %s: %v", obj, name, err)
	}
}

func patch(t *testing.T, obj client.Object, body string) {
	t.Helper()
	if err := k8s.Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(body))); err != nil {
		t.Fatalf("patch %T %s: %v", obj, obj.GetName(), err)
	}
}
