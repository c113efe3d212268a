package main

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/fleetcheck"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

// The cluster demo's bounds. They only stop a hung demo: pods are scheduled, pulled from the
// node's own image store and started, which takes seconds, but the machine may be busy.
const (
	readyTimeout = 3 * time.Minute // a fleet object Ready at its generation
	probeTimeout = 2 * time.Minute // the first packet through (Service ports, kube-proxy rules, CCP)
)

// clusterChildPort is the BTP listener port of the demo's sender (on alice) and receiver (on
// bob). Each pod has its own network, so both may use the same port; the operator adds it to
// the connector's Service, which the demo dials from the host.
const clusterChildPort = 7770

// settlementSample is left out on a cluster: its image is a registry image this node has not.
const settlementSample = "settlementengines.yaml"

// clusterFleet is what the cluster demo knows of the running fleet.
type clusterFleet struct {
	c          client.Client
	kubeconfig string
	ip         map[string]string           // ClusterIP by Service name
	pods       map[string]fleetcheck.PodID // the connector pods, by Connector, when the fleet came up
}

// runCluster is the demo on a real cluster where the operator runs (hack/cluster/demo.sh):
// the samples run as pods, paid through from this host over the Services' ClusterIPs.
func runCluster(ctx context.Context, binary, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig %q: %w", kubeconfig, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	statusTimeout = time.Minute
	f := &clusterFleet{c: c, kubeconfig: kubeconfig, ip: map[string]string{}}
	if err := f.up(ctx); err != nil {
		return err
	}
	lg, err := f.payAcross(ctx, binary)
	if err != nil {
		return err
	}
	if err := f.changeLimit(ctx, lg); err != nil {
		return err
	}
	f.lookAround(binary, lg)
	return nil
}

// up applies the samples as they are and waits until the operator and the pods report every
// object Ready, then notes the pods, to show later that the live changes kept them.
func (f *clusterFleet) up(ctx context.Context) error {
	step("applying config/samples as they are (two connectors, their accounts and a route): in the\n" +
		"    cluster bob dials alice by her Service name, btp+ws://alice:7768, through cluster DNS.\n" +
		"    Left out: " + settlementSample + " — its image, ghcr.io/ilpfleet/ilpfleet:dev, is not on\n" +
		"    this node (no registry here; the node runs only localhost/ilpfleet:dev, built locally)")
	if err := applyDir(ctx, f.c, filepath.Join(testenv.Root(), "config", "samples"), nil, settlementSample); err != nil {
		return err
	}
	if err := f.waitReady(ctx); err != nil {
		return err
	}
	for _, name := range []string{"alice-bob", "bob-alice"} {
		if err := waitConnected(ctx, f.c, name, nil, readyTimeout); err != nil {
			return err
		}
	}
	fmt.Println("    alice-bob and bob-alice are connected: bob found alice by name")
	pods, err := fleetcheck.ConnectorPods(ctx, f.c, namespace)
	if err != nil {
		return err
	}
	f.pods = pods
	for _, name := range connectors {
		fmt.Printf("    pod of %s: %s\n", name, pods[name])
	}
	return f.lookUpServices(ctx, map[string]int32{"alice": 0, "alice-admin": adminPort, "bob-admin": adminPort})
}

// waitReady waits until every Connector, Account and Route says Ready=True for its current
// generation — conditions only, as `kubectl wait --for=condition=Ready` would.
func (f *clusterFleet) waitReady(ctx context.Context) error {
	step("waiting for every Connector, Account and Route to be Ready at its current generation\n" +
		"    (kubectl wait --for=condition=Ready connectors,accounts,routes --all)")
	var last string
	err := poll(ctx, readyTimeout, "the fleet to be Ready", nil, func() (bool, error) {
		var err error
		last, err = firstPending(ctx, f.c, true, readyAt)
		return err == nil && last == "", err
	})
	if err != nil {
		return fmt.Errorf("%w (last: %s)", err, last)
	}
	fmt.Println("    all Ready")
	return nil
}

// readyAt returns "" when conds has Ready=True for generation gen, else why not.
func readyAt(conds []metav1.Condition, gen int64) string {
	cond := meta.FindStatusCondition(conds, ilpv1.ConditionReady)
	switch {
	case cond == nil:
		return "no Ready condition yet"
	case cond.ObservedGeneration != gen:
		return fmt.Sprintf("Ready is for generation %d, not %d", cond.ObservedGeneration, gen)
	case cond.Status != metav1.ConditionTrue:
		return fmt.Sprintf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
	}
	return ""
}

// lookUpServices notes the ClusterIPs of the Services named in ports, waiting until each
// exists and serves its port (0: any). The operator creates a connector's Service with the
// ports of its listener Accounts: bob has none until the demo adds bob-receiver.
func (f *clusterFleet) lookUpServices(ctx context.Context, ports map[string]int32) error {
	for _, name := range slices.Sorted(maps.Keys(ports)) {
		var why string
		err := poll(ctx, readyTimeout, "Service "+name, nil, func() (bool, error) {
			why = f.lookUpService(ctx, name, ports[name])
			return why == "", nil
		})
		if err != nil {
			return fmt.Errorf("%w (%s)", err, why)
		}
		fmt.Printf("    Service %s: ClusterIP %s (reachable from this host)\n", name, f.ip[name])
	}
	return nil
}

// lookUpService notes the ClusterIP of Service name when it serves port (0: any); it returns
// why not otherwise.
func (f *clusterFleet) lookUpService(ctx context.Context, name string, port int32) string {
	var svc corev1.Service
	if err := f.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &svc); err != nil {
		return err.Error()
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return "no ClusterIP"
	}
	if port != 0 && !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port }) {
		return fmt.Sprintf("no port %d yet", port)
	}
	f.ip[name] = svc.Spec.ClusterIP
	return ""
}

// payAcross adds the sender and receiver Accounts live and pays from this host through the
// Services, as the local demo does; it returns the load generator it paid with.
func (f *clusterFleet) payAcross(ctx context.Context, binary string) (loadgen, error) {
	if err := addPaymentAccounts(ctx, f.c, clusterChildPort, clusterChildPort, nil); err != nil {
		return loadgen{}, err
	}
	if err := f.waitReady(ctx); err != nil {
		return loadgen{}, err
	}
	if err := f.lookUpServices(ctx, map[string]int32{"alice": clusterChildPort, "bob": clusterChildPort}); err != nil {
		return loadgen{}, err
	}
	lg := loadgen{binary: binary, wait: probeTimeout,
		sender:   fmt.Sprintf("btp+ws://demo:sender-secret@%s:%d", f.ip["alice"], clusterChildPort),
		receiver: fmt.Sprintf("btp+ws://demo:receiver-secret@%s:%d", f.ip["bob"], clusterChildPort)}
	if err := payThrough(ctx, f.c, lg, f.kubeconfig, nil); err != nil {
		return lg, err
	}
	return lg, f.showAdminBalances(ctx)
}

// checkNoRestart compares the connector pods with those the fleet came up with.
func (f *clusterFleet) checkNoRestart(ctx context.Context) error {
	now, err := fleetcheck.ConnectorPods(ctx, f.c, namespace)
	if err != nil {
		return err
	}
	if !maps.Equal(now, f.pods) {
		return fmt.Errorf("a connector pod restarted or was replaced: before %v, now %v", f.pods, now)
	}
	for _, name := range connectors {
		fmt.Printf("    pod of %s: %s — the same pod, not restarted\n", name, now[name])
	}
	return nil
}
