package controllers

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
)

// fullConnector is sampleConnector with listeners, a LoadBalancer Service and a routing secret.
func fullConnector(ns string) *ilpv1.Connector {
	c := sampleConnector(ns)
	c.Spec.Listeners = &ilpv1.ListenersSpec{Settlement: &ilpv1.ListenerSpec{Port: 7771}}
	c.Spec.Service = &ilpv1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Annotations: map[string]string{"lb.example/internal": "true"}}
	c.Spec.Routing = &ilpv1.RoutingSpec{RoutingSecretRef: &ilpv1.SecretKeyRef{Name: "routing", Key: "secret"}}
	return c
}

// TestConnectorOwnedObjects checks every object the operator builds for a Connector, their
// owner references, and the status while no kubelet runs the pods.
func TestConnectorOwnedObjects(t *testing.T) {
	ns := namespace(t)
	conn := fullConnector(ns)
	mustCreate(t, secret(ns, "routing", map[string]string{"secret": "r"}), secret(ns, "bob", map[string]string{"secret": "b"}),
		secret(ns, "unrelated", map[string]string{"x": "y"}), conn, sampleAccount(ns, "bob", "alice"))

	dep := get(t, ns, "alice", &appsv1.Deployment{})
	assertOwned(t, dep, "Connector", "alice")
	pod := dep.Spec.Template.Spec
	ctr := pod.Containers[0]
	if want := []string{"connector", "--source=kubernetes", "--connector=alice"}; !slices.Equal(ctr.Args, want) {
		t.Errorf("args = %v, want %v", ctr.Args, want)
	}
	// A pod with an invalid config must stay up and report it, not be restarted in a loop.
	if ctr.LivenessProbe != nil || ctr.ReadinessProbe == nil {
		t.Errorf("probes: liveness %v, readiness %v; want readiness only", ctr.LivenessProbe, ctr.ReadinessProbe)
	}
	if ctr.Image != "ilpfleet:test" {
		t.Errorf("image = %q, want the operator's image", ctr.Image)
	}
	if e := ctr.Env[0]; e.Name != "POD_NAMESPACE" || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("env[0] = %+v, want POD_NAMESPACE from the downward API", e)
	}
	if pod.ServiceAccountName != "alice-connector" {
		t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
	}
	if got := portNames(ctr.Ports); !slices.Equal(got, []string{"admin:7780", "settlement:7771"}) {
		t.Errorf("container ports = %v", got)
	}
	if dep.Spec.Template.Labels[ilpv1.LabelConnector] != "alice" || dep.Spec.Template.Annotations[ilpv1.AnnotationRestartInputs] == "" {
		t.Errorf("pod template metadata = %+v", dep.Spec.Template.ObjectMeta)
	}

	peer := waitPeerPorts(t, ns, []string{"btp-7768:7768"})
	assertOwned(t, peer, "Connector", "alice")
	if peer.Spec.Type != corev1.ServiceTypeLoadBalancer || peer.Annotations["lb.example/internal"] != "true" {
		t.Errorf("peer Service type %s annotations %v", peer.Spec.Type, peer.Annotations)
	}
	admin := get(t, ns, "alice-admin", &corev1.Service{})
	assertOwned(t, admin, "Connector", "alice")
	if got := svcPorts(admin); admin.Spec.Type != corev1.ServiceTypeClusterIP || !slices.Equal(got, []string{"admin:7780", "settlement:7771"}) {
		t.Errorf("admin Service %s ports = %v", admin.Spec.Type, got)
	}
	for _, o := range []client.Object{&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}} {
		assertOwned(t, get(t, ns, "alice-connector", o), "Connector", "alice")
	}
	rb := get(t, ns, "alice-connector", &rbacv1.RoleBinding{})
	if rb.RoleRef.Name != "alice-connector" || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "alice-connector" {
		t.Errorf("RoleBinding = %+v", rb)
	}
	waitRoleSecrets(t, ns, "alice-connector", []string{"bob", "routing"})
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, &policyv1.PodDisruptionBudget{}); !apierrors.IsNotFound(err) {
		t.Errorf("PodDisruptionBudget for one replica: %v, want none", err)
	}

	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonWorkloadUnavailable)
	waitCondition(t, conn, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	waitProgressingStarted(t, conn)
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(conn), conn); err != nil {
			return err
		}
		s := conn.Status
		return checkf(s.Workload == "Deployment/alice" && s.Accounts == 1 && len(s.SecretVersions) == 2 &&
			s.SecretVersions["bob"] != "" && s.SecretVersions["routing"] != "", fmt.Sprintf("status = %+v", s))
	})
}

// waitProgressingStarted waits for Progressing True after a creation: Creating, or RollingOut
// when the reconcile that created the workload failed later on (a write conflict) and retried.
func waitProgressingStarted(t *testing.T, obj client.Object) {
	t.Helper()
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		c := meta.FindStatusCondition(statusConditions(obj), ilpv1.ConditionProgressing)
		if c == nil || c.Status != metav1.ConditionTrue || (c.Reason != ReasonCreating && c.Reason != ReasonRollingOut) {
			return fmt.Errorf("Progressing = %+v", c)
		}
		return nil
	})
}

