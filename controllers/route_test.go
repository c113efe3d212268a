package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// TestRouteReadyFollowsThePods: a Route the connector pods leave out — its next-hop Account
// left out, or the Route listed among the objects left out in the Connector's ConfigApplied —
// is not Ready (ConfigNotApplied, so `kubectl wait --for=condition=Ready` does not pass),
// while its references still resolve; it is Ready again once the pods run it.
func TestRouteReadyFollowsThePods(t *testing.T) {
	ns := namespace(t)
	bob, clash := sampleAccount(ns, "bob", "alice"), sampleAccount(ns, "clash3", "alice")
	clash.Spec.Link.BTPListener.Port = 7768 // bob's: the pods leave the younger one out
	r := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r"},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}}
	r2 := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r2"},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}}
	r3 := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r3"},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.clash", NextHop: "clash3"}}
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), sampleConnector(ns), bob, clash, r, r2, r3)
	for _, rt := range []*ilpv1.Route{r, r2, r3} {
		waitReady(t, rt, metav1.ConditionTrue, ReasonResolved)
	}

	// The pods leave clash3 out, and with it r3; and r2, whose prefix the older r has.
	const leftOutMsg = `the connector pods leave this account out of their configuration: port 7768 is already used by account "bob"`
	applyConfigApplied(t, ns, "clash3", metav1.ConditionFalse, "LeftOut", leftOutMsg, clash.Generation)
	applyPodCondition(t, "Connector", ns, "alice", &ilpv1.Connector{}, metav1.Condition{
		Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: "ObjectsLeftOut", ObservedGeneration: 1,
		Message: `alice-0 runs generation 1 with 1 accounts; left out: Account clash3: port 7768 is already used by account "bob"; ` +
			`Route r2: Route r already has prefix "test.bob"; Route r3: next hop "clash3" is not a configured account of this connector`,
	})
	waitReady(t, r3, metav1.ConditionFalse, ReasonConfigNotApplied)
	waitReady(t, r2, metav1.ConditionFalse, ReasonConfigNotApplied)
	waitCondition(t, r3, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	assertReadyMessage(t, r2, `the connector pods leave this route out of their configuration: Route r already has prefix "test.bob"`)
	waitReady(t, r, metav1.ConditionTrue, ReasonResolved)

	// Fixed: the pods run everything again.
	applyConfigApplied(t, ns, "clash3", metav1.ConditionTrue, "Applied", "the connector pods run this account", clash.Generation)
	applyPodCondition(t, "Connector", ns, "alice", &ilpv1.Connector{}, metav1.Condition{
		Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionTrue, Reason: "Applied", ObservedGeneration: 1,
		Message: "alice-0 runs generation 1 with 2 accounts and 3 routes",
	})
	for _, rt := range []*ilpv1.Route{r, r2, r3} {
		waitReady(t, rt, metav1.ConditionTrue, ReasonResolved)
	}
}

func assertReadyMessage(t *testing.T, rt *ilpv1.Route, want string) {
	t.Helper()
	for _, c := range rt.Status.Conditions {
		if c.Type == ilpv1.ConditionReady && c.Message != want {
			t.Errorf("Route %s Ready message = %q, want %q", rt.Name, c.Message, want)
		}
	}
}

// TestLeftOutObject reads the pods' list of objects left out.
func TestLeftOutObject(t *testing.T) {
	const msg = `alice-0 runs generation 3 with 1 accounts; left out: Account clash3: a; b; Route r: Route q already has prefix "g.x"; ` +
		`Route r3: next hop "clash3" is not a configured account of this connector`
	cases := []struct {
		msg, kind, name, want string
		found                 bool
	}{
		{msg, "Route", "r3", `next hop "clash3" is not a configured account of this connector`, true},
		{msg, "Route", "r", `Route q already has prefix "g.x"`, true},
		{msg, "Account", "clash3", "a; b", true},
		{msg, "Route", "q", "", false},    // named in another entry's message only
		{msg, "Route", "r3x", "", false},  // a longer name
		{msg, "Account", "r3", "", false}, // another kind
		{"alice-0 keeps its previous configuration: invalid", "Route", "r3", "", false},
		{"alice-0 runs generation 3 with 2 accounts and 1 routes", "Route", "r3", "", false},
	}
	for _, tc := range cases {
		got, found := leftOutObject(tc.msg, tc.kind, tc.name)
		if got != tc.want || found != tc.found {
			t.Errorf("leftOutObject(%s %s) = %q, %t; want %q, %t", tc.kind, tc.name, got, found, tc.want, tc.found)
		}
	}
}
