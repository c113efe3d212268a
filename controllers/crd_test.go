package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

func sampleConnector(ns string) *ilpv1.Connector {
	return &ilpv1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"},
		Spec: ilpv1.ConnectorSpec{
			ILPAddress: "test.alice", Network: "test",
			Rates: &ilpv1.RatesSpec{Backend: "static", Spread: "0.002", Rates: map[string]ilpv1.DecimalString{"USD": "1", "EUR": "1.08"}},
		},
	}
}

func sampleAccount(ns, name, connector string) *ilpv1.Account {
	return &ilpv1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: ilpv1.AccountSpec{
			ConnectorRef: connector, Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9,
			Link:    ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: 7768, SecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"}}},
			Balance: &ilpv1.BalanceSpec{Minimum: ptr.To(ilpv1.IntegerString("-1000000")), Maximum: ptr.To(ilpv1.IntegerString("1000000"))},
		},
	}
}

// TestCreateAndReadEveryKind stores one object of each kind in the real API server and reads it
// back: it fails when a CRD is missing, does not match the Go types, or the binaries are broken.
func TestCreateAndReadEveryKind(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	objs := []client.Object{
		sampleConnector(ns),
		sampleAccount(ns, "bob", "alice"),
		&ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-bob"},
			Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}},
		&ilpv1.SettlementEngine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "xrp"},
			Spec: ilpv1.SettlementEngineSpec{AssetCode: "XRP", AssetScale: 6, Image: "example/xrp-engine:1", Port: 3000,
				Env: []corev1.EnvVar{{Name: "LEDGER", Value: "testnet"}}}},
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
		// The client reads from the manager's cache, which sees the new object shortly after.
		back := get(t, o.GetNamespace(), o.GetName(), o.DeepCopyObject().(client.Object))
		if got, want := specOf(back), specOf(o); !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("%T spec read back as %+v, want %+v", o, got, want)
		}
	}
}

func specOf(o client.Object) any {
	switch v := o.(type) {
	case *ilpv1.Connector:
		return v.Spec
	case *ilpv1.Account:
		return v.Spec
	case *ilpv1.Route:
		return v.Spec
	case *ilpv1.SettlementEngine:
		return v.Spec
	}
	return nil
}

// TestAdmissionRejects checks that the CRDs' validation refuses bad objects with a message a
// person can act on.
func TestAdmissionRejects(t *testing.T) {
	ns := namespace(t)
	cases := []struct {
		name   string
		mutate func(c *ilpv1.Connector, a *ilpv1.Account)
		want   string
	}{
		{"bad address", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.ILPAddress = "alice" }, "spec.ilpAddress"},
		{"no address", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.ILPAddress = "" }, "set ilpAddress or inheritAddressFrom"},
		{"production with test address", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.Network = "production" }, "RFC 34"},
		{"spread as float noise", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.Rates.Spread = "2e-3" }, "spec.rates.spread"},
		{"min above max", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Balance.Minimum = ptr.To(ilpv1.IntegerString("5"))
			a.Spec.Balance.Maximum = ptr.To(ilpv1.IntegerString("4"))
		}, "balance.minimum must be <= balance.maximum"},
		{"two links", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link.BTPChildServer = &ilpv1.BTPChildServerLink{Port: 7769}
		}, "set exactly one of btpClient, btpListener, btpChildServer"},
		{"segment on a peer", func(_ *ilpv1.Connector, a *ilpv1.Account) { a.Spec.ILPAddressSegment = "x" }, "ilpAddressSegment applies to child accounts only"},
		{"bad relation", func(_ *ilpv1.Connector, a *ilpv1.Account) { a.Spec.Relation = "friend" }, "spec.relation"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, a := sampleConnector(ns), sampleAccount(ns, "acct", "alice")
			c.Name, a.Name = fmt.Sprintf("c%d", i), fmt.Sprintf("a%d", i)
			tc.mutate(c, a)
			errC := k8s.Create(context.Background(), c)
			errA := k8s.Create(context.Background(), a)
			err := errC
			if err == nil {
				err = errA
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestImmutableFields checks the transition rules.
func TestImmutableFields(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	c, a := sampleConnector(ns), sampleAccount(ns, "bob", "alice")
	for _, o := range []client.Object{c, a} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		obj    client.Object
		mutate func(client.Object)
		want   string
	}{
		{c, func(o client.Object) { o.(*ilpv1.Connector).Spec.ILPAddress = "test.alice2" }, "ilpAddress is immutable"},
		{a, func(o client.Object) { o.(*ilpv1.Account).Spec.ConnectorRef = "other" }, "connectorRef is immutable"},
	}
	for _, tc := range cases {
		// The controller writes status concurrently: retry conflicts until admission answers.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(tc.obj), tc.obj); err != nil {
				return err
			}
			tc.mutate(tc.obj)
			return k8s.Update(ctx, tc.obj)
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%T update: got %v, want %q", tc.obj, err, tc.want)
		}
	}
}

// TestReferenceConditions follows an Account and a Route from a missing Connector to a resolved one.
func TestReferenceConditions(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	acct := sampleAccount(ns, "bob", "alice")
	route := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r"},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bob"}, StringData: map[string]string{"secret": "s3cret"}}
	for _, o := range []client.Object{secret, acct, route} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, acct, metav1.ConditionFalse, "ConnectorNotFound")
	waitReady(t, route, metav1.ConditionFalse, "ConnectorNotFound")

	if err := k8s.Create(ctx, sampleConnector(ns)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, acct, metav1.ConditionTrue, "Resolved")
	waitReady(t, route, metav1.ConditionTrue, "Resolved")

	conn := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"}}
	waitReady(t, conn, metav1.ConditionFalse, "WorkloadUnavailable")
	eventually(t, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(conn), conn); err != nil {
			return err
		}
		if conn.Status.Accounts != 1 || conn.Status.Address != "test.alice" {
			return fmt.Errorf("status %+v", conn.Status)
		}
		return nil
	})
}

// waitReady waits until obj's Ready condition has the status and reason, at its generation.
func waitReady(t *testing.T, obj client.Object, status metav1.ConditionStatus, reason string) {
	t.Helper()
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		conds := conditionsOf(obj)
		c := meta.FindStatusCondition(conds, ilpv1.ConditionReady)
		if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != obj.GetGeneration() {
			return fmt.Errorf("%T %s Ready = %+v, want %s/%s", obj, obj.GetName(), c, status, reason)
		}
		return nil
	})
}

func conditionsOf(o client.Object) []metav1.Condition {
	switch v := o.(type) {
	case *ilpv1.Connector:
		return v.Status.Conditions
	case *ilpv1.Account:
		return v.Status.Conditions
	case *ilpv1.Route:
		return v.Status.Conditions
	case *ilpv1.SettlementEngine:
		return v.Status.Conditions
	}
	return nil
}