// waitRoleSecrets waits until the Role grants exactly these Secrets, and checks the Connector rule.
func waitRoleSecrets(t *testing.T, ns, name string, want []string) {
	t.Helper()
	eventually(t, func() error {
		var role rbacv1.Role
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &role); err != nil {
			return err
		}
		var secrets []string
		lease := false
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "leases") && len(r.ResourceNames) > 0 {
				lease = slices.Equal(r.ResourceNames, []string{name}) && slices.Equal(r.Verbs, []string{"get", "update"})
			}
			if slices.Contains(r.Resources, "connectors") && !slices.Equal(r.ResourceNames, []string{"alice"}) {
				return fmt.Errorf("connectors rule %+v is not limited to alice", r)
			}
			if slices.Contains(r.Resources, "secrets") {
				if len(r.ResourceNames) == 0 {
					return fmt.Errorf("secrets rule without resourceNames grants every Secret")
				}
				secrets = append(secrets, r.ResourceNames...)
			}
		}
		if !slices.Equal(secrets, want) {
			return fmt.Errorf("Role grants Secrets %v, want %v", secrets, want)
		}
		if !lease {
			return fmt.Errorf("Role has no get/update rule for its status Lease %s: %+v", name, role.Rules)
		}
		return nil
	})
}

// waitPeerPorts waits until the peer Service alice has these ports (Accounts add theirs).
func waitPeerPorts(t *testing.T, ns string, want []string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{}
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, svc); err != nil {
			return err
		}
		if got := svcPorts(svc); !slices.Equal(got, want) {
			return fmt.Errorf("peer Service ports %v, want %v", got, want)
		}
		return nil
	})
	return svc
}

func portNames(ports []corev1.ContainerPort) []string {
	var out []string
	for _, p := range ports {
		out = append(out, fmt.Sprintf("%s:%d", p.Name, p.ContainerPort))
	}
	return out
}

func svcPorts(s *corev1.Service) []string {
	var out []string
	for _, p := range s.Spec.Ports {
		out = append(out, fmt.Sprintf("%s:%d", p.Name, p.Port))
	}
	return out
}

// TestConnectorRBACImpersonation acts as the connector's ServiceAccount against the real
// authorizer: it reads its own Connector and its Secrets, and nothing else of the kind.
func TestConnectorRBACImpersonation(t *testing.T) {
	ns := namespace(t)
	other := sampleConnector(ns)
	other.Name, other.Spec.ILPAddress = "carol", "test.carol"
	carols := sampleAccount(ns, "dave", "carol")
	carols.Spec.Link.BTPListener.SecretRef.Name = "other"
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), secret(ns, "other", map[string]string{"secret": "o"}),
		sampleConnector(ns), other, sampleAccount(ns, "bob", "alice"), carols)
	waitRoleSecrets(t, ns, "alice-connector", []string{"bob"})

	cfg := rest.CopyConfig(testEnv.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":alice-connector"}
	as, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		name    string
		do      func() error
		allowed bool
	}{
		{"get own Connector", func() error { return as.Get(ctx, client.ObjectKey{Namespace: ns, Name: "alice"}, &ilpv1.Connector{}) }, true},
		{"list own Connector by name", func() error {
			return as.List(ctx, &ilpv1.ConnectorList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": "alice"})
		}, true},
		{"get another Connector", func() error { return as.Get(ctx, client.ObjectKey{Namespace: ns, Name: "carol"}, &ilpv1.Connector{}) }, false},
		{"list every Connector", func() error { return as.List(ctx, &ilpv1.ConnectorList{}, client.InNamespace(ns)) }, false},
		{"get referenced Secret", func() error { return as.Get(ctx, client.ObjectKey{Namespace: ns, Name: "bob"}, &corev1.Secret{}) }, true},
		{"get another Secret", func() error { return as.Get(ctx, client.ObjectKey{Namespace: ns, Name: "other"}, &corev1.Secret{}) }, false},
		{"list Secrets", func() error { return as.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)) }, false},
		{"list Accounts", func() error { return as.List(ctx, &ilpv1.AccountList{}, client.InNamespace(ns)) }, true},
		// The pods report balances into their own Accounts' status, and only there.
		{"patch the status of own Account", func() error { return patchAccountStatus(as, ns, "bob") }, true},
		{"patch the status of another Connector's Account", func() error { return patchAccountStatus(as, ns, "dave") }, false},
		{"update own Connector spec", func() error {
			c := &ilpv1.Connector{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "alice"}, c); err != nil {
				return err
			}
			return as.Update(ctx, c)
		}, false},
	}
	for _, tc := range cases {
		err := tc.do()
		switch {
		case tc.allowed && err != nil:
			t.Errorf("%s: %v, want allowed", tc.name, err)
		case !tc.allowed && !apierrors.IsForbidden(err):
			t.Errorf("%s: %v, want forbidden", tc.name, err)
		}
	}
}

// patchAccountStatus writes an Account's balance as a connector pod reports it.
func patchAccountStatus(c client.Client, ns, name string) error {
	obj := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	return c.Status().Patch(context.Background(), obj, client.RawPatch(types.MergePatchType, []byte(`{"status":{"balance":"-999999","connected":false}}`)))
}

