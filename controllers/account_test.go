package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
)

// applyConfigApplied writes an Account's ConfigApplied as the connector pod holding the Lease
// does: a server-side apply of that condition alone under kube.FieldManager.
func applyConfigApplied(t *testing.T, ns, name string, status metav1.ConditionStatus, reason, msg string, gen int64) {
	t.Helper()
	c := metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: metav1.Now()}
	cj, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"apiVersion":%q,"kind":"Account","metadata":{"name":%q,"namespace":%q},"status":{"conditions":[%s]}}`,
		ilpv1.GroupVersion.String(), name, ns, cj)
	err = k8s.Status().Patch(context.Background(), &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		client.RawPatch(types.ApplyPatchType, []byte(body)), client.FieldOwner(kube.FieldManager), client.ForceOwnership)
	if err != nil {
		t.Fatal(err)
	}
}

// readyAccount creates a Connector and an Account whose references resolve, and waits for Ready.
func readyAccount(t *testing.T, ns string) *ilpv1.Account {
	t.Helper()
	acct := sampleAccount(ns, "bob", "alice")
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), sampleConnector(ns), acct)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
	return acct
}

// TestAccountReadyFollowsThePods: an Account the connector pods leave out of their
// configuration (ConfigApplied False at its generation) is not Ready, with their message; one
// about an older generation is not trusted; True brings Ready back. Neither writer drops the
// other's conditions.
func TestAccountReadyFollowsThePods(t *testing.T) {
	ns := namespace(t)
	acct := readyAccount(t, ns)
	const msg = `the connector pods leave this account out of their configuration: options = 7768: port 7768 is already used by account "carol"; give each listener its own port`
	applyConfigApplied(t, ns, "bob", metav1.ConditionFalse, "LeftOut", msg, acct.Generation)
	ready := waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonConfigNotApplied)
	if ready.Message != msg {
		t.Errorf("Ready message = %q, want the pods' %q", ready.Message, msg)
	}
	if c := meta.FindStatusCondition(acct.Status.Conditions, ilpv1.ConditionConfigApplied); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("the operator's write dropped the pods' ConfigApplied: %+v", acct.Status.Conditions)
	}
	if c := meta.FindStatusCondition(acct.Status.Conditions, ilpv1.ConditionReferencesResolved); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("ReferencesResolved = %+v, want True: the references do resolve", c)
	}

	// The user changes the Account: a False about the previous generation no longer counts.
	update(t, acct, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.Port = 7769 })
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)

	applyConfigApplied(t, ns, "bob", metav1.ConditionFalse, "LeftOut", msg, acct.Generation)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonConfigNotApplied)
	applyConfigApplied(t, ns, "bob", metav1.ConditionTrue, "Applied", "the connector pods run this account", acct.Generation)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
	if c := meta.FindStatusCondition(acct.Status.Conditions, ilpv1.ConditionConfigApplied); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("ConfigApplied = %+v, want the pods' True", c)
	}
}

// staleReader returns a copy of the Account from before the pods wrote ConfigApplied, and
// before the operator wrote Ready: a cache that lags behind.
type staleReader struct {
	client.Client
	stale *ilpv1.Account
}

func (s staleReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if a, ok := obj.(*ilpv1.Account); ok && key.Name == s.stale.Name {
		s.stale.DeepCopyInto(a)
		return nil
	}
	return s.Client.Get(ctx, key, obj, opts...)
}

// TestStaleAccountReconcileKeepsThePodsCondition: a merge patch replaces the whole conditions
// list, so a reconcile from a stale copy would drop the ConfigApplied the pods applied since;
// the optimistic lock makes it a conflict, retried, instead.
func TestStaleAccountReconcileKeepsThePodsCondition(t *testing.T) {
	ns := namespace(t)
	acct := readyAccount(t, ns)
	stale := acct.DeepCopy()
	meta.RemoveStatusCondition(&stale.Status.Conditions, ilpv1.ConditionReady) // so that the reconcile has something to write
	applyConfigApplied(t, ns, "bob", metav1.ConditionFalse, "LeftOut", "left out", acct.Generation)

	r := &AccountReconciler{Client: staleReader{Client: k8s, stale: stale}, Reader: k8s}
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(acct)})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter == 0 {
		t.Errorf("a reconcile from a stale copy was not retried: %+v", res)
	}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(acct), acct); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(acct.Status.Conditions, ilpv1.ConditionConfigApplied); c == nil {
		t.Errorf("a reconcile from a stale copy dropped the pods' ConfigApplied: %+v", acct.Status.Conditions)
	}
}

// TestAccountReconcileChanges: the Account controller acts on creations, deletions, spec
// changes and changes of the pods' ConfigApplied, not on the balances the pods write.
func TestAccountReconcileChanges(t *testing.T) {
	base := sampleAccount("ns", "bob", "alice")
	base.Generation = 1
	meta.SetStatusCondition(&base.Status.Conditions, metav1.Condition{Type: ilpv1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonResolved, ObservedGeneration: 1})
	with := func(f func(a *ilpv1.Account)) *ilpv1.Account {
		a := base.DeepCopy()
		f(a)
		return a
	}
	leftOut := metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: "LeftOut", Message: "port", ObservedGeneration: 1}
	withLeftOut := with(func(a *ilpv1.Account) { meta.SetStatusCondition(&a.Status.Conditions, leftOut) })
	cases := []struct {
		name     string
		old, new *ilpv1.Account
		want     bool
	}{
		{"balance written", base, with(func(a *ilpv1.Account) { a.Status.Balance, a.Status.Connected = "42", true }), false},
		{"own Ready written", base, with(func(a *ilpv1.Account) { a.Status.Conditions[0].Message = "other" }), false},
		{"spec changed", base, with(func(a *ilpv1.Account) { a.Generation = 2 }), true},
		{"left out", base, withLeftOut, true},
		{"balance of an account left out", withLeftOut, with(func(a *ilpv1.Account) {
			meta.SetStatusCondition(&a.Status.Conditions, leftOut)
			a.Status.Balance = "7"
		}), false},
		{"left out for another reason", withLeftOut, with(func(a *ilpv1.Account) {
			c := leftOut
			c.Message = "secret"
			meta.SetStatusCondition(&a.Status.Conditions, c)
		}), true},
		{"applied again", withLeftOut, with(func(a *ilpv1.Account) {
			meta.SetStatusCondition(&a.Status.Conditions, metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionTrue, Reason: "Applied", ObservedGeneration: 1})
		}), true},
		{"condition removed", withLeftOut, base, true},
	}
	for _, tc := range cases {
		if got := accountReconcileChanges.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
			t.Errorf("%s: reconciles = %t, want %t", tc.name, got, tc.want)
		}
	}
	if !accountReconcileChanges.Create(event.CreateEvent{Object: base}) || !accountReconcileChanges.Delete(event.DeleteEvent{Object: base}) {
		t.Error("creations and deletions must reconcile")
	}
}

// countingReconciler counts the reconciles of the Account controller, and the generation each
// one saw.
type countingReconciler struct {
	inner reconcile.Reconciler
	c     client.Client

	mu    sync.Mutex
	count int
	gen   int64
}

func (c *countingReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	res, err := c.inner.Reconcile(ctx, req)
	var a ilpv1.Account
	getErr := c.c.Get(ctx, req.NamespacedName, &a)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	if getErr == nil {
		c.gen = a.Generation
	}
	return res, err
}

// waitGeneration waits until a reconcile saw the generation, and returns how many ran so far.
func (c *countingReconciler) waitGeneration(t *testing.T, gen int64) int {
	t.Helper()
	var n int
	eventually(t, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		n = c.count
		if c.gen < gen {
			return fmt.Errorf("the counted controller saw generation %d, want %d", c.gen, gen)
		}
		return nil
	})
	return n
}

// TestBalanceWritesDoNotReconcileTheAccount runs a second Account controller, counted, on a
// manager of its own, and writes balances as the pods do, and Connector status: they must not
// reconcile the Account (10,000 Accounts would each reconcile every few seconds), while a
// change of the pods' ConfigApplied must. Spec changes mark the start and the end.
func TestBalanceWritesDoNotReconcileTheAccount(t *testing.T) {
	ns := namespace(t)
	acct := readyAccount(t, ns)
	counted := startCountedAccountController(t, ns)

	update(t, acct, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.Port = 7769 })
	before := counted.waitGeneration(t, acct.Generation)
	const writes = 20
	for i := range writes {
		obj := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bob"}}
		patch := fmt.Appendf(nil, `{"status":{"balance":"%d","connected":%t}}`, i, i%2 == 0)
		if err := k8s.Status().Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 {
			// The Connector's status changes often too (its pods' ConfigApplied, status.pods,
			// the operator's Ready): nothing of an Account depends on it.
			conn := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"}}
			patch := fmt.Appendf(nil, `{"status":{"readyReplicas":%d}}`, i)
			if err := k8s.Status().Patch(context.Background(), conn, client.RawPatch(types.MergePatchType, patch)); err != nil {
				t.Fatal(err)
			}
		}
	}
	update(t, acct, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.Port = 7770 })
	after := counted.waitGeneration(t, acct.Generation)
	// The spec change itself, and slack for one reconcile of a status write of the main
	// controller that raced with the first mark.
	if n := after - before; n > 2 {
		t.Errorf("%d balance and 5 Connector status writes and one spec change ran %d reconciles, want at most 2", writes, n)
	}

	applyConfigApplied(t, ns, "bob", metav1.ConditionFalse, "LeftOut", "left out", acct.Generation)
	eventually(t, func() error {
		counted.mu.Lock()
		defer counted.mu.Unlock()
		if counted.count == after {
			return fmt.Errorf("no reconcile after ConfigApplied changed")
		}
		return nil
	})
}

// startCountedAccountController runs the Account controller on a manager that caches ns only,
// with its reconciles counted, until the test ends.
func startCountedAccountController(t *testing.T, ns string) *countingReconciler {
	t.Helper()
	mgr, err := ctrl.NewManager(testEnv.Config, ctrl.Options{
		Scheme:  scheme.New(),
		Cache:   cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := setupIndexes(ctx, mgr); err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &AccountReconciler{Client: mgr.GetClient(), Reader: mgr.GetAPIReader()}
	counted := &countingReconciler{inner: r, c: mgr.GetClient()}
	name := "account-counted-" + strings.TrimPrefix(ns, "test-")
	if err := r.controller(mgr).Named(name).Complete(counted); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("counted manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return counted
}
