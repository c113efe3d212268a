package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
)

// TestWarnReplicasOnlyWhenTheProblemChanges: the Warning Event about an Account's link comes
// when ReplicasSupported turns False, not when the Connector scales among counts above one
// (the messages say "several", not how many), nor back and forth among them.
func TestWarnReplicasOnlyWhenTheProblemChanges(t *testing.T) {
	links := map[string]ilpv1.AccountLink{
		"btpClient":      {BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://peer:7768"}},
		"btpListener":    {BTPListener: &ilpv1.BTPListenerLink{Port: 7768}},
		"btpChildServer": {BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7768}},
		"http async":     {HTTP: &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync, Incoming: httpIn(7800)}},
		"http with CCP":  {HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7800)}},
	}
	cases := []struct {
		from, to int32
		event    bool
	}{
		{3, 4, false},
		{4, 2, false},
		{2, 10, false},
		{3, 3, false},
		{1, 3, true},
		{0, 2, true},
		{3, 1, false}, // True again: nothing to warn about
	}
	for name, link := range links {
		for _, tc := range cases {
			acct := sampleAccount("ns", "bob", "c")
			acct.Spec.Link = link
			from, to := replicatedConnector("ns", "c", tc.from), replicatedConnector("ns", "c", tc.to)
			setReplicasSupported(acct, from, replicasProblem(acct, from))
			orig := acct.DeepCopy()
			setReplicasSupported(acct, to, replicasProblem(acct, to))
			if tc.from > 1 && tc.to > 1 {
				if !meta.IsStatusConditionFalse(acct.Status.Conditions, ilpv1.ConditionReplicasSupported) {
					t.Fatalf("%s on %d replicas: ReplicasSupported not False", name, tc.to)
				}
				if was, now := meta.FindStatusCondition(orig.Status.Conditions, ilpv1.ConditionReplicasSupported), meta.FindStatusCondition(acct.Status.Conditions, ilpv1.ConditionReplicasSupported); was.Message != now.Message {
					t.Errorf("%s, %d -> %d replicas: the message changed: %q -> %q", name, tc.from, tc.to, was.Message, now.Message)
				}
			}
			rec := events.NewFakeRecorder(10)
			(&AccountReconciler{Recorder: rec}).warnReplicas(orig, acct, to)
			got := drainEvents(rec)
			if want := map[bool]int{false: 0, true: 1}[tc.event]; len(got) != want {
				t.Errorf("%s, %d -> %d replicas: events %q, want %d", name, tc.from, tc.to, got, want)
			}
		}
	}
}

// drainEvents empties rec and returns the events it held, oldest first.
func drainEvents(rec *events.FakeRecorder) []string {
	var got []string
	for len(rec.Events) > 0 {
		got = append(got, <-rec.Events)
	}
	return got
}

