package operator

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// routeConditions waits until the Route's ConfigApplied and Ready pass check.
func routeConditions(t *testing.T, ns, name string, check func(r *ilpv1.Route, applied, ready *metav1.Condition) error) {
	t.Helper()
	objectConditions(t, ns, name, &ilpv1.Route{}, func(r *ilpv1.Route) []metav1.Condition { return r.Status.Conditions }, check)
}

// TestRouteLeftOutIsNotReady: of two Routes with one prefix the pods run the older and leave the
// younger out, and say so on that Route themselves — through the Role the operator gives them,
// which names the Connector's Routes — ConfigApplied False LeftOut, and the operator's Ready
// follows it. Given its own prefix, the Route runs: True over the False, Ready True. The Route
// that always ran never gets a ConfigApplied.
func TestRouteLeftOutIsNotReady(t *testing.T) {
	ns := namespace(t)
	create(t, connectorObj(ns, "a", "test.a"), childAccount(ns, "a", "kid", freePort(t)))
	// Created in one second, the two tie on their creation timestamps: the name decides, and
	// old comes first.
	create(t, routeObj(ns, "a", "old", "test.x", "kid"))
	create(t, routeObj(ns, "a", "young", "test.x", "kid"))
	startRuntime(t, ns, "a")

	routeConditions(t, ns, "young", func(r *ilpv1.Route, applied, ready *metav1.Condition) error {
		switch {
		case applied == nil || applied.Status != metav1.ConditionFalse || applied.Reason != "LeftOut" ||
			applied.ObservedGeneration != r.Generation || !strings.Contains(applied.Message, `Route old already has prefix "test.x"`):
			return fmt.Errorf("ConfigApplied = %+v, want False LeftOut at generation %d naming Route old", applied, r.Generation)
		case ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != "ConfigNotApplied" || ready.Message != applied.Message:
			return fmt.Errorf("Ready = %+v, want False ConfigNotApplied with the pods' message", ready)
		}
		return nil
	})

	var young ilpv1.Route
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "young"}, &young); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(young.DeepCopy())
	young.Spec.TargetPrefix = "test.y"
	if err := k8s.Patch(context.Background(), &young, patch); err != nil {
		t.Fatal(err)
	}
	routeConditions(t, ns, "young", func(r *ilpv1.Route, applied, ready *metav1.Condition) error {
		return runsCurrent(r.Generation, applied, ready)
	})
	configApplied(t, ns, "a", isTrue)
	var old ilpv1.Route
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "old"}, &old); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(old.Status.Conditions, ilpv1.ConditionConfigApplied); c != nil {
		t.Errorf("old, never left out, got a ConfigApplied: %+v", c)
	}
}
