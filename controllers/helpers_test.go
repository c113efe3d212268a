package controllers

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

func mustCreate(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// createInheriting creates in ns the Connector alice, which inherits its address from its
// parent Account "parent" (a BTP client, with its token Secret), and waits until its
// references resolve.
func createInheriting(t *testing.T, ns string) *ilpv1.Connector {
	t.Helper()
	c := sampleConnector(ns)
	c.Spec.ILPAddress, c.Spec.InheritAddressFrom = "", "parent"
	p := sampleAccount(ns, "parent", "alice")
	p.Spec.Relation = ilpv1.RelationParent
	p.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://parent:7768", TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"}}}
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), c, p)
	waitCondition(t, c, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	return c
}

func secret(ns, name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
}

// update re-reads obj, applies mutate and writes it, retrying conflicts with the controllers' status writes.
func update[T client.Object](t *testing.T, obj T, mutate func(T)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate(obj)
		return k8s.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatalf("update %T %s: %v", obj, obj.GetName(), err)
	}
}

// get waits until the object exists and returns it.
func get[T client.Object](t *testing.T, ns, name string, obj T) T {
	t.Helper()
	eventually(t, func() error { return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj) })
	return obj
}

// waitCondition waits until obj's condition typ has the status and reason at its generation.
func waitCondition(t *testing.T, obj client.Object, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		got = meta.FindStatusCondition(statusConditions(obj), typ)
		if got == nil || got.Status != status || got.Reason != reason || got.ObservedGeneration != obj.GetGeneration() {
			return fmt.Errorf("%T %s %s = %+v, want %s/%s", obj, obj.GetName(), typ, got, status, reason)
		}
		return nil
	})
	return got
}

// waitEvent waits for an Event about the named object with the reason.
func waitEvent(t *testing.T, ns, regarding, reason string) eventsv1.Event {
	t.Helper()
	return waitEventWhere(t, ns, fmt.Sprintf("%s about %s", reason, regarding), func(e eventsv1.Event) bool {
		return e.Regarding.Name == regarding && e.Reason == reason
	})
}

// waitEventWhere waits for an Event of the namespace that match accepts; what names it for
// the failure message.
func waitEventWhere(t *testing.T, ns, what string, match func(eventsv1.Event) bool) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	eventually(t, func() error {
		var evs eventsv1.EventList
		if err := k8s.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if match(e) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no event %s among %d events", what, len(evs.Items))
	})
	return found
}

// assertOwned checks that o is controlled by the owner, so that the garbage collector deletes
// it with the owner (envtest runs no garbage collector: the reference is what can be checked).
func assertOwned(t *testing.T, o client.Object, ownerKind, ownerName string) {
	t.Helper()
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != ownerKind || ref.Name != ownerName || ref.APIVersion != ilpv1.GroupVersion.String() ||
		ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("%T %s controller reference = %+v, want %s %s with blockOwnerDeletion", o, o.GetName(), ref, ownerKind, ownerName)
	}
}

// tryUpdate is update that returns the admission error instead of failing the test.
func tryUpdate(obj client.Object, mutate func(client.Object)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate(obj)
		return k8s.Update(context.Background(), obj)
	})
}

func toUnstructured(o client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(ilpv1.GroupVersion.WithKind("Connector"))
	return u, nil
}

func setNested(obj map[string]any, value any, path ...string) error {
	return unstructured.SetNestedField(obj, value, path...)
}
