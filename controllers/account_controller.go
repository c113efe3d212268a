package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// AccountReconciler checks that an Account's Connector exists and reports it in conditions.
type AccountReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=accounts,verbs=get;list;watch
// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=accounts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile resolves the Account's references and writes its status.
func (r *AccountReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var acct ilpv1.Account
	if err := r.Get(ctx, req.NamespacedName, &acct); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := acct.DeepCopy()
	before := &orig.Status
	found, err := connectorExists(ctx, r.Client, acct.Namespace, acct.Spec.ConnectorRef)
	if err != nil {
		return ctrl.Result{}, err
	}
	if found {
		setCondition(&acct, &acct.Status.BaseStatus, ilpv1.ConditionReferencesResolved, true, "Resolved", "Connector "+acct.Spec.ConnectorRef+" exists")
		setCondition(&acct, &acct.Status.BaseStatus, ilpv1.ConditionReady, true, "Resolved", "the account is valid and its connector exists")
	} else {
		msg := fmt.Sprintf("Connector %q does not exist in namespace %s", acct.Spec.ConnectorRef, acct.Namespace)
		setCondition(&acct, &acct.Status.BaseStatus, ilpv1.ConditionReferencesResolved, false, "ConnectorNotFound", msg)
		setCondition(&acct, &acct.Status.BaseStatus, ilpv1.ConditionReady, false, "ConnectorNotFound", msg)
		if r.Recorder != nil && !equality.Semantic.DeepEqual(before.Conditions, acct.Status.Conditions) {
			r.Recorder.Eventf(&acct, nil, "Warning", "ConnectorNotFound", "Resolve", msg)
		}
	}
	if equality.Semantic.DeepEqual(before, &acct.Status) {
		return ctrl.Result{}, nil
	}
	// A merge patch without optimistic locking: this controller is the only writer of these fields.
	return ctrl.Result{}, r.Status().Patch(ctx, &acct, client.MergeFrom(orig))
}

// SetupWithManager registers the controller; a Connector change re-checks the Accounts naming it.
func (r *AccountReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&ilpv1.Account{}).
		Watches(&ilpv1.Connector{}, handler.EnqueueRequestsFromMapFunc(referrers(mgr.GetClient(), &ilpv1.AccountList{}))).
		Complete(r)
}
