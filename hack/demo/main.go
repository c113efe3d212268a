// Command demo is `make demo`: it starts a local control plane (the kube-apiserver and etcd that
// hack/envtest-assets.sh builds), installs the CRDs, runs `ilpfleet manager` against it, applies
// config/samples (adapted to local processes: see local.go), runs one `ilpfleet connector
// --source=kubernetes` process per sample Connector in place of its pods (there is no kubelet),
// adds a sender and a receiver Account live, pays between them with `ilpfleet loadgen`, shows
// the balances the runtimes report, and stops everything it started on exit or Ctrl-C.
//
// With --cluster it runs against a real cluster instead (hack/cluster/demo.sh, `make demo` as
// root): see cluster.go.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

func main() {
	binary := flag.String("binary", "bin/ilpfleet", "the ilpfleet binary: the manager, the connector runtimes and the load generator")
	assets := flag.String("assets", os.Getenv("KUBEBUILDER_ASSETS"), "folder with kube-apiserver and etcd")
	hold := flag.Bool("hold", false, "keep the fleet running until Ctrl-C")
	cluster := flag.Bool("cluster", false, "run on the real cluster of --kubeconfig, where the operator is deployed, instead of a local control plane")
	flag.StringVar(&kubectl, "kubectl", kubectl, "the kubectl the demo shows the fleet with")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *cluster {
		err = runCluster(ctx, *binary, clusterKubeconfig())
	} else {
		err = run(ctx, *binary, *assets, *hold)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// clusterKubeconfig is the kubeconfig of --cluster: --kubeconfig (a flag controller-runtime
// registers, so the demo reads it rather than defining its own), else $KUBECONFIG.
func clusterKubeconfig() string {
	if f := flag.Lookup("kubeconfig"); f != nil && f.Value.String() != "" {
		return f.Value.String()
	}
	return os.Getenv("KUBECONFIG")
}

func run(ctx context.Context, binary, assets string, hold bool) error {
	step("starting a local control plane (kube-apiserver + etcd) with the ilpfleet CRDs")
	os.Setenv("KUBEBUILDER_ASSETS", assets)
	env, err := testenv.Start()
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the control plane")
		_ = env.Stop()
	}()
	kubeconfig, err := writeKubeconfig(env)
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(kubeconfig))
	ports, err := pickPorts()
	if err != nil {
		return err
	}

	step("running the operator: " + binary + " manager")
	mgr, err := startProcess("operator", exec.Command(binary, "manager", "--kubeconfig", kubeconfig, "--health-probe-bind-address", "127.0.0.1:0"))
	if err != nil {
		return err
	}
	defer mgr.stop()

	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	step("applying config/samples (two connectors, their accounts and a route), adapted to run locally")
	if err := applyDir(ctx, c, filepath.Join(testenv.Root(), "config", "samples"), ports.localize); err != nil {
		return err
	}
	step("waiting for the operator to report on every Account and Route")
	if err := waitReported(ctx, c); err != nil {
		return fmt.Errorf("%w\noperator log:\n%s", err, mgr.log.String())
	}
	runtimes, err := startRuntimes(ctx, c, binary, kubeconfig)
	defer stopAll(runtimes)
	if err != nil {
		return err
	}
	step("kubectl get ilp")
	show(ctx, kubeconfig)
	fmt.Println("    (Connectors show Ready=False, WorkloadUnavailable: the operator sees no pods in their\n" +
		"    Deployments. The local runtimes above do the pods' work and report ConfigApplied,\n" +
		"    CONNECTED and BALANCE.)")
	if err := pay(ctx, c, binary, kubeconfig, ports, runtimes); err != nil {
		return err
	}
	if hold {
		step("the fleet is running; KUBECONFIG=" + kubeconfig + " kubectl get ilp — Ctrl-C to stop")
		<-ctx.Done()
	}
	return nil
}

func step(msg string) { fmt.Printf("\n==> %s\n", msg) }

// writeKubeconfig writes an admin kubeconfig for env into a fresh temporary folder.
func writeKubeconfig(env *envtest.Environment) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", err
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "ilpfleet-demo-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// applyDir server-side applies every object of every YAML file in dir (kustomization.yaml and
// the files named in skip aside), after edit (nil: none) has adapted it.
func applyDir(ctx context.Context, c client.Client, dir string, edit func(*unstructured.Unstructured), skip ...string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if base := filepath.Base(f); base == "kustomization.yaml" || slices.Contains(skip, base) {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := applyYAML(ctx, c, data, edit); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

// applyYAML server-side applies every object of a YAML stream in the namespace "default".
func applyYAML(ctx context.Context, c client.Client, data []byte, edit func(*unstructured.Unstructured)) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(bytes.NewReader(data)), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if len(obj.Object) == 0 {
			continue
		}
		obj.SetNamespace(namespace)
		if edit != nil {
			edit(&obj)
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(&obj), client.FieldOwner("ilpfleet-demo"), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		fmt.Printf("    %s/%s applied\n", obj.GetKind(), obj.GetName())
	}
}

// waitReported waits until every Account and Route has a Ready condition for its generation.
func waitReported(ctx context.Context, c client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		pending, err := unreported(ctx, c)
		if err != nil {
			return err
		}
		if pending == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no status yet for %s", pending)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func unreported(ctx context.Context, c client.Client) (string, error) {
	// The local demo's Connectors have no pods, so they are never Ready, nor all the Accounts
	// yet: what it waits for is that the operator has reported on each Account and Route.
	reported := func(conds []metav1.Condition, gen int64) string {
		if cond := meta.FindStatusCondition(conds, ilpv1.ConditionReady); cond == nil || cond.ObservedGeneration != gen {
			return "not reported on for its generation yet"
		}
		return ""
	}
	return firstPending(ctx, c, false, reported)
}

// firstPending names the first Account and Route of the demo's namespace (and Connector, when
// connectors is set) whose conditions fail check (which says why), and why; "" when none does.
func firstPending(ctx context.Context, c client.Client, connectors bool, check func([]metav1.Condition, int64) string) (string, error) {
	var conns ilpv1.ConnectorList
	var accounts ilpv1.AccountList
	var routes ilpv1.RouteList
	lists := []client.ObjectList{&accounts, &routes}
	if connectors {
		lists = append(lists, &conns)
	}
	for _, l := range lists {
		if err := c.List(ctx, l, client.InNamespace(namespace)); err != nil {
			return "", err
		}
	}
	for _, o := range conns.Items {
		if why := check(o.Status.Conditions, o.Generation); why != "" {
			return "Connector " + o.Name + ": " + why, nil
		}
	}
	for _, o := range accounts.Items {
		if why := check(o.Status.Conditions, o.Generation); why != "" {
			return "Account " + o.Name + ": " + why, nil
		}
	}
	for _, o := range routes.Items {
		if why := check(o.Status.Conditions, o.Generation); why != "" {
			return "Route " + o.Name + ": " + why, nil
		}
	}
	return "", nil
}

// kubectl is the kubectl show runs (--kubectl; the cluster demo passes the node's own).
var kubectl = "kubectl"

// show prints the fleet with kubectl when it is installed.
func show(ctx context.Context, kubeconfig string) {
	if _, err := exec.LookPath(kubectl); err != nil {
		fmt.Println("    (kubectl is not installed; KUBECONFIG=" + kubeconfig + " would show the fleet)")
		return
	}
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "get", "ilp", "-o", "wide")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
}
