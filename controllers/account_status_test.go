package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
)

// applyPodCondition writes a condition into the status of an object of kind as the connector
// pod holding the Lease does: a server-side apply of that condition alone under kube.FieldManager.
func applyPodCondition(t *testing.T, kind, ns, name string, obj client.Object, c metav1.Condition) {
	t.Helper()
	c.LastTransitionTime = metav1.Now()
	cj, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"apiVersion":%q,"kind":%q,"metadata":{"name":%q,"namespace":%q},"status":{"conditions":[%s]}}`,
		ilpv1.GroupVersion.String(), kind, name, ns, cj)
	obj.SetNamespace(ns)
	obj.SetName(name)
	err = k8s.Status().Patch(context.Background(), obj, client.RawPatch(types.ApplyPatchType, []byte(body)),
		client.FieldOwner(kube.FieldManager), client.ForceOwnership)
	if err != nil {
		t.Fatal(err)
	}
}

// writeConnected writes an Account's status.connected as the pods do: a merge patch of that field.
func writeConnected(t *testing.T, ns, name string, connected bool) {
	t.Helper()
	obj := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := fmt.Appendf(nil, `{"status":{"connected":%t,"balance":"5"}}`, connected)
	if err := k8s.Status().Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
}

// waitConnected waits until the Account's status.connected is want.
func waitConnected(t *testing.T, acct *ilpv1.Account, want bool) {
	t.Helper()
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(acct), acct); err != nil {
			return err
		}
		if acct.Status.Connected != want {
			return fmt.Errorf("Account %s connected = %t, want %t", acct.Name, acct.Status.Connected, want)
		}
		return nil
	})
}

// TestConnectedClearedWhenNoPodRunsTheAccount: the pods write an Account's connected flag only
// while they run it, so the operator clears a true that no pod can keep current any more:
// the pods leave the Account out, its Connector is scaled to zero with no pod left, or the
// Connector is deleted. While a pod may run it, the pods' flag stands.
func TestConnectedClearedWhenNoPodRunsTheAccount(t *testing.T) {
	ns := namespace(t)
	acct := readyAccount(t, ns)

	writeConnected(t, ns, "bob", true)
	applyConfigApplied(t, ns, "bob", metav1.ConditionFalse, "LeftOut", "left out: port", acct.Generation)
	waitConnected(t, acct, false)
	if acct.Status.Balance != "5" {
		t.Errorf("balance = %q, want the pods' 5 kept", acct.Status.Balance)
	}

	// The pods run it again and connect: their flag stands (the operator never writes true,
	// and clears nothing while a pod may run the Account).
	applyConfigApplied(t, ns, "bob", metav1.ConditionTrue, "Applied", "the connector pods run this account", acct.Generation)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
	writeConnected(t, ns, "bob", true)
	update(t, acct, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.Port = 7769 })
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
	if !acct.Status.Connected {
		t.Errorf("the operator cleared the connected flag of an Account the pods run")
	}

	// Scaled to zero: once the workload has no pod, nobody runs the Account.
	conn := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"}}
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Replicas = ptr.To[int32](0) })
	waitConnected(t, acct, false)
	ready := waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonScaledToZero)
	t.Logf("scaled to zero: Ready %s", ready.Message)
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Replicas = ptr.To[int32](1) })
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)

	// The Connector is deleted: its pods go with it.
	writeConnected(t, ns, "bob", true)
	if err := k8s.Delete(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, acct, false)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonConnectorNotFound)
}

// TestConnectorChangesForAccounts: the Connector's status re-checks its Accounts only when its
// last pod goes while it is scaled to zero, or a first one comes back.
func TestConnectorChangesForAccounts(t *testing.T) {
	conn := func(spec, status int32, gen int64) *ilpv1.Connector {
		c := sampleConnector("ns")
		c.Generation, c.Spec.Replicas, c.Status.Replicas = gen, ptr.To(spec), status
		return c
	}
	cases := []struct {
		name     string
		old, new *ilpv1.Connector
		want     bool
	}{
		{"spec changed", conn(1, 1, 1), conn(0, 1, 2), true},
		{"pods scaling down", conn(0, 2, 2), conn(0, 1, 2), false},
		{"last pod gone", conn(0, 1, 2), conn(0, 0, 2), true},
		{"pods gone without scale to zero (envtest, a crash)", conn(1, 1, 1), conn(1, 0, 1), false},
		{"ready replicas", conn(1, 1, 1), func() *ilpv1.Connector { c := conn(1, 1, 1); c.Status.ReadyReplicas = 1; return c }(), false},
	}
	for _, tc := range cases {
		if got := connectorChangesForAccounts.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
			t.Errorf("%s: re-checks = %t, want %t", tc.name, got, tc.want)
		}
	}
}

// TestOperatorLeavesThePodsConfigApplied: the pods are the only writer of an Account's
// ConfigApplied and move its True forward as they apply new generations; the operator neither
// removes a True about an older generation (the pods have not caught up yet, or run no pod) nor
// a False about one, and trusts only a False at the Account's generation.
func TestOperatorLeavesThePodsConfigApplied(t *testing.T) {
	ns := namespace(t)
	acct := readyAccount(t, ns)
	applyConfigApplied(t, ns, "bob", metav1.ConditionTrue, "Applied", "the connector pods run this account", acct.Generation)
	waitCondition(t, acct, ilpv1.ConditionConfigApplied, metav1.ConditionTrue, "Applied")

	update(t, acct, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.Port = 7770 }) // not applied by the pods yet
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
	if c := meta.FindStatusCondition(acct.Status.Conditions, ilpv1.ConditionConfigApplied); c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != acct.Generation-1 {
		t.Errorf("ConfigApplied = %+v, want the pods' True at generation %d kept", c, acct.Generation-1)
	}

	// A False about an older generation is kept, and not trusted.
	applyConfigApplied(t, ns, "bob", metav1.ConditionFalse, "LeftOut", "left out: port", acct.Generation)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonConfigNotApplied)
	update(t, acct, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.Port = 7771 })
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
	if c := meta.FindStatusCondition(acct.Status.Conditions, ilpv1.ConditionConfigApplied); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("ConfigApplied = %+v, want the pods' older False kept", c)
	}
}

// TestAccountNotFullyApplied: an Account the pods run, but not as its current generation says
// (its previous version, or without settlement: ConfigApplied False NotFullyApplied), is not
// Ready, with a reason of its own and the pods' message; its connected flag is the pods' to
// keep, since they do run it.
func TestAccountNotFullyApplied(t *testing.T) {
	ns := namespace(t)
	acct := readyAccount(t, ns)
	writeConnected(t, ns, "bob", true)
	const msg = `the connector pods run this account, but not as its current generation says: link.btpListener.secretRef: Secret "b2" does not exist; ` +
		`the connector keeps running this account's previous version`
	applyConfigApplied(t, ns, "bob", metav1.ConditionFalse, kube.ReasonNotFullyApplied, msg, acct.Generation)
	ready := waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonConfigNotFullyApplied)
	if ready.Message != msg {
		t.Errorf("Ready message = %q, want the pods' %q", ready.Message, msg)
	}
	if !acct.Status.Connected {
		t.Error("the operator cleared the connected flag of an Account the pods run (its previous version)")
	}
	applyConfigApplied(t, ns, "bob", metav1.ConditionTrue, "Applied", "the connector pods run this account", acct.Generation)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
}

