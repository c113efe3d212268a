package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// RouteReconciler checks that a Route's Connector and next-hop Account exist, and makes its
// Ready follow the connector pods: False (ConfigNotApplied) while they leave the Route out of
// their configuration, as an Account's Ready follows its ConfigApplied.
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
	// A merge patch without optimistic locking: this controller is the only writer of these fields.
	if err := r.Status().Patch(ctx, &route, client.MergeFrom(orig)); err != nil {
		return ctrl.Result{}, err
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
	var conn ilpv1.Connector
	if err := r.Get(ctx, client.ObjectKey{Namespace: route.Namespace, Name: route.Spec.ConnectorRef}, &conn); err != nil {
		if client.IgnoreNotFound(err) != nil {
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
	return routeState{reason: ReasonResolved, msg: fmt.Sprintf("packets for %s go to account %s", route.Spec.TargetPrefix, hop.Name),
		leftOut: routeLeftOut(route, &hop, &conn)}, nil
}

// routeLeftOut says why the connector pods leave the Route out of their configuration, or ""
// when they do not. The pods write no condition on a Route; two things tell:
//   - the next-hop Account is left out (its ConfigApplied False at its generation, as
//     leftOut reads it): the pods then drop every Route through it;
//   - the Connector's ConfigApplied lists the Route among the objects left out (reason
//     ObjectsLeftOut), for its next hop or a prefix an older Route has. That list is the
//     pods' latest, whatever the Connector's generation: a Route change does not change it.
func routeLeftOut(route *ilpv1.Route, hop *ilpv1.Account, conn *ilpv1.Connector) string {
	if c := leftOut(hop); c != nil {
		return fmt.Sprintf("the connector pods leave this route out of their configuration: its next-hop Account %s is left out (%s)", hop.Name, c.Message)
	}
	c := meta.FindStatusCondition(conn.Status.Conditions, ilpv1.ConditionConfigApplied)
	if c == nil || c.Status != metav1.ConditionFalse {
		return ""
	}
	if why, ok := leftOutObject(c.Message, "Route", route.Name); ok {
		return "the connector pods leave this route out of their configuration: " + why
	}
	return ""
}

// leftOutObject finds the object of that kind and name in a ConfigApplied message of the
// pods, "<pod> runs generation N with M accounts; left out: <Kind> <name>: <why>; …" (the
// list sorted, each entry "Kind name: why"), and returns its why. A Route's why never holds
// "; "; an entry cut off by the pods' truncation of long messages is not found.
func leftOutObject(msg, kind, name string) (string, bool) {
	const list = "; left out: "
	i := strings.Index(msg, list)
	if i < 0 {
		return "", false
	}
	entries := "; " + msg[i+len(list):]
	key := "; " + kind + " " + name + ": "
	j := strings.Index(entries, key)
	if j < 0 {
		return "", false
	}
	why := entries[j+len(key):]
	for _, next := range []string{"; Account ", "; Route "} {
		if k := strings.Index(why, next); k >= 0 {
			why = why[:k]
		}
	}
	return why, true
}

// SetupWithManager registers the controller; Connector changes (its pods' ConfigApplied
// included) and Account changes (a next hop left out) re-check Routes.
func (r *RouteReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&ilpv1.Route{}).
		Watches(&ilpv1.Connector{}, handler.EnqueueRequestsFromMapFunc(referrers(mgr.GetClient(), &ilpv1.RouteList{}))).
		Watches(&ilpv1.Account{}, handler.EnqueueRequestsFromMapFunc(routesViaAccount(mgr.GetClient()))).
		Complete(r)
}
