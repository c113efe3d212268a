package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// RouteReconciler checks that a Route's Connector and next-hop Account exist, and makes its
// Ready follow the connector pods: False (ConfigNotApplied) while they leave the Route out of
// their configuration, as their ConfigApplied on the Route says (False at its generation: a
// next hop they leave out, a prefix an older Route has), as an Account's Ready follows its
// own. The pods are the only writer of that condition.
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
	res, err := r.resolve(ctx, &route)
	if err != nil {
		return ctrl.Result{}, err
	}
	ok := res.reason == ReasonResolved
	st := &route.Status.BaseStatus
	setCondition(&route, st, ilpv1.ConditionReferencesResolved, ok, res.reason, res.msg)
	switch {
	case !ok:
		setCondition(&route, st, ilpv1.ConditionReady, false, res.reason, res.msg)
	case res.leftOut != "":
		setCondition(&route, st, ilpv1.ConditionReady, false, ReasonConfigNotApplied, res.leftOut)
	default:
		setCondition(&route, st, ilpv1.ConditionReady, true, res.reason, res.msg)
	}
	if !ok && r.Recorder != nil && !equality.Semantic.DeepEqual(before.Conditions, route.Status.Conditions) {
		r.Recorder.Eventf(&route, nil, corev1.EventTypeWarning, res.reason, "Resolve", "%s", res.msg)
	}
	if equality.Semantic.DeepEqual(before, &route.Status) {
		return ctrl.Result{}, nil
	}
	// With optimistic locking: the merge patch replaces the whole conditions list, and the
	// pods write their ConfigApplied into it.
	if result, err := patchStatus(ctx, r.Client, &route, orig); err != nil || !result.IsZero() {
		return result, err
	}
	if was, again := resolvedAgain(before.Conditions, route.Status.Conditions); again && r.Recorder != nil {
		r.Recorder.Eventf(&route, nil, corev1.EventTypeNormal, ReasonResolved, "Resolve", "%s now; before: %s: %s", res.msg, was.Reason, was.Message)
	}
	return ctrl.Result{}, nil
}

// routeState is what Reconcile makes of a Route's references: the reason and message of
// ReferencesResolved and, once they resolve, why the pods leave the Route out ("" when they
// do not).
type routeState struct {
	reason, msg string
	leftOut     string
}

// resolve checks the Route's references and, once they resolve, what the pods make of it.
func (r *RouteReconciler) resolve(ctx context.Context, route *ilpv1.Route) (routeState, error) {
	if ok, err := connectorExists(ctx, r.Client, route.Namespace, route.Spec.ConnectorRef); err != nil || !ok {
		if err != nil {
			return routeState{}, err
		}
		return routeState{reason: ReasonConnectorNotFound, msg: fmt.Sprintf("Connector %q does not exist in namespace %s", route.Spec.ConnectorRef, route.Namespace)}, nil
	}
	var hop ilpv1.Account
	if err := r.Get(ctx, client.ObjectKey{Namespace: route.Namespace, Name: route.Spec.NextHop}, &hop); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return routeState{}, err
		}
		return routeState{reason: "NextHopNotFound", msg: fmt.Sprintf("next-hop Account %q does not exist in namespace %s", route.Spec.NextHop, route.Namespace)}, nil
	}
	if hop.Spec.ConnectorRef != route.Spec.ConnectorRef {
		return routeState{reason: "NextHopOfOtherConnector", msg: fmt.Sprintf("next-hop Account %q belongs to Connector %q, not %q", hop.Name, hop.Spec.ConnectorRef, route.Spec.ConnectorRef)}, nil
	}
	st := routeState{reason: ReasonResolved, msg: fmt.Sprintf("packets for %s go to account %s", route.Spec.TargetPrefix, hop.Name)}
	if c := podsFalse(route, route.Status.Conditions); c != nil {
		st.leftOut = c.Message
	}
	return st, nil
}

// SetupWithManager registers the controller. Route changes (the pods' ConfigApplied included)
// re-check the Route; of its Connector and next-hop Account only a creation or a deletion
// does (routeRefsChanged): their updates, the pods' balances among them, change nothing here.
func (r *RouteReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&ilpv1.Route{}).
		Watches(&ilpv1.Connector{}, handler.EnqueueRequestsFromMapFunc(referrers(mgr.GetClient(), &ilpv1.RouteList{})), builder.WithPredicates(routeRefsChanged)).
		Watches(&ilpv1.Account{}, handler.EnqueueRequestsFromMapFunc(routesViaAccount(mgr.GetClient())), builder.WithPredicates(routeRefsChanged)).
		Complete(quietWhenNamespaceGoes(r))
}

// routeRefsChanged are the Connector and Account events that may change what a Route's
// references resolve to: creations and deletions (an object being deleted included). An
// Account's connectorRef is immutable, and the pods say on the Route itself whether they run
// it.
var routeRefsChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
	},
}

// connectorOfRoute maps a Route to the Connector it names, whose pods' Role names the Route.
func connectorOfRoute(_ context.Context, o client.Object) []reconcile.Request {
	rt := o.(*ilpv1.Route)
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: rt.Namespace, Name: rt.Spec.ConnectorRef}}}
}

// routeComesOrGoes are the Route events that change its Connector's Role (the Routes whose
// status its pods may write): a creation or a deletion. A Route's name and connectorRef never
// change.
var routeComesOrGoes = predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }}