// TestResolvedEventEndsTheWarnings: an Account and a Route applied before their Connector get
// a Warning ConnectorNotFound; when the Connector appears, one Normal Resolved Event each
// says that it resolves now, and later reconciles add none.
func TestResolvedEventEndsTheWarnings(t *testing.T) {
	ns := namespace(t)
	acct := sampleAccount(ns, "bob", "alice")
	route := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r"},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}}
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), acct, route)
	waitEvent(t, ns, "bob", ReasonConnectorNotFound)
	waitEvent(t, ns, "r", ReasonConnectorNotFound)

	mustCreate(t, sampleConnector(ns))
	for _, name := range []string{"bob", "r"} {
		e := waitEventWhere(t, ns, "Normal Resolved about "+name, func(e eventsv1.Event) bool {
			return e.Regarding.Name == name && e.Reason == ReasonResolved && e.Type == "Normal"
		})
		t.Logf("%s: %s", name, e.Note)
	}
	update(t, acct, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.Port = 7769 })
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
	var evs eventsv1.EventList
	if err := k8s.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs.Items {
		if e.Reason == ReasonResolved {
			n++
			if e.Series != nil { // the recorder folds repeats of one Event into a series
				n += int(e.Series.Count) - 1
			}
		}
	}
	if n != 2 {
		t.Errorf("%d Resolved Events, want one for the Account and one for the Route", n)
	}
}