// TestRolloutOnlyOnRestartInputs checks that the pod template changes for image, resources and
// store only, with a Progressing reason naming the change, and not for hot-reloadable changes.
func TestRolloutOnlyOnRestartInputs(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), secret(ns, "redis", map[string]string{"url": "redis://127.0.0.1:6379"}),
		conn, sampleAccount(ns, "bob", "alice"))
	get(t, ns, "alice", &appsv1.Deployment{})
	waitProgressingStarted(t, conn)
	dep := markAvailable(t, ns, "alice", false).(*appsv1.Deployment)
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)

	// Hot-reloadable: rates, routing, the default store written out, a new account with a new
	// port and Secret.
	before, beforeHash, beforeSince := dep.Spec.Template.DeepCopy(), dep.Annotations[annotationTemplateHash], templateGeneration(dep)
	update(t, conn, func(c *ilpv1.Connector) {
		c.Spec.Rates.Spread = "0.01"
		c.Spec.Routing = &ilpv1.RoutingSpec{Broadcast: ptr.To(false)}
		c.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreMemory}
	})
	acct := sampleAccount(ns, "dave", "alice")
	acct.Spec.Link.BTPListener.Port, acct.Spec.Link.BTPListener.SecretRef.Name = 7800, "dave"
	mustCreate(t, secret(ns, "dave", map[string]string{"secret": "d"}), acct)
	waitRoleSecrets(t, ns, "alice-connector", []string{"bob", "dave"})
	waitPeerPorts(t, ns, []string{"btp-7768:7768", "btp-7800:7800"})
	// No rollout: the same pod template, from the same generation on (the Deployment's own
	// generation may rise: its strategy follows the Accounts, deploymentStrategy, and rolls
	// nothing), no rollout note, and Progressing still RolloutComplete.
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)
	dep = get(t, ns, "alice", &appsv1.Deployment{})
	if !equality.Semantic.DeepEqual(*before, dep.Spec.Template) || dep.Annotations[annotationTemplateHash] != beforeHash {
		t.Fatalf("hot-reloadable changes touched the pod template: annotations %v -> %v, hash %s -> %s",
			before.Annotations, dep.Spec.Template.Annotations, beforeHash, dep.Annotations[annotationTemplateHash])
	}
	if since := templateGeneration(dep); since != beforeSince {
		t.Errorf("hot-reloadable changes: the pod template counts as new since generation %d (was %d): a rollout to wait for", since, beforeSince)
	}
	if note := dep.Annotations[ilpv1.AnnotationRolloutReason]; note != "" {
		t.Errorf("hot-reloadable changes: rollout note %s", note)
	}

	steps := []struct {
		mutate func(*ilpv1.Connector)
		reason string
	}{
		{func(c *ilpv1.Connector) { c.Spec.Image = "example/ilpfleet:2" }, "ImageChanged"},
		{func(c *ilpv1.Connector) {
			c.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
		}, "ResourcesChanged"},
		{func(c *ilpv1.Connector) {
			c.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "redis", Key: "url"}}}
		}, "StoreChanged"},
		{func(*ilpv1.Connector) { // a rotated Redis URL: the store is opened once per process
			sec := &corev1.Secret{}
			if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "redis"}, sec); err != nil {
				t.Fatal(err)
			}
			sec.Data["url"] = []byte("redis://:rotated@127.0.0.1:6379")
			if err := k8s.Update(context.Background(), sec); err != nil {
				t.Fatal(err)
			}
		}, "StoreSecretChanged"},
		{func(c *ilpv1.Connector) { c.Spec.Logging = &ilpv1.LoggingSpec{Level: "debug", Format: "json"} }, "LoggingChanged"},
		{func(c *ilpv1.Connector) { c.Spec.Logging = nil }, "LoggingChanged"},
	}
	for _, s := range steps {
		prev := dep.Spec.Template.Annotations[ilpv1.AnnotationRestartInputs]
		update(t, conn, s.mutate)
		waitEvent(t, ns, "alice", s.reason)
		c := waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, s.reason)
		t.Logf("%s: %s", c.Reason, c.Message)
		dep = get(t, ns, "alice", &appsv1.Deployment{})
		if got := dep.Spec.Template.Annotations[ilpv1.AnnotationRestartInputs]; got == prev {
			t.Errorf("%s: restart-inputs annotation unchanged (%s)", s.reason, got)
		}
		if note := dep.Annotations[ilpv1.AnnotationRolloutReason]; !strings.Contains(note, `"reason":"`+s.reason+`"`) {
			t.Errorf("%s: rollout note on the Deployment = %s", s.reason, note)
		}
	}
	if got := dep.Spec.Template.Spec.Containers[0].Image; got != "example/ilpfleet:2" {
		t.Errorf("image = %q", got)
	}
	if got := dep.Spec.Template.Spec.Containers[0].Args; len(got) != 3 {
		t.Errorf("args after logging was unset = %q, want the connector command alone", got)
	}
}

// TestFileStoreStatefulSet checks the StatefulSet with a volume for the file store and the
// switch back to a Deployment when the store changes.
func TestFileStoreStatefulSet(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	conn.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreFile, File: &ilpv1.FileStoreSpec{Size: ptr.To(resource.MustParse("5Gi"))}}
	mustCreate(t, conn)
	sts := get(t, ns, "alice", &appsv1.StatefulSet{})
	assertOwned(t, sts, "Connector", "alice")
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "5Gi" {
		t.Errorf("claim templates = %+v", sts.Spec.VolumeClaimTemplates)
	}
	mounts := sts.Spec.Template.Spec.Containers[0].VolumeMounts
	if !slices.ContainsFunc(mounts, func(m corev1.VolumeMount) bool {
		return m.Name == dataVolume && m.MountPath == ilpv1.FileStoreMountPath
	}) {
		t.Errorf("mounts = %+v, want %s at %s", mounts, dataVolume, ilpv1.FileStoreMountPath)
	}
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonWorkloadUnavailable)

	markAvailable(t, ns, "alice", true)
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)

	// The StatefulSet's pods serve until the Deployment's can: a switch of workload kinds is
	// no outage.
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Store = nil })
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, "StoreChanged")
	get(t, ns, "alice", &appsv1.Deployment{})
	eventually(t, func() error {
		c := waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)
		return checkf(strings.HasPrefix(c.Message, "StatefulSet/alice has 1 of 1 pods available, and serves until Deployment/alice"), "Ready: "+c.Message)
	})
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, &appsv1.StatefulSet{}); err != nil {
		t.Fatalf("the StatefulSet went before the Deployment had a pod available: %v", err)
	}
	markAvailable(t, ns, "alice", false)
	eventually(t, func() error {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, &appsv1.StatefulSet{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("StatefulSet still there: %v", err)
		}
		return nil
	})
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)
	if conn.Status.Workload != "Deployment/alice" {
		t.Errorf("status.workload = %q", conn.Status.Workload)
	}
}

