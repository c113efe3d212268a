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

// ConnectorReconciler reports a Connector's address, its accounts and whether its references
// resolve. Running the connector workload is the job of a later version (issue 6): until then
// Ready stays False with reason WorkloadNotManaged, so that no printer column claims pods exist.
type ConnectorReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=connectors,verbs=get;list;watch
// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=connectors/status,verbs=get;update;patch

// Reconcile writes the Connector's status.
func (r *ConnectorReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var conn ilpv1.Connector
	if err := r.Get(ctx, req.NamespacedName, &conn); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := conn.DeepCopy()
	before := &orig.Status
	var accounts ilpv1.AccountList
	if err := r.List(ctx, &accounts, client.InNamespace(conn.Namespace), client.MatchingFields{fieldConnectorRef: conn.Name}); err != nil {
		return ctrl.Result{}, err
	}
	conn.Status.Accounts = int32(len(accounts.Items))
	conn.Status.Address = conn.Spec.ILPAddress

	reason, msg := "Resolved", "every reference resolves"
	if from := conn.Spec.InheritAddressFrom; from != "" {
		reason, msg = inheritReason(accounts.Items, from)
	}
	setCondition(&conn, &conn.Status.BaseStatus, ilpv1.ConditionReferencesResolved, reason == "Resolved", reason, msg)
	setCondition(&conn, &conn.Status.BaseStatus, ilpv1.ConditionReady, false, "WorkloadNotManaged",
		"this operator version validates Connectors but does not run connector pods yet")
	if reason != "Resolved" && r.Recorder != nil && !equality.Semantic.DeepEqual(before.Conditions, conn.Status.Conditions) {
		r.Recorder.Eventf(&conn, nil, "Warning", reason, "Resolve", msg)
	}
	if equality.Semantic.DeepEqual(before, &conn.Status) {
		return ctrl.Result{}, nil
	}
	// A merge patch without optimistic locking: this controller is the only writer of these fields.
	return ctrl.Result{}, r.Status().Patch(ctx, &conn, client.MergeFrom(orig))
}

// inheritReason checks that the account to inherit the address from exists and is a parent.
func inheritReason(accounts []ilpv1.Account, name string) (reason, msg string) {
	for _, a := range accounts {
		if a.Name != name {
			continue
		}
		if a.Spec.Relation != ilpv1.RelationParent {
			return "InheritFromNotParent", fmt.Sprintf("inheritAddressFrom names Account %q whose relation is %s, not parent", name, a.Spec.Relation)
		}
		return "Resolved", "every reference resolves"
	}
	return "InheritFromNotFound", fmt.Sprintf("inheritAddressFrom names Account %q, which does not exist for this connector", name)
}

// SetupWithManager registers the controller; Account changes update the Connector's status.
func (r *ConnectorReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&ilpv1.Connector{}).
		Watches(&ilpv1.Account{}, handler.EnqueueRequestsFromMapFunc(connectorOf)).
		Complete(r)
}
