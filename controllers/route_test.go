package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// TestRouteReadyFollowsThePods: a Route the connector pods leave out — their ConfigApplied on
// the Route False at its generation — is not Ready (ConfigNotApplied, their message, so
// `kubectl wait --for=condition=Ready` does not pass), while its references still resolve and
// the operator's writes keep the pods' condition; a False about an older generation is not
// trusted, and a True brings Ready back. The Connector's ConfigApplied message is not read: a
// Route it lists is still Ready.
func TestRouteReadyFollowsThePods(t *testing.T) {
	ns := namespace(t)
	r := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r"},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}}
	r2 := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r2"},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}}
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), sampleConnector(ns), sampleAccount(ns, "bob", "alice"), r, r2)
	for _, rt := range []*ilpv1.Route{r, r2} {
		waitReady(t, rt, metav1.ConditionTrue, ReasonResolved)
	}

	// The Connector's message lists r: no longer read.
	applyPodCondition(t, "Connector", ns, "alice", &ilpv1.Connector{}, metav1.Condition{
		Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: "ObjectsLeftOut", ObservedGeneration: 1,
		Message: `alice-0 runs generation 1 with 1 accounts; left out: Route r: Route x already has prefix "test.bob"`,
	})
	// The pods leave r2 out: they say so on r2.
	const msg = `the connector pods leave this route out of their configuration: Route r already has prefix "test.bob"`
	applyPodCondition(t, "Route", ns, "r2", &ilpv1.Route{}, metav1.Condition{Type: ilpv1.ConditionConfigApplied,
		Status: metav1.ConditionFalse, Reason: "LeftOut", ObservedGeneration: r2.Generation, Message: msg})
	waitReady(t, r2, metav1.ConditionFalse, ReasonConfigNotApplied)
	assertReadyMessage(t, r2, msg)
	waitCondition(t, r2, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	if c := meta.FindStatusCondition(r2.Status.Conditions, ilpv1.ConditionConfigApplied); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("the operator's write dropped the pods' ConfigApplied: %+v", r2.Status.Conditions)
	}
	waitReady(t, r, metav1.ConditionTrue, ReasonResolved)

	// The user changes r2: a False about its previous generation no longer counts.
	update(t, r2, func(rt *ilpv1.Route) { rt.Spec.TargetPrefix = "test.bob2" })
	waitReady(t, r2, metav1.ConditionTrue, ReasonResolved)
	applyPodCondition(t, "Route", ns, "r2", &ilpv1.Route{}, metav1.Condition{Type: ilpv1.ConditionConfigApplied,
		Status: metav1.ConditionFalse, Reason: "LeftOut", ObservedGeneration: r2.Generation, Message: msg})
	waitReady(t, r2, metav1.ConditionFalse, ReasonConfigNotApplied)

	// Fixed: the pods run r2 again.
	applyPodCondition(t, "Route", ns, "r2", &ilpv1.Route{}, metav1.Condition{Type: ilpv1.ConditionConfigApplied,
		Status: metav1.ConditionTrue, Reason: "Applied", ObservedGeneration: r2.Generation, Message: "the connector pods run this route"})
	waitReady(t, r2, metav1.ConditionTrue, ReasonResolved)
}

// TestConnectorRoleNamesItsRoutes: the pods may write the status of their Connector's Routes,
// named in their Role as Routes come and go; not of another Connector's.
func TestConnectorRoleNamesItsRoutes(t *testing.T) {
	ns := namespace(t)
	route := func(name, conn string) *ilpv1.Route {
		return &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: ilpv1.RouteSpec{ConnectorRef: conn, TargetPrefix: "test." + name, NextHop: "bob"}}
	}
	r, other := route("r", "alice"), route("other", "carol")
	mustCreate(t, sampleConnector(ns), r, other)
	routesOf := func(want []string) {
		t.Helper()
		eventually(t, func() error {
			var role rbacv1.Role
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice-connector"}, &role); err != nil {
				return err
			}
			var got []string
			for _, rule := range role.Rules {
				if slices.Contains(rule.Resources, "routes/status") {
					got = rule.ResourceNames
				}
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("routes/status names %v, want %v", got, want)
			}
			return nil
		})
	}
	routesOf([]string{"r"})
	r2 := route("r2", "alice")
	mustCreate(t, r2)
	routesOf([]string{"r", "r2"})
	if err := k8s.Delete(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	routesOf([]string{"r2"})
	if err := k8s.Delete(context.Background(), r2); err != nil {
		t.Fatal(err)
	}
	routesOf(nil)
}

func assertReadyMessage(t *testing.T, rt *ilpv1.Route, want string) {
	t.Helper()
	for _, c := range rt.Status.Conditions {
		if c.Type == ilpv1.ConditionReady && c.Message != want {
			t.Errorf("Route %s Ready message = %q, want %q", rt.Name, c.Message, want)
		}
	}
}