// TestUnresolvedReferencesKeepTheRunningWorkload: while a reference of the Connector's own
// spec does not resolve, the pods that run are kept as they are, whatever else changed: new
// pods could not open their store (or config), so rolling to them would be an outage. Once
// the reference resolves, the held change goes out.
func TestUnresolvedReferencesKeepTheRunningWorkload(t *testing.T) {
	redis := &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "redis", Key: "url"}}}
	file := &ilpv1.StoreSpec{Type: ilpv1.StoreFile}
	deleteRedisSecret := func(t *testing.T, ns string) {
		if err := k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "redis"}}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name     string
		store    *ilpv1.StoreSpec
		breakRef func(t *testing.T, ns string, conn *ilpv1.Connector)
		reason   string
		want     client.Object // the workload once the reference resolves again
	}{
		{"store switched from file to redis whose Secret is missing", file, func(t *testing.T, ns string, conn *ilpv1.Connector) {
			deleteRedisSecret(t, ns)
			update(t, conn, func(c *ilpv1.Connector) { c.Spec.Store = redis.DeepCopy() })
		}, ReasonSecretNotFound, &appsv1.Deployment{}},
		{"Redis URL Secret deleted", redis, func(t *testing.T, ns string, _ *ilpv1.Connector) { deleteRedisSecret(t, ns) },
			ReasonSecretNotFound, &appsv1.Deployment{}},
		{"Redis URL Secret deleted, then the image changed", redis, func(t *testing.T, ns string, conn *ilpv1.Connector) {
			deleteRedisSecret(t, ns)
			waitCondition(t, conn, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, ReasonSecretNotFound)
			update(t, conn, func(c *ilpv1.Connector) { c.Spec.Image = "example/ilpfleet:2" })
		}, ReasonSecretNotFound, &appsv1.Deployment{}},
		{"routing Secret missing and the resources changed", nil, func(t *testing.T, _ string, conn *ilpv1.Connector) {
			update(t, conn, func(c *ilpv1.Connector) {
				c.Spec.Routing = &ilpv1.RoutingSpec{RoutingSecretRef: &ilpv1.SecretKeyRef{Name: "routing", Key: "secret"}}
				c.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
			})
		}, ReasonSecretNotFound, &appsv1.Deployment{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			conn := sampleConnector(ns)
			conn.Spec.Store = tc.store
			mustCreate(t, secret(ns, "redis", map[string]string{"url": "redis://127.0.0.1:6379"}), conn)
			running := markAvailable(t, ns, "alice", storeType(conn) == ilpv1.StoreFile)
			waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)

			tc.breakRef(t, ns, conn)
			waitCondition(t, conn, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, tc.reason)
			ready := waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, tc.reason)
			if !strings.Contains(ready.Message, "kept") {
				t.Errorf("Ready message %q does not say the running pods are kept", ready.Message)
			}
			waitEvent(t, ns, "alice", tc.reason)
			now := running.DeepCopyObject().(client.Object)
			if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(running), now); err != nil {
				t.Fatalf("the running %T is gone: %v", running, err)
			}
			if now.GetGeneration() != running.GetGeneration() {
				t.Errorf("the running %T was changed (generation %d -> %d) although its new pods could not run",
					running, running.GetGeneration(), now.GetGeneration())
			}
			if other := otherWorkload(running); !apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, other)) {
				t.Errorf("a %T was created for pods that cannot run", other)
			}

			for _, s := range []*corev1.Secret{secret(ns, "redis", map[string]string{"url": "redis://127.0.0.1:6379"}), secret(ns, "routing", map[string]string{"secret": "r"})} {
				if err := k8s.Create(context.Background(), s); client.IgnoreAlreadyExists(err) != nil {
					t.Fatal(err)
				}
			}
			waitCondition(t, conn, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
			eventually(t, func() error {
				w := tc.want.DeepCopyObject().(client.Object)
				if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, w); err != nil {
					return err
				}
				if w.GetUID() == running.GetUID() && w.GetGeneration() == running.GetGeneration() {
					return fmt.Errorf("the held change did not go out once the reference resolved")
				}
				return nil
			})
		})
	}
}

// markAvailable plays the workload controller (envtest runs none): the Connector's Deployment,
// or StatefulSet, has rolled out and every pod is available. It returns the workload.
// The operator may write the workload between the read and the status update: on a conflict
// it reads it again.
func markAvailable(t *testing.T, ns, name string, statefulSet bool) client.Object {
	t.Helper()
	var obj client.Object
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if statefulSet {
			sts := get(t, ns, name, &appsv1.StatefulSet{})
			n := ptr.Deref(sts.Spec.Replicas, 1)
			sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: n, ReadyReplicas: n, AvailableReplicas: n,
				UpdatedReplicas: n, CurrentRevision: "r1", UpdateRevision: "r1"}
			obj = sts
		} else {
			dep := get(t, ns, name, &appsv1.Deployment{})
			n := ptr.Deref(dep.Spec.Replicas, 1)
			dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
			obj = dep
		}
		return k8s.Status().Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// otherWorkload is an empty workload of the kind w is not.
func otherWorkload(w client.Object) client.Object {
	if _, ok := w.(*appsv1.StatefulSet); ok {
		return &appsv1.Deployment{}
	}
	return &appsv1.StatefulSet{}
}