// TestAccountReconcileReplicasWritesAndEvents runs the Account controller's Reconcile, alone
// (a fake client: no manager races it), through a Connector's scales and an Account's link
// changes, and checks after each whether it wrote the Account's status and which Events it
// sent: one Warning each time ReplicasSupported turns False or changes its reason, none for a
// scale among counts above one, and no status write either.
func TestAccountReconcileReplicasWritesAndEvents(t *testing.T) {
	ctx := context.Background()
	acct := sampleAccount("ns", "bob", "three")
	acct.Generation = 1
	acct.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://peer:7768", TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"}}}
	bob := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "bob"}, Data: map[string][]byte{"secret": []byte("s"), "in": []byte("i"), "out": []byte("o")}}
	cl := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&ilpv1.Account{}).
		WithObjects(bob, replicatedConnector("ns", "three", 3), acct).Build()
	rec := events.NewFakeRecorder(100)
	r := &AccountReconciler{Client: cl, Reader: cl, Recorder: rec}

	scale := func(n int32) func() {
		return func() {
			c := &ilpv1.Connector{}
			if err := cl.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "three"}, c); err != nil {
				t.Fatal(err)
			}
			c.Spec.Replicas = ptr.To(n)
			if err := cl.Update(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	relink := func(link ilpv1.AccountLink) func() {
		return func() {
			a := &ilpv1.Account{}
			if err := cl.Get(ctx, client.ObjectKeyFromObject(acct), a); err != nil {
				t.Fatal(err)
			}
			a.Spec.Link = link
			a.Generation++ // what the API server does on a spec change; the fake client does not
			if err := cl.Update(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	httpSync := ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7800), Outgoing: httpOut("https://peer.example/ilp")}}
	steps := []struct {
		name   string
		change func() // nil: none
		status metav1.ConditionStatus
		reason string
		write  bool
		event  string // the Warning's reason, "" for none
	}{
		{"first reconcile, 3 replicas", nil, metav1.ConditionFalse, ReasonSingleConnectionLink, true, ReasonSingleConnectionLink},
		{"again, nothing changed", nil, metav1.ConditionFalse, ReasonSingleConnectionLink, false, ""},
		{"scaled 3 -> 4", scale(4), metav1.ConditionFalse, ReasonSingleConnectionLink, false, ""},
		{"scaled 4 -> 2", scale(2), metav1.ConditionFalse, ReasonSingleConnectionLink, false, ""},
		{"link becomes sync http, exchanging routes", relink(httpSync), metav1.ConditionFalse, ReasonRouteExchangePerPod, true, ReasonRouteExchangePerPod},
		{"scaled 2 -> 5", scale(5), metav1.ConditionFalse, ReasonRouteExchangePerPod, false, ""},
		{"scaled 5 -> 1", scale(1), metav1.ConditionTrue, ReasonReplicasSupported, true, ""},
		{"scaled 1 -> 3: a problem again", scale(3), metav1.ConditionFalse, ReasonRouteExchangePerPod, true, ReasonRouteExchangePerPod},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		before := &ilpv1.Account{}
		if err := cl.Get(ctx, client.ObjectKeyFromObject(acct), before); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(acct)}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		after := &ilpv1.Account{}
		if err := cl.Get(ctx, client.ObjectKeyFromObject(acct), after); err != nil {
			t.Fatal(err)
		}
		if c := meta.FindStatusCondition(after.Status.Conditions, ilpv1.ConditionReplicasSupported); c == nil || c.Status != s.status || c.Reason != s.reason {
			t.Errorf("%s: ReplicasSupported %+v, want %s %s", s.name, c, s.status, s.reason)
		}
		if wrote := after.ResourceVersion != before.ResourceVersion; wrote != s.write {
			t.Errorf("%s: status written %t, want %t", s.name, wrote, s.write)
		}
		got := drainEvents(rec)
		switch {
		case s.event == "" && len(got) > 0:
			t.Errorf("%s: events %q, want none", s.name, got)
		case s.event != "" && (len(got) != 1 || !strings.HasPrefix(got[0], corev1.EventTypeWarning+" "+s.event+" ")):
			t.Errorf("%s: events %q, want one Warning %s", s.name, got, s.event)
		}
	}
}

// TestAccountEventMessageIsNotAFormat: a reference problem's message goes into the Event as
// text, not as a format string: a % in a name the message quotes stays as it is.
func TestAccountEventMessageIsNotAFormat(t *testing.T) {
	acct := sampleAccount("ns", "bob", "a%dz")
	acct.Generation = 1
	cl := fake.NewClientBuilder().WithScheme(scheme.New()).WithStatusSubresource(&ilpv1.Account{}).WithObjects(acct).Build()
	rec := events.NewFakeRecorder(10)
	r := &AccountReconciler{Client: cl, Reader: cl, Recorder: rec}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(acct)}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, `Connector "a%dz" does not exist`) {
			t.Errorf("event %q does not quote the name as it is", e)
		}
	default:
		t.Error("no event for a missing Connector")
	}
}
