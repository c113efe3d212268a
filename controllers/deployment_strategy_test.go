package controllers

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// TestDeploymentStrategyFollowsTheLinks: a single-replica Connector with an Account that only
// one pod can serve (BTP, http mode async) has its Deployment replace pods with Recreate, so
// that the old pod has stopped before the new one dials the peer; otherwise (sync HTTP, or
// several replicas) the default rolling update. The strategy follows the Accounts as they
// change, and never touches the pod template: no pod rolls for it.
func TestDeploymentStrategyFollowsTheLinks(t *testing.T) {
	ns := namespace(t)
	httpAccount := func(name string, port int32) *ilpv1.Account {
		a := sampleAccount(ns, name, "alice")
		a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(port), Outgoing: httpOut("https://peer.example/ilp")}}
		return a
	}
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "s", "in": "i", "out": "o"}), sampleConnector(ns), httpAccount("carol", 7810))
	dep := waitStrategy(t, ns, "alice", appsv1.RollingUpdateDeploymentStrategyType)
	if ru := dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxSurge.String() != "25%" || ru.MaxUnavailable.String() != "25%" {
		t.Errorf("rolling update = %+v, want the defaults (25%%, 25%%)", ru)
	}
	tmpl := dep.Spec.Template.DeepCopy()
	hash := dep.Annotations[annotationTemplateHash]
	noRoll := func(step string) {
		t.Helper()
		d := get(t, ns, "alice", &appsv1.Deployment{})
		if !equality.Semantic.DeepEqual(*tmpl, d.Spec.Template) || d.Annotations[annotationTemplateHash] != hash {
			t.Errorf("%s: the pod template changed: %v -> %v", step, tmpl.Annotations, d.Spec.Template.Annotations)
		}
		if note := d.Annotations[ilpv1.AnnotationRolloutReason]; note != "" {
			t.Errorf("%s: rollout note %s", step, note)
		}
	}

	steps := []struct {
		name   string
		change func()
		want   appsv1.DeploymentStrategyType
	}{
		{"btpClient added", func() {
			a := sampleAccount(ns, "dave", "alice")
			a.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://peer:7768", TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"}}}
			mustCreate(t, a)
		}, appsv1.RecreateDeploymentStrategyType},
		{"btpClient becomes sync http", func() {
			update(t, &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dave"}}, func(a *ilpv1.Account) {
				a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7811), Outgoing: httpOut("https://dave.example/ilp")}}
			})
		}, appsv1.RollingUpdateDeploymentStrategyType},
		{"sync http becomes async", func() {
			update(t, &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dave"}}, func(a *ilpv1.Account) {
				a.Spec.Link.HTTP.Mode = ilpv1.HTTPModeAsync
				a.Spec.Link.HTTP.Outgoing.CallbackURL = "http://alice:7811/ilp/callback"
			})
		}, appsv1.RecreateDeploymentStrategyType},
		{"async account deleted", func() {
			if err := k8s.Delete(context.Background(), &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dave"}}); err != nil {
				t.Fatal(err)
			}
		}, appsv1.RollingUpdateDeploymentStrategyType},
		{"btpListener added", func() { mustCreate(t, sampleAccount(ns, "erin", "alice")) }, appsv1.RecreateDeploymentStrategyType},
	}
	for _, s := range steps {
		s.change()
		d := waitStrategy(t, ns, "alice", s.want)
		if s.want == appsv1.RecreateDeploymentStrategyType && d.Spec.Strategy.RollingUpdate != nil {
			t.Errorf("%s: Recreate with rollingUpdate %+v", s.name, d.Spec.Strategy.RollingUpdate)
		}
		noRoll(s.name)
	}
}

// TestDeploymentStrategyWithReplicas: with several replicas a BTP Account does not make the
// Deployment Recreate (it is refused anyway, and Recreate would stop every replica at once);
// the file store's StatefulSet, which never runs two pods of one name, keeps its own strategy.
func TestDeploymentStrategyWithReplicas(t *testing.T) {
	ns := namespace(t)
	file := sampleConnector(ns)
	file.Name, file.Spec.ILPAddress = "filed", "test.filed"
	file.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreFile}
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "s"}), secret(ns, "redis", map[string]string{"url": "redis://redis:6379/0"}),
		replicatedConnector(ns, "three", 3), sampleAccount(ns, "bob", "three"), file, sampleAccount(ns, "fred", "filed"))
	waitStrategy(t, ns, "three", appsv1.RollingUpdateDeploymentStrategyType)
	sts := get(t, ns, "filed", &appsv1.StatefulSet{})
	if s := sts.Spec.UpdateStrategy; s.Type != appsv1.RollingUpdateStatefulSetStrategyType || s.RollingUpdate == nil || ptr.Deref(s.RollingUpdate.Partition, 0) != 0 {
		t.Errorf("StatefulSet update strategy = %+v, want the API server's default", s)
	}
	// Down to one replica: now the BTP Account's pod must stop before its successor starts.
	update(t, replicatedConnector(ns, "three", 3), func(c *ilpv1.Connector) { c.Spec.Replicas = ptr.To[int32](1) })
	waitStrategy(t, ns, "three", appsv1.RecreateDeploymentStrategyType)
}

// TestDeploymentStrategyOf covers deploymentStrategy's choice per link without the API server.
func TestDeploymentStrategyOf(t *testing.T) {
	quarter := intstr.FromString("25%")
	rolling := appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &quarter, MaxSurge: &quarter}}
	recreate := appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	link := func(l ilpv1.AccountLink) ilpv1.Account { return ilpv1.Account{Spec: ilpv1.AccountSpec{Link: l}} }
	btp := link(ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://peer:7768"}})
	mini := link(ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7768}})
	sync := link(ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7800)}})
	async := link(ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync, Incoming: httpIn(7800)}})
	cases := []struct {
		replicas int32
		accounts []ilpv1.Account
		want     appsv1.DeploymentStrategy
	}{
		{1, nil, rolling},
		{1, []ilpv1.Account{sync}, rolling},
		{1, []ilpv1.Account{sync, btp}, recreate},
		{1, []ilpv1.Account{mini}, recreate},
		{1, []ilpv1.Account{async}, recreate},
		{0, []ilpv1.Account{btp}, recreate},
		{3, []ilpv1.Account{btp, sync}, rolling},
	}
	for i, tc := range cases {
		c := sampleConnector("ns")
		c.Spec.Replicas = ptr.To(tc.replicas)
		if got := deploymentStrategy(c, tc.accounts); !equality.Semantic.DeepEqual(got, tc.want) {
			t.Errorf("case %d: strategy %+v, want %+v", i, got, tc.want)
		}
	}
}

// waitStrategy waits until the Deployment has the strategy type and returns it.
func waitStrategy(t *testing.T, ns, name string, want appsv1.DeploymentStrategyType) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return err
		}
		if d.Spec.Strategy.Type != want {
			return fmt.Errorf("Deployment %s strategy %s, want %s", name, d.Spec.Strategy.Type, want)
		}
		return nil
	})
	return d
}