// TestReplicasAndPDB checks the PodDisruptionBudget of a multi-replica Connector and its removal.
func TestReplicasAndPDB(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	conn.Spec.Replicas = ptr.To(int32(3))
	conn.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "redis", Key: "url"}}}
	mustCreate(t, secret(ns, "redis", map[string]string{"url": "redis://127.0.0.1:6379/0"}), conn)
	pdb := get(t, ns, "alice", &policyv1.PodDisruptionBudget{})
	assertOwned(t, pdb, "Connector", "alice")
	if pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.UnhealthyPodEvictionPolicy == nil || *pdb.Spec.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow {
		t.Errorf("PDB spec = %+v", pdb.Spec)
	}
	if d := get(t, ns, "alice", &appsv1.Deployment{}); *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %d", *d.Spec.Replicas)
	}
	waitRoleSecrets(t, ns, "alice-connector", []string{"redis"})

	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Replicas = ptr.To(int32(1)) })
	eventually(t, func() error {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, &policyv1.PodDisruptionBudget{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("PDB still there: %v", err)
		}
		return nil
	})
}

// TestSecretRotation checks that a rotated Secret's new resourceVersion reaches the Connector status.
func TestSecretRotation(t *testing.T) {
	ns := namespace(t)
	s := secret(ns, "bob", map[string]string{"secret": "v1"})
	conn := sampleConnector(ns)
	mustCreate(t, s, conn, sampleAccount(ns, "bob", "alice"))
	wantVersion := func(rv string) {
		t.Helper()
		eventually(t, func() error {
			if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(conn), conn); err != nil {
				return err
			}
			if got := conn.Status.SecretVersions["bob"]; got != rv {
				return fmt.Errorf("secretVersions[bob] = %q, want %q", got, rv)
			}
			return nil
		})
	}
	wantVersion(s.ResourceVersion)
	update(t, s, func(s *corev1.Secret) { s.StringData = map[string]string{"secret": "v2"} })
	wantVersion(s.ResourceVersion)
}

// TestReadyWhenAvailable plays the Deployment controller (envtest runs none) by writing an
// available status, and checks that the Connector turns Ready and the rollout completes.
func TestReadyWhenAvailable(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, conn)
	dep := get(t, ns, "alice", &appsv1.Deployment{})
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	if err := k8s.Status().Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)
	if conn.Status.ReadyReplicas != 1 {
		t.Errorf("readyReplicas = %d", conn.Status.ReadyReplicas)
	}
}

// TestConnectorReferenceErrors checks the Connector's own references: conditions and Events.
func TestConnectorReferenceErrors(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*ilpv1.Connector)
		extra  []client.Object
		reason string
	}{
		{"routing secret missing", func(c *ilpv1.Connector) {
			c.Spec.Routing = &ilpv1.RoutingSpec{RoutingSecretRef: &ilpv1.SecretKeyRef{Name: "nope", Key: "k"}}
		}, nil, ReasonSecretNotFound},
		{"redis key missing", func(c *ilpv1.Connector) {
			c.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "redis", Key: "url"}}}
		}, []client.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "redis"}, StringData: map[string]string{"other": "x"}}}, ReasonSecretKeyNotFound},
		{"inherit from a missing account", func(c *ilpv1.Connector) { c.Spec.ILPAddress, c.Spec.InheritAddressFrom = "", "parent" }, nil, ReasonInheritFromNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			for _, o := range tc.extra {
				o.SetNamespace(ns)
			}
			conn := sampleConnector(ns)
			tc.mutate(conn)
			mustCreate(t, append(tc.extra, conn)...)
			waitCondition(t, conn, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, tc.reason)
			waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, tc.reason)
			waitEvent(t, ns, "alice", tc.reason)
		})
	}
}

// TestForeignObjectNotAdopted: an admin Service of the Connector's name that the operator did not
// make is neither adopted nor changed, whether or not it carries the operator's label (without
// it the operator's cache never sees it), and Ready says why.
func TestForeignObjectNotAdopted(t *testing.T) {
	cases := []struct {
		name   string
		labels map[string]string
	}{
		{"unlabeled", nil},
		{"labeled by hand", map[string]string{LabelManagedBy: ManagedBy}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			foreign := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice-admin", Labels: tc.labels},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "theirs", Port: 9999}}},
			}
			conn := sampleConnector(ns)
			mustCreate(t, foreign, conn)
			c := waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonReconcileError)
			if !strings.Contains(c.Message, "the operator could not update the connector's objects: Service alice-admin already exists and is not owned by alice") {
				t.Errorf("Ready message %q does not name the Service in the way", c.Message)
			}
			got := get(t, ns, "alice-admin", &corev1.Service{})
			if len(got.OwnerReferences) != 0 || len(got.Spec.Ports) != 1 || got.Spec.Ports[0].Name != "theirs" {
				t.Errorf("foreign Service was changed: owners %v, ports %v", got.OwnerReferences, got.Spec.Ports)
			}
		})
	}
}

