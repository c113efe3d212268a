// Command demo is `make demo`: it starts a local control plane (the kube-apiserver and etcd that
// hack/envtest-assets.sh builds), installs the CRDs, runs `ilpfleet manager` against it, applies
// config/samples, shows the fleet, and stops everything it started on exit or Ctrl-C.
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
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

func main() {
	binary := flag.String("binary", "bin/ilpfleet", "the ilpfleet binary to run as the manager")
	assets := flag.String("assets", os.Getenv("KUBEBUILDER_ASSETS"), "folder with kube-apiserver and etcd")
	hold := flag.Bool("hold", false, "keep the fleet running until Ctrl-C")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *binary, *assets, *hold); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
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

	step("running the operator: " + binary + " manager")
	mgr, err := startManager(binary, kubeconfig)
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the operator")
		mgr.stop()
	}()

	c, err := client.New(env.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	step("applying config/samples (two connectors, their accounts and a route)")
	if err := applyDir(ctx, c, filepath.Join(testenv.Root(), "config", "samples")); err != nil {
		return err
	}
	step("waiting for the operator to report on every Account and Route")
	if err := waitReported(ctx, c); err != nil {
		return fmt.Errorf("%w\noperator log:\n%s", err, mgr.log.String())
	}
	step("kubectl get ilp")
	show(ctx, kubeconfig)
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

type process struct {
	cmd *exec.Cmd
	log *bytes.Buffer
}

// startManager runs the manager in its own process group so that stop ends it and anything it started.
func startManager(binary, kubeconfig string) (*process, error) {
	p := &process{log: &bytes.Buffer{}}
	p.cmd = exec.Command(binary, "manager", "--kubeconfig", kubeconfig, "--health-probe-bind-address", "127.0.0.1:0")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	return p, nil
}

func (p *process) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// applyDir server-side applies every object of every YAML file in dir (kustomization.yaml aside).
func applyDir(ctx context.Context, c client.Client, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		if err := applyFile(ctx, c, f); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
	}
	return nil
}

func applyFile(ctx context.Context, c client.Client, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
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
		obj.SetNamespace("default")
		if err := c.Patch(ctx, &obj, client.Apply, client.FieldOwner("ilpfleet-demo"), client.ForceOwnership); err != nil {
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
	var accounts ilpv1.AccountList
	var routes ilpv1.RouteList
	if err := c.List(ctx, &accounts, client.InNamespace("default")); err != nil {
		return "", err
	}
	if err := c.List(ctx, &routes, client.InNamespace("default")); err != nil {
		return "", err
	}
	for _, a := range accounts.Items {
		if cond := meta.FindStatusCondition(a.Status.Conditions, ilpv1.ConditionReady); cond == nil || cond.ObservedGeneration != a.Generation {
			return "Account " + a.Name, nil
		}
	}
	for _, r := range routes.Items {
		if cond := meta.FindStatusCondition(r.Status.Conditions, ilpv1.ConditionReady); cond == nil || cond.ObservedGeneration != r.Generation {
			return "Route " + r.Name, nil
		}
	}
	return "", nil
}

// show prints the fleet with kubectl when it is installed.
func show(ctx context.Context, kubeconfig string) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Println("    (kubectl is not installed; KUBECONFIG=" + kubeconfig + " would show the fleet)")
		return
	}
	cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "get", "ilp", "-o", "wide")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
}
