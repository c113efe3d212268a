package controllers

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
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

// TestStrategySwitchKeepsRolloutComplete: a strategy switch rolls no pod, so a rolled-out
// Connector that gains (or loses) a BTP Account keeps Progressing=False (RolloutComplete),
// although the Deployment's generation rises; neither a fresh one nor one whose previous roll
// (with its reason on the workload) is done. A real roll still shows its reason until done.
func TestStrategySwitchKeepsRolloutComplete(t *testing.T) {
	ns := namespace(t)
	carol := sampleAccount(ns, "carol", "alice")
	carol.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7810), Outgoing: httpOut("https://peer.example/ilp")}}
	conn := sampleConnector(ns)
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "s", "in": "i", "out": "o"}), conn, carol)
	waitStrategy(t, ns, "alice", appsv1.RollingUpdateDeploymentStrategyType)
	waitAccountsCounted(t, ns, 1)
	markAvailable(t, ns, "alice", false)
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)

	dave := sampleAccount(ns, "dave", "alice")
	dave.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://peer:7768", TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"}}}
	switches := []struct {
		name   string
		change func()
		want   appsv1.DeploymentStrategyType
		before func() // brings the Connector to the state the switch starts from
	}{
		{"a btpClient Account arrives (no roll before)", func() { mustCreate(t, dave) }, appsv1.RecreateDeploymentStrategyType, nil},
		{"the btpClient Account goes (an image roll before, done)", func() {
			if err := k8s.Delete(context.Background(), dave); err != nil {
				t.Fatal(err)
			}
		}, appsv1.RollingUpdateDeploymentStrategyType, func() {
			update(t, conn, func(c *ilpv1.Connector) { c.Spec.Image = "example/ilpfleet:2" })
			waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, "ImageChanged")
			markAvailable(t, ns, "alice", false)
			waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)
		}},
	}
	accounts := int32(1)
	for _, s := range switches {
		if s.before != nil {
			s.before()
		}
		gen := get(t, ns, "alice", &appsv1.Deployment{}).Generation
		s.change()
		d := waitStrategy(t, ns, "alice", s.want)
		if d.Generation <= gen {
			t.Fatalf("%s: Deployment generation %d, not above %d: the switch tests nothing", s.name, d.Generation, gen)
		}
		if s.want == appsv1.RecreateDeploymentStrategyType {
			accounts++
		} else {
			accounts--
		}
		// The status write of the reconcile that switched the strategy (it counted the Accounts).
		c := waitAccountsCounted(t, ns, accounts)
		if p := meta.FindStatusCondition(c.Status.Conditions, ilpv1.ConditionProgressing); p == nil || p.Status != metav1.ConditionFalse || p.Reason != ReasonRolloutComplete {
			t.Errorf("%s: Progressing = %+v, want False RolloutComplete", s.name, p)
		}
	}

	// A real roll after the switches: RollingOut for its reason until the pods are updated.
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Image = "example/ilpfleet:3" })
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, "ImageChanged")
	markAvailable(t, ns, "alice", false)
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)
}

// waitAccountsCounted waits until the Connector alice's status counts n Accounts: the status
// write of the reconcile that saw the n-th Account (the same reconcile that set the strategy
// for it).
func waitAccountsCounted(t *testing.T, ns string, n int32) *ilpv1.Connector {
	t.Helper()
	conn := &ilpv1.Connector{}
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, conn); err != nil {
			return err
		}
		if conn.Status.Accounts != n {
			return fmt.Errorf("status.accounts %d, want %d", conn.Status.Accounts, n)
		}
		return nil
	})
	return conn
}

// TestDeploymentRolledOut covers deploymentState's rolled-out decision and noteGenerations
// without the API server: the Deployment controller must have seen the current pod template,
// not necessarily the current generation, and every desired pod must be of it and available.
func TestDeploymentRolledOut(t *testing.T) {
	tmpl := func(image string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "connector", Image: image}}}}
	}
	recreate := appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	// deployment is a Deployment the operator created with image 1 (generation 1), rolled out.
	deployment := func() *appsv1.Deployment {
		d := &appsv1.Deployment{}
		d.Spec.Replicas, d.Spec.Template = ptr.To[int32](1), tmpl("1")
		w := d.DeepCopy()
		noteGenerations(&appsv1.Deployment{}, w)
		w.Generation, w.CreationTimestamp = 1, metav1.Now()
		w.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
		return w
	}
	// write is an update by the operator: mutate, note, and the generation the API server gives.
	write := func(d *appsv1.Deployment, mutate func(*appsv1.Deployment)) *appsv1.Deployment {
		w := d.DeepCopy()
		mutate(w)
		noteGenerations(d, w)
		w.Generation++
		return w
	}
	observe := func(d *appsv1.Deployment, updated int32) *appsv1.Deployment {
		d.Status.ObservedGeneration, d.Status.UpdatedReplicas = d.Generation, updated
		return d
	}
	strategy := func(d *appsv1.Deployment) { d.Spec.Strategy = recreate }
	image := func(i string) func(*appsv1.Deployment) {
		return func(d *appsv1.Deployment) { d.Spec.Template = tmpl(i) }
	}
	cases := []struct {
		name string
		d    *appsv1.Deployment
		want bool
	}{
		{"created, rolled out", deployment(), true},
		{"strategy switch, not yet observed", write(deployment(), strategy), true},
		{"strategy switch, observed", observe(write(deployment(), strategy), 1), true},
		{"new template, not yet observed", write(deployment(), image("2")), false},
		{"new template, observed, rolling", observe(write(deployment(), image("2")), 0), false},
		{"new template, observed, done", observe(write(deployment(), image("2")), 1), true},
		{"new template then a strategy switch, neither observed", write(write(deployment(), image("2")), strategy), false},
		{"new template done, then a strategy switch", write(observe(write(deployment(), image("2")), 1), strategy), true},
		{"someone else changed it since", func() *appsv1.Deployment {
			d := deployment()
			d.Spec.Template.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}
			d.Generation++
			return d
		}(), false},
		{"someone else changed it, then a strategy switch", func() *appsv1.Deployment {
			d := deployment()
			d.Spec.Template.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "now"}
			d.Generation++
			return write(d, strategy)
		}(), false},
		{"no note (an older operator's Deployment), strategy switch", func() *appsv1.Deployment {
			d := deployment()
			delete(d.Annotations, annotationGenerations)
			return write(d, strategy)
		}(), true},
		{"no note, not observed", func() *appsv1.Deployment {
			d := deployment()
			delete(d.Annotations, annotationGenerations)
			d.Generation++
			return d
		}(), false},
		{"scaled up, not yet observed", write(deployment(), func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](2) }), false},
	}
	for _, tc := range cases {
		st := &workloadState{desired: ptr.Deref(tc.d.Spec.Replicas, 1)}
		deploymentState(tc.d, st)
		if st.rolledOut != tc.want {
			t.Errorf("%s: rolled out %t, want %t (generation %d, %s %q, status %+v)", tc.name, st.rolledOut, tc.want,
				tc.d.Generation, annotationGenerations, tc.d.Annotations[annotationGenerations], tc.d.Status)
		}
	}
	// A write that changes nothing notes nothing: no write at all.
	d := deployment()
	w := d.DeepCopy()
	noteGenerations(d, w)
	if !equality.Semantic.DeepEqual(d, w) {
		t.Errorf("an unchanged Deployment got a note: %v", w.Annotations)
	}
}
