package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/testport"
)

// TestNewAccountWaitsForItsSecretsGrant: a new Account whose Secret the pod may not read yet
// (the operator adds it to the Role once it sees the Account, and the pods may see it first)
// is left out without being reported — no ObjectsLeftOut, nor a "left out" log line — for
// grantWait, with the Route through it; once granted it runs and nothing was reported. An
// Account still not granted after grantWait is reported as left out, with its Route.
func TestNewAccountWaitsForItsSecretsGrant(t *testing.T) {
	f := newSyncFixture(t, time.Hour, testConnector(), childOn("good", 1, testport.Get(t)))
	var granted atomic.Bool
	forbidSecrets(f, &granted)
	if res := f.sync(); res.Err != nil || !f.inForce("good") {
		t.Fatalf("first sync: %+v", res)
	}
	applied := *f.condition()

	add := func(name string, created int) {
		t.Helper()
		r := route(name+"-route", created, "test.alice."+name, name, 1)
		addListener(f, name, created, &r)
	}
	reported := func(name string) bool {
		c := f.condition()
		return strings.Contains(c.Message, "Account "+name+":") && strings.Contains(c.Message, "Route "+name+"-route:")
	}

	add("peer", 2)
	res := f.sync()
	if res.Err != nil || f.inForce("peer") || !f.inForce("good") {
		t.Fatalf("sync before the grant: %+v; want peer left out, good in force", res)
	}
	if c := f.condition(); c.Message != applied.Message || c.Reason != applied.Reason {
		t.Errorf("ConfigApplied before the grant: %s %q; want it unreported (still %s %q)", c.Reason, c.Message, applied.Reason, applied.Message)
	}
	if strings.Contains(f.logs.String(), "left out") {
		t.Errorf("log before the grant:\n%s\nwant no left-out line", f.logs.String())
	}
	granted.Store(true)
	if res := f.sync(); res.Err != nil || !f.inForce("peer") || len(res.Problems) != 0 {
		t.Fatalf("sync after the grant: %+v; want peer in force", res)
	}
	if c := f.condition(); c.Status != metav1.ConditionTrue || reported("peer") {
		t.Errorf("ConfigApplied after the grant: %+v; want True", c)
	}

	granted.Store(false)
	add("late", 3)
	f.sync()
	for key := range f.src.awaiting { // as if grantWait had passed since
		f.src.awaiting[key] = f.src.awaiting[key].Add(-grantWait)
	}
	f.sync()
	if c := f.condition(); c.Status != metav1.ConditionFalse || c.Reason != reasonPartial || !reported("late") {
		t.Errorf("ConfigApplied past grantWait: %s %s %q; want ObjectsLeftOut naming Account late and its Route", c.Status, c.Reason, c.Message)
	}
}

// TestGrantWaitHidesOnlyTheAwaiting: while a new Account waits for its Secret's grant, the
// other problems of the same sync are reported at once (a Route with a mistyped next hop).
func TestGrantWaitHidesOnlyTheAwaiting(t *testing.T) {
	f := newSyncFixture(t, time.Hour, testConnector(), childOn("good", 1, testport.Get(t)))
	forbidSecrets(f, new(atomic.Bool))
	if res := f.sync(); res.Err != nil || !f.inForce("good") {
		t.Fatalf("first sync: %+v", res)
	}
	stray := route("stray", 3, "test.alice.stray", "nobody", 1)
	addListener(f, "peer", 2, &stray)
	f.sync()
	if c := f.condition(); !strings.Contains(c.Message, "Route stray:") || strings.Contains(c.Message, "Account peer") {
		t.Errorf("ConfigApplied %s %s %q; want Route stray reported now, Account peer not yet", c.Status, c.Reason, c.Message)
	}
}

// TestGrantWaitDoesNotStarve: an Account whose grant does not come is reported once it has
// waited grantWait, however many other new Accounts wait meanwhile.
func TestGrantWaitDoesNotStarve(t *testing.T) {
	s := &Source{}
	t0 := time.Unix(1_700_000_000, 0)
	stuck := Problem{Kind: kindAccount, Name: "stuck", Message: "not granted", Awaiting: true}
	for i := range 8 { // a new Account every 4 s, each granted at the next sync
		at := time.Duration(i) * 4 * time.Second
		fresh := Problem{Kind: kindAccount, Name: fmt.Sprintf("new%d", i), Message: "not granted", Awaiting: true}
		got := s.reportable([]Problem{stuck, fresh}, t0.Add(at))
		if want := at >= grantWait; slices.Contains(got, stuck) != want || slices.Contains(got, fresh) {
			t.Errorf("at t0+%v: reported %v; want stuck reported %t, the new Account not", at, got, want)
		}
	}
}

// forbidSecrets makes the pod's reads of Secrets refused, as before the operator names them
// in its Role, until granted is set.
func forbidSecrets(f *syncFixture, granted *atomic.Bool) {
	f.src.secrets = newSecretCache(interceptor.NewClient(f.cl.(client.WithWatch), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*corev1.Secret); ok && !granted.Load() {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, key.Name, errors.New("the Role does not name it"))
			}
			return c.Get(ctx, key, obj, opts...)
		}}), "ns")
}

// addListener creates the Account name of alice (a BTP listener whose secret is in the new
// Secret name-tok) and its Secret, with the objects also given.
func addListener(f *syncFixture, name string, created int, also ...client.Object) {
	f.t.Helper()
	a := account(name, created, func(s *ilpv1.AccountSpec) {
		s.Link = ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: int32(testport.Get(f.t)), SecretRef: ilpv1.SecretKeyRef{Name: name + "-tok", Key: "t"}}}
	})
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name + "-tok"}, Data: map[string][]byte{"t": []byte("secret")}}
	for _, o := range append([]client.Object{sec, &a}, also...) {
		if err := f.cl.Create(f.ctx, o); err != nil {
			f.t.Fatal(err)
		}
	}
}