func TestConnectorEnvMemoryLimit(t *testing.T) {
	tests := []struct {
		name      string
		resources *corev1.ResourceRequirements
		want      string // GOMEMLIMIT; "" when it must not be set
	}{
		{"no resources", nil, ""},
		{"requests only", &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}, ""},
		{"a memory limit: 90 % of it", &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}, "241591905"},
		{"a decimal limit", &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1G")}}, "900000000"},
		{"a CPU limit only", &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sampleConnector("ns")
			c.Spec.Resources = tt.resources
			env := connectorEnv(c)
			if env[0].Name != "POD_NAMESPACE" || env[1].Name != "POD_NAME" {
				t.Fatalf("env = %+v, want POD_NAMESPACE and POD_NAME first", env)
			}
			got := ""
			for _, e := range env {
				if e.Name == "GOMEMLIMIT" {
					got = e.Value
				}
			}
			if got != tt.want {
				t.Fatalf("GOMEMLIMIT = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestConnectorSpecEnv: spec.env reaches the connector container after the variables the
// operator sets, and a change of it rolls the pods (it is in their template).
func TestConnectorSpecEnv(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	proxy := corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy.egress:3128"}
	noProxy := corev1.EnvVar{Name: "NO_PROXY", Value: ".svc,.cluster.local"}
	conn.Spec.Env = []corev1.EnvVar{proxy}
	mustCreate(t, conn)
	containerEnv := func() []corev1.EnvVar {
		d := get(t, ns, "alice", &appsv1.Deployment{})
		return d.Spec.Template.Spec.Containers[0].Env
	}
	eventually(t, func() error {
		env := containerEnv()
		if len(env) < 3 || env[0].Name != "POD_NAMESPACE" || !reflect.DeepEqual(env[len(env)-1], proxy) {
			return fmt.Errorf("container env %+v: want the operator's variables, then HTTPS_PROXY", env)
		}
		return nil
	})
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Env = append(c.Spec.Env, noProxy) })
	eventually(t, func() error {
		if env := containerEnv(); !reflect.DeepEqual(env[len(env)-2:], []corev1.EnvVar{proxy, noProxy}) {
			return fmt.Errorf("container env %+v after the update: want HTTPS_PROXY and NO_PROXY last", env)
		}
		return nil
	})
}

// TestConnectorSpecEnvSecrets: the Secrets spec.env reads (valueFrom.secretKeyRef) are
// checked as the SettlementEngine's env's are — a missing Secret or key is a condition and an
// Event naming them, rather than pods in CreateContainerConfigError and nothing said; one
// created later is seen — optional ones are not, and none goes into the pods' Role (the
// kubelet resolves them, the connector does not read them).
func TestConnectorSpecEnvSecrets(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	conn.Spec.Routing = &ilpv1.RoutingSpec{RoutingSecretRef: &ilpv1.SecretKeyRef{Name: "routing", Key: "secret"}}
	conn.Spec.Env = []corev1.EnvVar{
		{Name: "HTTPS_PROXY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "proxy"}, Key: "url"}}},
		{Name: "EXTRA", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "maybe"}, Key: "x", Optional: ptr.To(true)}}},
	}
	mustCreate(t, secret(ns, "routing", map[string]string{"secret": "r"}), conn)
	c := waitCondition(t, conn, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, ReasonSecretNotFound)
	if !strings.Contains(c.Message, `Secret "proxy"`) {
		t.Errorf("ReferencesResolved %q does not name the Secret", c.Message)
	}
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonSecretNotFound)
	waitEvent(t, ns, "alice", ReasonSecretNotFound)

	mustCreate(t, secret(ns, "proxy", map[string]string{"other": "x"}))
	c = waitCondition(t, conn, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, ReasonSecretKeyNotFound)
	for _, w := range []string{`Secret "proxy" has no key "url"`, "spec.env"} {
		if !strings.Contains(c.Message, w) {
			t.Errorf("ReferencesResolved %q lacks %q", c.Message, w)
		}
	}
	waitEvent(t, ns, "alice", ReasonSecretKeyNotFound)

	update(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "proxy"}}, func(s *corev1.Secret) {
		s.StringData = map[string]string{"url": "http://proxy.egress:3128"}
	})
	waitCondition(t, conn, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	role := get(t, ns, "alice-connector", &rbacv1.Role{})
	var secrets []string
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "secrets") {
			secrets = append(secrets, r.ResourceNames...)
		}
	}
	if !slices.Equal(secrets, []string{"routing"}) {
		t.Errorf("the pods' Role grants the Secrets %v, want [routing] (spec.env's are the kubelet's to read)", secrets)
	}
}

// TestNetworkPolicy: spec.networkPolicy gives the pods a policy — peer ports open, the
// settlement port for the engines the Accounts name, the admin port for adminFrom — that
// follows the Accounts, and is removed when the field is unset.
func TestNetworkPolicy(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	monitoring := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}
	conn.Spec.NetworkPolicy = &ilpv1.NetworkPolicySpec{AdminFrom: []networkingv1.NetworkPolicyPeer{monitoring}}
	conn.Spec.Listeners = &ilpv1.ListenersSpec{Settlement: &ilpv1.ListenerSpec{Port: 7771}}
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), conn, sampleAccount(ns, "bob", "alice"))
	rules := func() string {
		var np networkingv1.NetworkPolicy
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, &np); err != nil {
			return err.Error()
		}
		var out []string
		for _, r := range np.Spec.Ingress {
			var ports, from []string
			for _, p := range r.Ports {
				ports = append(ports, p.Port.String())
			}
			for _, f := range r.From {
				switch {
				case f.PodSelector != nil:
					from = append(from, "pods "+metav1.FormatLabelSelector(f.PodSelector))
				case f.NamespaceSelector != nil:
					from = append(from, "namespaces "+metav1.FormatLabelSelector(f.NamespaceSelector))
				}
			}
			out = append(out, strings.Join(ports, ",")+" from "+strings.Join(from, ";"))
		}
		return strings.Join(out, " | ")
	}
	want := func(w string) {
		t.Helper()
		eventually(t, func() error { return checkf(rules() == w, "rules "+rules()+", want "+w) })
	}
	want("7768 from  | 7780 from namespaces kubernetes.io/metadata.name=monitoring") // no engine named: the settlement port stays shut
	np := get(t, ns, "alice", &networkingv1.NetworkPolicy{})
	assertOwned(t, np, "Connector", "alice")
	if sel := labels.Set(np.Spec.PodSelector.MatchLabels).String(); sel != "app.kubernetes.io/component=connector,ilp.ilpfleet.dev/connector=alice" {
		t.Errorf("podSelector %s", sel)
	}

	kid := sampleAccount(ns, "kids", "alice")
	kid.Spec.Relation, kid.Spec.Link = ilpv1.RelationChild, ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7790}}
	kid.Spec.SettlementEngineRef = "xrp"
	mustCreate(t, kid)
	want("7768,7790 from  | 7780 from namespaces kubernetes.io/metadata.name=monitoring | 7771 from pods ilp.ilpfleet.dev/settlement-engine in (xrp)")

	// An Account on the admin port (the pods refuse it) does not open that port to peers. The
	// Account after it shows that the operator has seen both.
	clash := sampleAccount(ns, "clash", "alice")
	clash.Spec.Relation, clash.Spec.Link = ilpv1.RelationChild, ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7780}}
	later := sampleAccount(ns, "later", "alice")
	later.Spec.Relation, later.Spec.Link = ilpv1.RelationChild, ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7791}}
	mustCreate(t, clash, later)
	waitPeerPorts(t, ns, []string{"btp-7768:7768", "btp-7790:7790", "btp-7791:7791"})
	want("7768,7790,7791 from  | 7780 from namespaces kubernetes.io/metadata.name=monitoring | 7771 from pods ilp.ilpfleet.dev/settlement-engine in (xrp)")

	update(t, conn, func(c *ilpv1.Connector) { c.Spec.NetworkPolicy = nil })
	want(`networkpolicies.networking.k8s.io "alice" not found`)
}

