package controllers

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// TestRevertMidRollIsStillARoll: a roll to a new image is reverted before it finished
// (the usual answer to an image that does not pull). The workload now rolls back to the
// template of status.rolledOutTemplate while pods of the abandoned template still run:
// Progressing must stay True until the roll back is done.
func TestRevertMidRollIsStillARoll(t *testing.T) {
	ns, conn := rolledOutConnector(t)
	orig := get(t, ns, "alice", conn).Spec.Image

	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Image = "example/ilpfleet:broken" })
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, "ImageChanged")
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Image = orig }) // revert
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, "ImageChanged")

	// The Deployment controller rolls back: one pod of the abandoned template, one new pod of
	// the current one, not available yet.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		dep := get(t, ns, "alice", &appsv1.Deployment{})
		dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 2, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
		return k8s.Status().Update(context.Background(), dep)
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { // the reconcile that read that status has written it
		if c := get(t, ns, "alice", conn); c.Status.Replicas != 2 {
			return fmt.Errorf("status.replicas %d", c.Status.Replicas)
		}
		return nil
	})
	if c := meta.FindStatusCondition(conn.Status.Conditions, ilpv1.ConditionProgressing); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("while the roll back replaces a pod of the abandoned template, Progressing = %+v (rolledOutTemplate %q), want True", c, conn.Status.RolledOutTemplate)
	}
}
