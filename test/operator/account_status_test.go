package operator

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// accountConditions waits until the Account's ConfigApplied and Ready pass check.
func accountConditions(t *testing.T, ns, name string, check func(a *ilpv1.Account, applied, ready *metav1.Condition) error) {
	t.Helper()
	objectConditions(t, ns, name, &ilpv1.Account{}, func(a *ilpv1.Account) []metav1.Condition { return a.Status.Conditions }, check)
}

// runsCurrent checks an object the pods run at its current generation gen: ConfigApplied True
// (Applied) and Ready True, both at gen.
func runsCurrent(gen int64, applied, ready *metav1.Condition) error {
	switch {
	case applied == nil || applied.Status != metav1.ConditionTrue || applied.Reason != "Applied" || applied.ObservedGeneration != gen:
		return fmt.Errorf("ConfigApplied = %+v, want True Applied at generation %d", applied, gen)
	case ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != gen:
		return fmt.Errorf("Ready = %+v, want True", ready)
	}
	return nil
}

// objectConditions waits until the ConfigApplied and Ready of the object name, read into obj
// (conds finds its conditions), pass check.
func objectConditions[T client.Object](t *testing.T, ns, name string, obj T, conds func(T) []metav1.Condition,
	check func(obj T, applied, ready *metav1.Condition) error) {
	t.Helper()
	kind := reflect.TypeOf(obj).Elem().Name()
	eventually(t, "conditions of "+kind+" "+name, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			return err
		}
		c := conds(obj)
		return check(obj, meta.FindStatusCondition(c, ilpv1.ConditionConfigApplied), meta.FindStatusCondition(c, ilpv1.ConditionReady))
	})
}

// TestAccountLeftOutIsNotReady: of two Accounts on one listener port, the runtime runs the
// older and leaves the later out; `kubectl get ilpa` must say so on that Account, not only in
// the Connector's message: ConfigApplied False with the port clash, and Ready False with it.
// Given its own port, the Account runs, and both turn True. The Account that always ran never
// gets a ConfigApplied.
func TestAccountLeftOutIsNotReady(t *testing.T) {
	ns := namespace(t)
	port, other := freePort(t), freePort(t)
	create(t, connectorObj(ns, "a", "test.a"), childAccount(ns, "a", "first", port))
	rt := startRuntime(t, ns, "a")
	configApplied(t, ns, "a", isTrue)
	accountConditions(t, ns, "first", func(_ *ilpv1.Account, _, ready *metav1.Condition) error {
		if ready == nil || ready.Status != metav1.ConditionTrue {
			return fmt.Errorf("Ready = %+v", ready)
		}
		return nil
	})

	create(t, childAccount(ns, "a", "second", port))
	clash := fmt.Sprintf("port %d is already used by account %q", port, "first")
	accountConditions(t, ns, "second", func(a *ilpv1.Account, applied, ready *metav1.Condition) error {
		switch {
		case applied == nil || applied.Status != metav1.ConditionFalse || applied.Reason != "LeftOut" ||
			applied.ObservedGeneration != a.Generation || !strings.Contains(applied.Message, clash):
			return fmt.Errorf("ConfigApplied = %+v, want False LeftOut at generation %d naming %q", applied, a.Generation, clash)
		case ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != "ConfigNotApplied" ||
			ready.ObservedGeneration != a.Generation || ready.Message != applied.Message:
			return fmt.Errorf("Ready = %+v, want False ConfigNotApplied with the pods' message", ready)
		}
		return nil
	})
	if _, ok := rt.conn.Load().Config().Accounts["first"]; !ok {
		t.Error("the runtime no longer runs first, the Account that had the port")
	}

	var second ilpv1.Account
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "second"}, &second); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(second.DeepCopy())
	second.Spec.Link.BTPChildServer.Port = other
	if err := k8s.Patch(context.Background(), &second, patch); err != nil {
		t.Fatal(err)
	}
	accountConditions(t, ns, "second", func(a *ilpv1.Account, applied, ready *metav1.Condition) error {
		return runsCurrent(a.Generation, applied, ready)
	})
	configApplied(t, ns, "a", isTrue)

	var first ilpv1.Account
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "first"}, &first); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(first.Status.Conditions, ilpv1.ConditionConfigApplied); c != nil {
		t.Errorf("first, never left out, got a ConfigApplied: %+v", c)
	}
}
