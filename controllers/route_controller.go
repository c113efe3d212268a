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

// RouteReconciler checks that a Route's Connector and next-hop Account exist.
type RouteReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=routes,verbs=get;list;watch
// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=routes/status,verbs=get;update;patch

// Reconcile resolves the Route's references and writes its status.
func (r *RouteReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var route ilpv1.Route
	if err := r.Get(ctx, req.NamespacedName, &route); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := route.DeepCopy()
	before := &orig.Status
	reason, msg, err := r.resolve(ctx, &route)
	if err != nil {
		return ctrl.Result{}, err
	}
	ok := reason == "Resolved"
	setCondition(&route, &route.Status.BaseStatus, ilpv1.ConditionReferencesResolved, ok, reason, msg)
	setCondition(&route, &route.Status.BaseStatus, ilpv1.ConditionReady, ok, reason, msg)
	if !ok && r.Recorder != nil && !equality.Semantic.DeepEqual(before.Conditions, route.Status.Conditions) {
		r.Recorder.Eventf(&route, nil, "Warning", reason, "Resolve", "%s", msg)
	}
	if equality.Semantic.DeepEqual(before, &route.Status) {
		return ctrl.Result{}, nil
	}
	// A merge patch without optimistic locking: this controller is the only writer of these fields.
	return ctrl.Result{}, r.Status().Patch(ctx, &route, client.MergeFrom(orig))
}

// resolve returns the reason and message for the route's references.
func (r *RouteReconciler) resolve(ctx context.Context, route *ilpv1.Route) (reason, msg string, err error) {
	found, err := connectorExists(ctx, r.Client, route.Namespace, route.Spec.ConnectorRef)
	if err != nil || !found {
		return "ConnectorNotFound", fmt.Sprintf("Connector %q does not exist in namespace %s", route.Spec.ConnectorRef, route.Namespace), err
	}
	var hop ilpv1.Account
	if err := r.Get(ctx, client.ObjectKey{Namespace: route.Namespace, Name: route.Spec.NextHop}, &hop); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return "", "", err
		}
		return "NextHopNotFound", fmt.Sprintf("next-hop Account %q does not exist in namespace %s", route.Spec.NextHop, route.Namespace), nil
	}
	if hop.Spec.ConnectorRef != route.Spec.ConnectorRef {
		return "NextHopOfOtherConnector", fmt.Sprintf("next-hop Account %q belongs to Connector %q, not %q", hop.Name, hop.Spec.ConnectorRef, route.Spec.ConnectorRef), nil
	}
	return "Resolved", fmt.Sprintf("packets for %s go to account %s", route.Spec.TargetPrefix, hop.Name), nil
}

// SetupWithManager registers the controller; Connector and Account changes re-check Routes.
func (r *RouteReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&ilpv1.Route{}).
		Watches(&ilpv1.Connector{}, handler.EnqueueRequestsFromMapFunc(referrers(mgr.GetClient(), &ilpv1.RouteList{}))).
		Watches(&ilpv1.Account{}, handler.EnqueueRequestsFromMapFunc(routesViaAccount(mgr.GetClient()))).
		Complete(r)
}