// httpAccount is a peer Account of alice over ILP-over-HTTP.
func httpAccount(ns, name string, h *ilpv1.HTTPLink) *ilpv1.Account {
	a := sampleAccount(ns, name, "alice")
	a.Spec.Link = ilpv1.AccountLink{HTTP: h}
	return a
}

// TestHTTPAccountPorts: an ILP-over-HTTP Account's incoming port is a peer port like a BTP
// listener's — on the peer Service and open in the NetworkPolicy, not a container port — and
// the Secrets of both its directions are in the pods' Role. An outgoing-only Account listens
// nowhere; one on a BTP Account's port adds no second Service port (the pods refuse the
// younger of the two).
func TestHTTPAccountPorts(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	conn.Spec.NetworkPolicy = &ilpv1.NetworkPolicySpec{}
	ref := func(name string) *ilpv1.SecretKeyRef { return &ilpv1.SecretKeyRef{Name: name, Key: "secret"} }
	in := httpAccount(ns, "carol", &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7769, TokenSecretRef: ref("carol-in"), JWTSecretRef: ref("carol-jwt")}})
	out := httpAccount(ns, "dave", &ilpv1.HTTPLink{Outgoing: &ilpv1.HTTPOutgoing{URL: "https://dave.example/ilp", TokenSecretRef: ref("dave-out")}})
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), conn, sampleAccount(ns, "bob", "alice"), in, out)
	waitPeerPorts(t, ns, []string{"btp-7768:7768", "http-7769:7769"})
	waitRoleSecrets(t, ns, "alice-connector", []string{"bob", "carol-in", "carol-jwt", "dave-out"})
	eventually(t, func() error {
		var np networkingv1.NetworkPolicy
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, &np); err != nil {
			return err
		}
		if len(np.Spec.Ingress) != 1 { // none yet while the policy is first written without Accounts
			return fmt.Errorf("ingress %+v, want one rule", np.Spec.Ingress)
		}
		var ports []string
		for _, p := range np.Spec.Ingress[0].Ports {
			ports = append(ports, p.Port.String())
		}
		return checkf(slices.Equal(ports, []string{"7768", "7769"}), fmt.Sprintf("ingress %+v", np.Spec.Ingress))
	})
	if got := portNames(get(t, ns, "alice", &appsv1.Deployment{}).Spec.Template.Spec.Containers[0].Ports); !slices.Equal(got, []string{"admin:7780"}) {
		t.Errorf("container ports = %v: Account ports must not touch the pod template", got)
	}
	// The Secrets are references: a missing one is reported on the Account.
	waitCondition(t, in, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, ReasonSecretNotFound)
	mustCreate(t, secret(ns, "carol-in", map[string]string{"secret": "c"}), secret(ns, "carol-jwt", map[string]string{"secret": "j"}))
	waitCondition(t, in, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)

	clash := httpAccount(ns, "erin", &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7768, TokenSecretRef: ref("bob")}})
	onAdmin := httpAccount(ns, "frank", &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7780, TokenSecretRef: ref("bob")}})
	later := httpAccount(ns, "grace", &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7790, TokenSecretRef: ref("bob")}})
	mustCreate(t, clash, onAdmin, later)
	waitPeerPorts(t, ns, []string{"btp-7768:7768", "http-7769:7769", "http-7790:7790"})
}

