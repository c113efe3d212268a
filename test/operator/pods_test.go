package operator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
)

// podEntries returns the Connector and its status.pods by pod name.
func podEntries(ns, name string) (*ilpv1.Connector, map[string]ilpv1.ConnectorPodStatus, error) {
	var c ilpv1.Connector
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &c); err != nil {
		return nil, nil, err
	}
	m := map[string]ilpv1.ConnectorPodStatus{}
	for _, p := range c.Status.Pods {
		m[p.Name] = p
	}
	return &c, m, nil
}

// checkPods checks the two entries: pod-0 applied the current generation, pod-1 failed to.
func checkPods(c *ilpv1.Connector, m map[string]ilpv1.ConnectorPodStatus) error {
	ok, bad := m["c-pod-0"], m["c-pod-1"]
	switch {
	case len(m) != 2:
		return fmt.Errorf("want 2 pod entries, have %+v", c.Status.Pods)
	case !ok.Applied || ok.Reason != "Applied" || ok.AppliedGeneration != c.Generation:
		return fmt.Errorf("c-pod-0: %+v", ok)
	case bad.Applied || bad.Reason != "ApplyFailed" || bad.AppliedGeneration != c.Generation || !strings.Contains(bad.Message, "injected start failure"):
		return fmt.Errorf("c-pod-1: %+v", bad)
	case ok.LastTransitionTime.IsZero() || bad.LastTransitionTime.IsZero():
		return fmt.Errorf("no lastTransitionTime: %+v", c.Status.Pods)
	}
	return nil
}

// TestPerPodStatus: two pods of one Connector each write their own entry of status.pods under
// their own field manager — one that applied the config, one whose runtime fails to start —
// whichever holds the Lease, and the operator's status writes leave both entries alone.
func TestPerPodStatus(t *testing.T) {
	ns := namespace(t)
	create(t, connectorObj(ns, "c", "test.c"), childAccount(ns, "c", "kid", freePort(t)))
	// c-pod-0 starts first and takes the Lease, so ConfigApplied stays its (True) and only
	// status.pods tells of c-pod-1's failure.
	startRuntimePod(t, ns, "c", "c-pod-0", nil)
	configApplied(t, ns, "c", isTrue)
	startRuntimePod(t, ns, "c", "c-pod-1", errors.New("injected start failure"))

	eventually(t, "both pod entries", func() error {
		c, m, err := podEntries(ns, "c")
		if err != nil {
			return err
		}
		return checkPods(c, m)
	})
	c, _, _ := podEntries(ns, "c")
	owners := map[string]bool{}
	for _, f := range c.ManagedFields {
		if f.Subresource == "status" {
			owners[f.Manager] = true
		}
	}
	for _, pod := range []string{"c-pod-0", "c-pod-1"} {
		if !owners[kube.PodFieldManager(pod)] {
			t.Errorf("no status fields owned by %s; managers %v", kube.PodFieldManager(pod), owners)
		}
	}

	// The operator writes status with optimistically locked merge patches of its own fields:
	// here it records the workload's ready pods.
	markAvailable(t, ns, "c")
	eventually(t, "operator's readyReplicas", func() error {
		c, _, err := podEntries(ns, "c")
		if err != nil {
			return err
		}
		if c.Status.ReadyReplicas != 1 {
			return fmt.Errorf("readyReplicas %d", c.Status.ReadyReplicas)
		}
		return nil
	})
	// c-pod-1 exists and cannot apply the config: the Connector is not Ready for it.
	ready(t, ns, "c", metav1.ConditionFalse, "ConfigNotApplied")

	// The same kind of write from here, on a copy read before: it must not drop the entries.
	c, _, _ = podEntries(ns, "c")
	orig := c.DeepCopy()
	c.Status.Image = "ilpfleet:other"
	if err := k8s.Status().Patch(context.Background(), c, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		t.Fatal(err)
	}
	c, m, err := podEntries(ns, "c")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkPods(c, m); err != nil {
		t.Fatalf("after the operator's writes: %v", err)
	}

	// c-pod-1's failure keeps the Connector not Ready, though the Lease holder's ConfigApplied
	// is True. A new generation reaches both entries (each pod still writing only its own)
	// and wakes the operator.
	patch := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"maxHoldTime":"25s"}}`))
	if err := k8s.Patch(context.Background(), &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "c"}}, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both pod entries at the new generation", func() error {
		c, m, err := podEntries(ns, "c")
		if err != nil {
			return err
		}
		if c.Generation < 2 {
			return fmt.Errorf("generation %d", c.Generation)
		}
		return checkPods(c, m)
	})
	ready(t, ns, "c", metav1.ConditionFalse, "ConfigNotApplied")
	c, _, _ = podEntries(ns, "c")
	if r := meta.FindStatusCondition(c.Status.Conditions, ilpv1.ConditionReady); !strings.HasPrefix(r.Message, "c-pod-1 has not started: ") {
		t.Errorf("Ready message %q does not name the failing pod", r.Message)
	}
	if a := meta.FindStatusCondition(c.Status.Conditions, ilpv1.ConditionConfigApplied); a.Status != metav1.ConditionTrue {
		t.Errorf("ConfigApplied %s %s: %s; want the Lease holder's True", a.Status, a.Reason, a.Message)
	}
}
