// Package controllers is the ilpfleet operator: one reconciler per kind of the
// ilp.ilpfleet.dev API. Controllers never write spec; they report through status conditions
// (with observedGeneration) and Events.
package controllers

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// fieldConnectorRef indexes Accounts and Routes by the Connector they name.
const fieldConnectorRef = ".spec.connectorRef"

// conflictRetry is how soon a reconcile whose status write lost a race runs again.
const conflictRetry = 200 * time.Millisecond

// patchStatus writes the status of obj as changed since orig, with optimistic locking: a
// merge patch replaces the whole conditions list, so a reconcile that read a stale copy must
// not drop what others wrote into it (the pods' ConfigApplied, the reason a rollout started
// with). A conflict means newer data exists: the result asks for another reconcile soon.
func patchStatus(ctx context.Context, c client.Client, obj, orig client.Object) (ctrl.Result, error) {
	err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	return ctrl.Result{}, err
}

// setCondition records a True (ok) or False condition at the object's current generation.
func setCondition(obj client.Object, status *ilpv1.BaseStatus, typ string, ok bool, reason, msg string) {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	setConditionStatus(obj, status, typ, s, reason, msg)
}

// setConditionStatus records a condition of any status (Unknown included) at the object's
// current generation.
func setConditionStatus(obj client.Object, status *ilpv1.BaseStatus, typ string, s metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: obj.GetGeneration(),
	})
	status.ObservedGeneration = obj.GetGeneration()
}

// connectorExists reports whether the named Connector exists in ns.
func connectorExists(ctx context.Context, c client.Client, ns, name string) (bool, error) {
	var conn ilpv1.Connector
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &conn)
	if err == nil {
		return true, nil
	}
	return false, client.IgnoreNotFound(err)
}