// TestReconcileOfUnchangedObjectsWritesNothing: reconciling a Connector or SettlementEngine
// that nothing changed sends no write. The desired pod template lacks the API server's
// defaults, so replacing the template wholesale would be an update on every reconcile.
func TestReconcileOfUnchangedObjectsWritesNothing(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		setup func(ns string) []client.Object
		apply func(t *testing.T, c client.Client, ns string) error
	}{
		{"Connector with a Deployment", func(ns string) []client.Object {
			return []client.Object{secret(ns, "bob", map[string]string{"secret": "b"}), fullConnector(ns), sampleAccount(ns, "bob", "alice"),
				secret(ns, "routing", map[string]string{"secret": "r"})}
		}, applyConnector},
		{"Connector with a rolling-update Deployment", func(ns string) []client.Object {
			// Sync ILP-over-HTTP only: the Deployment keeps the default strategy, written out.
			a := sampleAccount(ns, "bob", "alice")
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7810), Outgoing: httpOut("https://peer.example/ilp")}}
			return []client.Object{secret(ns, "bob", map[string]string{"secret": "b", "in": "i", "out": "o"}), sampleConnector(ns), a}
		}, applyConnector},
		{"Connector with peer ports serving tls", func(ns string) []client.Object {
			// The peer Service's ports with appProtocol https and kubernetes.io/wss: the API
			// server keeps them as written, and the next reconcile finds nothing to change.
			tls := &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "server"}}
			a := sampleAccount(ns, "bob", "alice")
			a.Spec.Link.BTPListener.TLS = tls
			in := httpIn(7810)
			in.TLS = tls
			b := httpAccount(ns, "carol", &ilpv1.HTTPLink{Incoming: in})
			return []client.Object{secret(ns, "bob", map[string]string{"secret": "b", "in": "i"}), tlsSecret(ns, "server", "cert"), sampleConnector(ns), a, b}
		}, applyConnector},
		{"Connector with a StatefulSet", func(ns string) []client.Object {
			conn := sampleConnector(ns)
			conn.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreFile}
			return []client.Object{conn}
		}, applyConnector},
		{"SettlementEngine", func(ns string) []client.Object {
			eng := sampleEngine(ns)
			eng.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}
			return []client.Object{secret(ns, "xrp", map[string]string{"seed": "s"}), eng}
		}, func(t *testing.T, c client.Client, ns string) error {
			eng := &ilpv1.SettlementEngine{}
			waitProgressingStarted(t, get(t, ns, "xrp", eng))
			_, err := (&SettlementEngineReconciler{Client: c, Reader: k8s}).apply(ctx, eng)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			mustCreate(t, tc.setup(ns)...)
			cw := &writeCounter{Client: k8s}
			for range 3 {
				if err := tc.apply(t, cw, ns); err != nil {
					t.Fatal(err)
				}
			}
			if len(cw.writes) != 0 {
				t.Errorf("3 reconciles of unchanged objects wrote %v", cw.writes)
			}
		})
	}
}

// applyConnector waits until the manager has written the Connector's objects, then applies
// them once more as the reconciler does.
func applyConnector(t *testing.T, c client.Client, ns string) error {
	conn := &ilpv1.Connector{}
	waitCondition(t, get(t, ns, "alice", conn), ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	waitProgressingStarted(t, conn)
	var accounts ilpv1.AccountList
	if err := k8s.List(context.Background(), &accounts, client.InNamespace(ns)); err != nil {
		return err
	}
	r := &ConnectorReconciler{Client: c, Reader: k8s, Options: Options{ConnectorImage: "ilpfleet:test"}}
	_, err := r.applyOwned(context.Background(), conn, accounts.Items, usedSecretNames(conn, accounts.Items), false)
	return err
}

// writeCounter records the writes sent through it.
type writeCounter struct {
	client.Client
	writes []string
}

func (c *writeCounter) note(verb string, obj client.Object) {
	c.writes = append(c.writes, fmt.Sprintf("%s %T %s", verb, obj, obj.GetName()))
}

func (c *writeCounter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.note("create", obj)
	return c.Client.Create(ctx, obj, opts...)
}

func (c *writeCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.note("update", obj)
	return c.Client.Update(ctx, obj, opts...)
}

func (c *writeCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	c.note("patch", obj)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c *writeCounter) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.note("delete", obj)
	return c.Client.Delete(ctx, obj, opts...)
}

// TestAccountStatusWritesDoNotReconcileTheConnector: the pods write balances into Account
// status all the time; only Account creations, deletions and spec changes concern the Connector.
func TestAccountStatusWritesDoNotReconcileTheConnector(t *testing.T) {
	acct := sampleAccount("ns", "bob", "alice")
	acct.Generation = 1
	status := acct.DeepCopy()
	status.Status.Balance = "42"
	spec := acct.DeepCopy()
	spec.Generation = 2
	cases := []struct {
		name string
		got  bool
		want bool
	}{
		{"create", accountChanges.Create(event.CreateEvent{Object: acct}), true},
		{"delete", accountChanges.Delete(event.DeleteEvent{Object: acct}), true},
		{"status written", accountChanges.Update(event.UpdateEvent{ObjectOld: acct, ObjectNew: status}), false},
		{"spec changed", accountChanges.Update(event.UpdateEvent{ObjectOld: acct, ObjectNew: spec}), true},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s: reconciles the Connector = %t, want %t", tc.name, tc.got, tc.want)
		}
	}
}

// TestInheritedAddressIsThePods: the operator writes status.address from spec.ilpAddress, but
// leaves an inherited one, which only the pods learn (over IL-DCP), to them.
func TestInheritedAddressIsThePods(t *testing.T) {
	ns := namespace(t)
	c := createInheriting(t, ns)

	// What the pod holding the Lease writes once the parent answered.
	body := fmt.Sprintf(`{"apiVersion":%q,"kind":"Connector","metadata":{"name":"alice","namespace":%q},"status":{"address":"test.parent.alice"}}`,
		ilpv1.GroupVersion.String(), ns)
	if err := k8s.Status().Patch(context.Background(), &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"}},
		client.RawPatch(types.ApplyPatchType, []byte(body)), client.FieldOwner(kube.AddressFieldManager), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	update(t, c, func(c *ilpv1.Connector) { c.Spec.Rates.Spread = "0.01" }) // a reconcile of a new generation
	waitCondition(t, c, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	if c.Status.Address != "test.parent.alice" {
		t.Errorf("status.address = %q after a reconcile, want the inherited address the pod reported", c.Status.Address)
	}
}
