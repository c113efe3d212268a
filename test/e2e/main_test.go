//go:build e2e

// Package e2e tests the whole system on a real cluster: the operator as `make deploy` installs
// it, connector pods that the operator creates and that find their configuration, resolve each
// other's Service names, peer over BTP, hot-reload and keep balances on a volume; paid through
// from outside the cluster over the Services. It runs against the cluster of $KUBECONFIG
// (`make e2e` brings up the local single-node cluster of hack/cluster for it) and is behind the
// build tag e2e, so that `go test ./...` never sees it:
//
//	KUBECONFIG=… go test -tags e2e -count=1 ./test/e2e/ -v
//
// Environment: KUBECONFIG (required); KUBECTL (default: kubectl on PATH); E2E_CLUSTER_DNS, a
// host:port of the cluster DNS reachable from here, to check Service names resolve there too
// (make e2e sets it; unset: that check is skipped, the pods' own lookups are still tested);
// E2E_KEEP=1 keeps the test namespace.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ilpfleet/ilpfleet/internal/scheme"
)

// Bounds of the waits. They only stop a hung test; nothing asserts on how fast anything is.
const (
	deployTimeout = 3 * time.Minute // CRDs established and the operator's Deployment available
	readyTimeout  = 3 * time.Minute // a fleet object Ready (pods scheduled, volume bound, started)
	effectTimeout = time.Minute     // a hot-reloaded change observable in the running pods
	pollEvery     = 250 * time.Millisecond
)

// The operator as hack/cluster/overlay installs it (config/default).
const (
	operatorNamespace  = "ilpfleet-system"
	operatorDeployment = "ilpfleet-controller-manager"
)

var (
	restCfg *rest.Config
	k8s     client.Client // uncached: every read is the API server's current state
	kubectl string
	root    string // the repository
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setup() error {
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		return fmt.Errorf("KUBECONFIG is not set: the e2e tests need a cluster (make e2e brings up a local one)")
	}
	var err error
	if restCfg, err = clientcmd.BuildConfigFromFlags("", kc); err != nil {
		return fmt.Errorf("KUBECONFIG %s: %w", kc, err)
	}
	if k8s, err = client.New(restCfg, client.Options{Scheme: scheme.New()}); err != nil {
		return err
	}
	kubectl = os.Getenv("KUBECTL")
	if kubectl == "" {
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			return fmt.Errorf("kubectl: set KUBECTL or put it on PATH (make e2e uses bin/cluster/): %w", err)
		}
	}
	if root, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		return err
	}
	return nil
}

// run runs kubectl with args and returns its combined output.
func run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

// deployOperator installs the operator exactly as `make deploy` does and waits until its CRDs
// are Established and its Deployment is Available.
func deployOperator(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if _, err := run(ctx, "apply", "--server-side", "--force-conflicts", "-k", "hack/cluster/overlay"); err != nil {
		t.Fatal(err)
	}
	crd := schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}
	for _, name := range []string{"connectors", "accounts", "routes", "settlementengines"} {
		waitCondition(t, crd, "", name+".ilp.ilpfleet.dev", "Established", deployTimeout)
	}
	// kubectl's discovery cache (~/.kube/cache) may predate the CRDs, or come from an earlier
	// node at the same address: refresh it, or the failure dump's `kubectl get ilp` (a
	// category, which a cache miss does not refresh) says "no resource type".
	if _, err := run(ctx, "api-resources", "--api-group=ilp.ilpfleet.dev"); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		operatorNamespace, operatorDeployment, "Available", deployTimeout)
}

// waitCondition waits, as `kubectl wait --for=condition=<typ>` does, until the object's
// condition typ is True for its current generation: the condition's observedGeneration (and
// status.observedGeneration, where the kind has one) equal to metadata.generation. Nothing
// else is read: no logs, no sleeps.
func waitCondition(t *testing.T, gvk schema.GroupVersionKind, ns, name, typ string, timeout time.Duration) {
	t.Helper()
	what := fmt.Sprintf("%s %s/%s: condition %s True for the current generation", gvk.Kind, ns, name, typ)
	eventually(t, what, timeout, func() error {
		if why := conditionState(gvk, ns, name, typ); why != "" {
			return errors.New(why)
		}
		return nil
	})
}

// conditionState returns "" when condition typ is True at the current generation, else why not.
func conditionState(gvk schema.GroupVersionKind, ns, name, typ string) string {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		return err.Error()
	}
	gen := u.GetGeneration()
	if og, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); found && gen != 0 && og != gen {
		return fmt.Sprintf("status.observedGeneration %d, generation %d", og, gen)
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != typ {
			continue
		}
		if og, ok := m["observedGeneration"].(int64); ok && gen != 0 && og != gen {
			return fmt.Sprintf("%s is for generation %d, not %d", typ, og, gen)
		}
		if m["status"] != string(metav1.ConditionTrue) {
			return fmt.Sprintf("%s=%v %v: %v", typ, m["status"], m["reason"], m["message"])
		}
		return ""
	}
	return "no " + typ + " condition yet"
}

// poll calls cond every pollEvery until it returns true or timeout passes; it reports whether
// cond held. The number of calls is bounded by timeout/pollEvery (plus the calls' own time).
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}

// eventually polls f until it returns nil, failing the test with f's last error at timeout.
func eventually(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	var last error
	if !poll(timeout, func() bool { last = f(); return last == nil }) {
		t.Fatalf("%s: not within %v: %v", what, timeout, last)
	}
}

// dumpOnFailure registers a cleanup that, when the test failed, prints what an engineer on call
// would look at: the ilp objects and pods of every namespace, the events, and the logs of the
// connector pods and of the operator.
func dumpOnFailure(t *testing.T, ns string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx := context.Background()
		for _, args := range [][]string{
			{"get", "ilp,pods,pvc,svc", "-A", "-o", "wide"},
			{"get", "connectors,accounts", "-n", ns, "-o", "yaml"},
			{"get", "events", "-A", "--sort-by=.lastTimestamp"},
			{"logs", "-n", ns, "-l", "app.kubernetes.io/component=connector", "--all-containers", "--prefix", "--tail=300"},
			{"logs", "-n", ns, "-l", "app.kubernetes.io/component=connector", "--all-containers", "--prefix", "--tail=100", "--previous"},
			{"logs", "-n", operatorNamespace, "deploy/" + operatorDeployment, "--tail=200"},
		} {
			out, err := run(ctx, args...)
			if err != nil {
				out = err.Error()
			}
			t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), out)
		}
	})
}
