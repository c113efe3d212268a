package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// connectors are the sample Connectors the demo runs, in start order.
var connectors = []string{"alice", "bob"}

// startRuntimes runs one `ilpfleet connector --source=kubernetes` process per Connector, as its
// pod would (the control plane has no kubelet, so the operator's Deployments never get pods),
// and waits until each reports ConfigApplied=True for its Connector's generation. It returns
// the processes started so far even on error, for the caller to stop.
func startRuntimes(ctx context.Context, c client.Client, binary, kubeconfig string) ([]*process, error) {
	step("starting the connector runtimes as local processes standing in for the pods\n" +
		"    (this control plane has no kubelet, so the operator's Deployments never get pods)")
	var ps []*process
	for _, name := range connectors {
		cmd := exec.Command(binary, "connector", "--source=kubernetes", "--connector="+name)
		// What the pod gets from the operator: POD_NAMESPACE and POD_NAME from the downward
		// API, the API server from its ServiceAccount; here the demo's admin kubeconfig.
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAMESPACE="+namespace, "POD_NAME="+name+"-local")
		fmt.Printf("    POD_NAMESPACE=%s POD_NAME=%s-local KUBECONFIG=<demo admin> %s\n", namespace, name, strings.Join(cmd.Args, " "))
		p, err := startProcess("connector runtime "+name, cmd)
		if err != nil {
			return ps, err
		}
		ps = append(ps, p)
	}
	step("waiting for each runtime to report ConfigApplied=True on its Connector")
	for i, name := range connectors {
		cond, err := waitConfigApplied(ctx, c, name, ps[i])
		if err != nil {
			return ps, err
		}
		fmt.Printf("    Connector %s: %s\n", name, cond.Message)
	}
	step("waiting for bob to dial alice (status.connected of the peer Accounts)")
	for _, name := range []string{"alice-bob", "bob-alice"} {
		if err := waitConnected(ctx, c, name, ps, 30*time.Second); err != nil {
			return ps, err
		}
	}
	fmt.Println("    alice-bob and bob-alice are connected")
	return ps, nil
}

// waitConnected waits, at most limit, until the runtime reports Account name connected.
func waitConnected(ctx context.Context, c client.Client, name string, ps []*process, limit time.Duration) error {
	return poll(ctx, limit, "status.connected of Account "+name, ps, func() (bool, error) {
		var a ilpv1.Account
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &a); err != nil {
			return false, err
		}
		return a.Status.Connected, nil
	})
}

// waitConfigApplied waits until Connector name has ConfigApplied=True for its generation,
// with every Account that references it. Adding an Account does not change the Connector's
// generation, so the count in the condition's message ("runs generation 1 with 3 accounts")
// is what tells that the runtime took the new one.
func waitConfigApplied(ctx context.Context, c client.Client, name string, p *process) (*metav1.Condition, error) {
	var cond *metav1.Condition
	err := poll(ctx, 30*time.Second, "ConfigApplied=True on Connector "+name, []*process{p}, func() (bool, error) {
		var conn ilpv1.Connector
		var accounts ilpv1.AccountList
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &conn); err != nil {
			return false, err
		}
		if err := c.List(ctx, &accounts, client.InNamespace(namespace)); err != nil {
			return false, err
		}
		n := 0
		for _, a := range accounts.Items {
			if a.Spec.ConnectorRef == name {
				n++
			}
		}
		cond = meta.FindStatusCondition(conn.Status.Conditions, ilpv1.ConditionConfigApplied)
		return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == conn.Generation &&
			strings.Contains(cond.Message, fmt.Sprintf(" with %d accounts", n)), nil
	})
	return cond, err
}

// poll calls done every 200 ms until it reports true, for at most limit. It fails early, with
// the process's log, when one of ps has exited.
func poll(ctx context.Context, limit time.Duration, what string, ps []*process, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		ok, err := done()
		if ok {
			return nil
		}
		for _, p := range ps {
			if p.exited() {
				return fmt.Errorf("the %s exited while waiting for %s; its log:\n%s", p.name, what, p.log.String())
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("waiting for %s: %w%s", what, err, logs(ps))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// logs renders the output of ps for an error message.
func logs(ps []*process) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\n--- log of the %s ---\n%s", p.name, p.log.String())
	}
	return b.String()
}
