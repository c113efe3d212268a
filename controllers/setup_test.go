package controllers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestReconcileEndsQuietlyWhenNamespaceGoes: in a namespace being deleted, the Connector
// reconciler's recreation of an owned object the namespace controller deleted first is refused
// by the API server (NamespaceTerminating); wrapped, a reconcile that meets that refusal ends
// without an error (nothing logged as a "Reconciler error", no retries), and other errors
// still come through.
func TestReconcileEndsQuietlyWhenNamespaceGoes(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	mustCreate(t, sampleConnector(ns))
	dep := &appsv1.Deployment{}
	eventually(t, func() error { return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "alice"}, dep) })

	if err := k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, dep); err != nil { // as the namespace controller would, in any order
		t.Fatal(err)
	}
	r := &ConnectorReconciler{Client: managerClient, Reader: k8s, Options: Options{ConnectorImage: "ilpfleet:test"}}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "alice"}}
	var err error
	eventually(t, func() error { // the Deployment's deletion may still be under way
		_, err = r.Reconcile(ctx, req)
		if !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return fmt.Errorf("bare reconcile: %v; want the API server's NamespaceTerminating refusal", err)
		}
		return nil
	})
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "ilp.ilpfleet.dev", Resource: "connectors"}, "alice", errors.New("changed"))
	for _, tc := range []struct {
		err   error
		quiet bool
	}{
		{err, true}, // the refusal, as the reconciler returned it
		{conflict, false},
	} {
		inner := reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
			return reconcile.Result{RequeueAfter: time.Second}, tc.err
		})
		res, got := quietWhenNamespaceGoes(inner).Reconcile(ctx, req)
		if tc.quiet && (got != nil || !res.IsZero()) || !tc.quiet && got != tc.err {
			t.Errorf("wrapped reconcile of %v: %+v, %v; want quiet %t", tc.err, res, got, tc.quiet)
		}
	}
}
