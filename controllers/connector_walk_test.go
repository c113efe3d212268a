package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// listenerAccount is an Account of alice whose BTP listener is on port.
func listenerAccount(ns, name string, port int32) *ilpv1.Account {
	a := sampleAccount(ns, name, "alice")
	a.Spec.Link.BTPListener.Port = port
	return a
}

// TestLowestPrivilegedPort: the sysctl value is the lowest port below 1024 that the pods bind,
// of the Connector's listeners and its Accounts' links; none without such a port.
func TestLowestPrivilegedPort(t *testing.T) {
	lowAdmin := sampleConnector("ns")
	lowAdmin.Spec.Listeners = &ilpv1.ListenersSpec{Admin: &ilpv1.ListenerSpec{Port: 81}, Settlement: &ilpv1.ListenerSpec{Port: 1024}}
	child := sampleAccount("ns", "kids", "alice")
	child.Spec.Link = ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 443}}
	client := sampleAccount("ns", "up", "alice")
	client.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://up:80"}}
	for _, tt := range []struct {
		name     string
		conn     *ilpv1.Connector
		accounts []ilpv1.Account
		want     int32
	}{
		{"none", sampleConnector("ns"), []ilpv1.Account{*listenerAccount("ns", "bob", 7768)}, 0},
		{"1024 is not privileged", sampleConnector("ns"), []ilpv1.Account{*listenerAccount("ns", "bob", 1024)}, 0},
		{"an Account's listener", sampleConnector("ns"), []ilpv1.Account{*listenerAccount("ns", "bob", 7768), *listenerAccount("ns", "web", 1023)}, 1023},
		{"the lowest of several", sampleConnector("ns"), []ilpv1.Account{*listenerAccount("ns", "web", 443), *listenerAccount("ns", "plain", 80)}, 80},
		{"a child server", sampleConnector("ns"), []ilpv1.Account{*child}, 443},
		{"a client binds nothing", sampleConnector("ns"), []ilpv1.Account{*client}, 0},
		{"the Connector's admin listener", lowAdmin, []ilpv1.Account{*child}, 81},
	} {
		t.Run(tt.name, func(t *testing.T) {
			low := lowestPrivilegedPort(tt.conn, tt.accounts)
			if low != tt.want {
				t.Fatalf("lowest privileged port = %d, want %d", low, tt.want)
			}
			sc := connectorPodTemplate(tt.conn, "img", restartInputsOf(tt.conn, "img", "", low), low).Spec.SecurityContext
			var want []corev1.Sysctl
			if tt.want > 0 {
				want = []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: fmt.Sprint(tt.want)}}
			}
			if !slices.Equal(sc.Sysctls, want) {
				t.Errorf("sysctls = %v, want %v", sc.Sysctls, want)
			}
		})
	}
	// Without a low port the restart inputs are those of before: no roll at the upgrade.
	plain := sampleConnector("ns")
	if in := restartInputsOf(plain, "img", "", 0).String(); strings.Contains(in, "lowPort") {
		t.Errorf("restart inputs without a low port name it: %s", in)
	}
	if got := restartInputsOf(plain, "img", "", 80).changedSince(restartInputsOf(plain, "img", "", 0).String()); !slices.Equal(got, []string{"lowPort"}) {
		t.Errorf("a first low port changes %v, want [lowPort]", got)
	}
	if got := restartInputsOf(plain, "img", "", 0).changedSince(restartInputsOf(plain, "img", "", 80).String()); !slices.Equal(got, []string{"lowPort"}) {
		t.Errorf("the last low port gone changes %v, want [lowPort]", got)
	}
}

// TestLowPortAccountSetsTheSysctl: an Account on a port below 1024 gives the pods the sysctl
// that lets them bind it, and the roll says why; a Connector without one keeps its template.
func TestLowPortAccountSetsTheSysctl(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), conn, listenerAccount(ns, "bob", 7768))
	waitProgressingStarted(t, conn)
	eventually(t, func() error { // the BTP listener's strategy is written: no write races markAvailable's
		if d := get(t, ns, "alice", &appsv1.Deployment{}); d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			return fmt.Errorf("strategy %s", d.Spec.Strategy.Type)
		}
		return nil
	})
	dep := markAvailable(t, ns, "alice", false).(*appsv1.Deployment)
	if sc := dep.Spec.Template.Spec.SecurityContext; sc == nil || len(sc.Sysctls) != 0 {
		t.Fatalf("no low port, yet the pods carry sysctls: %+v", sc)
	}
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)

	wantSysctl := func(value string) {
		t.Helper()
		eventually(t, func() error {
			d := get(t, ns, "alice", &appsv1.Deployment{})
			if got := d.Spec.Template.Spec.SecurityContext.Sysctls; len(got) != 1 || got[0].Name != "net.ipv4.ip_unprivileged_port_start" || got[0].Value != value {
				return fmt.Errorf("sysctls = %v, want ip_unprivileged_port_start=%s", got, value)
			}
			return nil
		})
	}
	mustCreate(t, listenerAccount(ns, "web", 443))
	wantSysctl("443")
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, "LowPortChanged")
	mustCreate(t, listenerAccount(ns, "plain", 80))
	wantSysctl("80")
}

// TestPodReplacedIsNoRoll (walkthrough defect 9): once a roll is complete, a pod replaced from
// the same template (kubectl delete pod) leaves Progressing False, not True with the reason of
// that old roll.
func TestPodReplacedIsNoRoll(t *testing.T) {
	ns, conn := rolledOutConnector(t)
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Image = "example/ilpfleet:2" })
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, "ImageChanged")
	markAvailable(t, ns, "alice", false)
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)
	dep := get(t, ns, "alice", &appsv1.Deployment{})
	if got, want := get(t, ns, "alice", conn).Status.RolledOutTemplate, templateHash(dep); got != want {
		t.Fatalf("status.rolledOutTemplate = %q, want %q, the template's", got, want)
	}

	// The pod is deleted: its successor, of the same template, is not available yet.
	dep.Status.AvailableReplicas, dep.Status.ReadyReplicas, dep.Status.ObservedGeneration = 0, 0, dep.Generation
	if err := k8s.Status().Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonWorkloadUnavailable)
	if c := meta.FindStatusCondition(conn.Status.Conditions, ilpv1.ConditionProgressing); c == nil ||
		c.Status != metav1.ConditionFalse || c.Reason != ReasonRolloutComplete {
		t.Errorf("after a pod was replaced, Progressing = %+v, want False/%s", c, ReasonRolloutComplete)
	}

	// A new roll still names its reason, even while pods are missing.
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Image = "example/ilpfleet:3" })
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionTrue, "ImageChanged")
}

// applyConnectorConfigApplied writes the Connector's ConfigApplied as the pods do (server-side apply).
func applyConnectorConfigApplied(t *testing.T, conn *ilpv1.Connector, status metav1.ConditionStatus, reason, msg string) {
	t.Helper()
	get(t, conn.Namespace, conn.Name, conn)
	c := metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: conn.Generation, LastTransitionTime: metav1.Now()}
	body := fmt.Sprintf(`{"apiVersion":%q,"kind":"Connector","metadata":{"name":%q,"namespace":%q},"status":{"conditions":[%s]}}`,
		ilpv1.GroupVersion.String(), conn.Name, conn.Namespace, mustJSON(t, c))
	obj := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: conn.Namespace, Name: conn.Name}}
	if err := k8s.Status().Patch(context.Background(), obj, client.RawPatch(types.ApplyPatchType, []byte(body)),
		client.FieldOwner("ilpfleet-test-pod"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfigNotAppliedEvent: a configuration the pods refuse is reported in a Warning Event
// with the pods' reason and message, not only in status.
func TestConfigNotAppliedEvent(t *testing.T) {
	ns, conn := rolledOutConnector(t)
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)
	msg := "alice-1 keeps its previous configuration: link web: listen tcp :80: bind: permission denied"
	applyConnectorConfigApplied(t, conn, metav1.ConditionFalse, "ApplyFailed", msg)
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonConfigNotApplied)
	e := waitEvent(t, ns, "alice", "ApplyFailed")
	if e.Type != corev1.EventTypeWarning || e.Note != msg {
		t.Errorf("event %s %q, want Warning %q", e.Type, e.Note, msg)
	}
}

// TestReportFailureOncePerChange: the Warning goes out when the failure appears or changes,
// not on every reconcile, and again after it cleared and came back.
func TestReportFailureOncePerChange(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	r := &ConnectorReconciler{Recorder: rec}
	conn := sampleConnector("ns")
	conn.Generation = 3
	pending := conn.DeepCopy() // a new generation the pods have not reported on yet
	meta.SetStatusCondition(&pending.Status.Conditions, metav1.Condition{Type: ilpv1.ConditionConfigApplied,
		Status: metav1.ConditionFalse, Reason: "ObjectsLeftOut", ObservedGeneration: 2})
	applied := conn.DeepCopy()
	meta.SetStatusCondition(&applied.Status.Conditions, metav1.Condition{Type: ilpv1.ConditionConfigApplied,
		Status: metav1.ConditionTrue, Reason: "Applied", ObservedGeneration: 3})
	a := &configFailureNote{"ApplyFailed", "bind: permission denied"}
	b := &configFailureNote{"InvalidConfig", "bad"}
	left := func(gen, accounts int) *configFailureNote {
		return &configFailureNote{"ObjectsLeftOut", fmt.Sprintf("alice-0 runs generation %d with %d accounts; left out: Account x: bind", gen, accounts)}
	}
	for _, step := range []struct {
		c *ilpv1.Connector
		f *configFailureNote
	}{
		{conn, a}, {conn, a}, {conn, a}, {conn, b}, {conn, b},
		{applied, nil}, {applied, nil}, {conn, b}, // over once the pods applied: reported again
		{conn, left(2, 4)}, {pending, nil}, {conn, left(3, 5)}, // the same left-out list at a new generation: once
	} {
		r.reportFailure("ns/alice", step.c, step.f)
	}
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	want := []string{"Warning ApplyFailed bind: permission denied", "Warning InvalidConfig bad", "Warning InvalidConfig bad",
		"Warning ObjectsLeftOut alice-0 runs generation 2 with 4 accounts; left out: Account x: bind"}
	if !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// connectorPod creates a pod of alice (envtest runs no kubelet: its status is the test's) and
// writes status.
func connectorPod(t *testing.T, ns, name string, status corev1.PodStatus) *corev1.Pod {
	t.Helper()
	conn := sampleConnector(ns)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: connectorLabels(conn)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: containerName, Image: "ilpfleet:test"}}}}
	mustCreate(t, p)
	p.Status = status
	if err := k8s.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

func waiting(reason, msg string) corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, Image: "ilpfleet:test",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}}
}

func unschedulable(msg string) corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
		Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg}}}
}

func TestPodsCause(t *testing.T) {
	pod := func(name string, st corev1.PodStatus) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: st}
	}
	gone := pod("alice-0", waiting("ErrImagePull", "x"))
	gone.DeletionTimestamp = ptr.To(metav1.Now())
	long := strings.Repeat("x", 2*maxCause)
	for _, tt := range []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{"none", nil, ""},
		{"starting", []corev1.Pod{pod("alice-1", waiting("ContainerCreating", ""))}, ""},
		{"image", []corev1.Pod{pod("alice-1", waiting("ImagePullBackOff", `Back-off pulling image "ghcr.io/x:dev"`))},
			`pod alice-1: container connector is waiting: ImagePullBackOff: Back-off pulling image "ghcr.io/x:dev"`},
		{"crash loop, first by name", []corev1.Pod{pod("alice-2", waiting("ErrImagePull", "")), pod("alice-1", waiting("CrashLoopBackOff", "back-off 10s"))},
			"pod alice-1: container connector is waiting: CrashLoopBackOff: back-off 10s"},
		{"unschedulable", []corev1.Pod{pod("alice-1", unschedulable("0/1 nodes are available: 1 Insufficient cpu."))},
			"pod alice-1 cannot be scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."},
		{"a terminating pod does not count", []corev1.Pod{gone}, ""},
		{"bounded", []corev1.Pod{pod("alice-1", waiting("ErrImagePull", long))},
			"pod alice-1: container connector is waiting: ErrImagePull: " + long[:maxCause] + "…"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := podsCause(tt.pods); got != tt.want {
				t.Errorf("cause = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWorkloadUnavailableSaysWhy: Ready's WorkloadUnavailable message quotes what the pods say
// of why they do not come up, and follows it when it changes.
func TestWorkloadUnavailableSaysWhy(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, conn)
	waitProgressingStarted(t, conn)
	p := connectorPod(t, ns, "alice-1", unschedulable("0/1 nodes are available: 1 Insufficient memory."))
	waitMessage := func(want string) {
		t.Helper()
		eventually(t, func() error {
			c := meta.FindStatusCondition(get(t, ns, "alice", conn).Status.Conditions, ilpv1.ConditionReady)
			if c == nil || c.Reason != ReasonWorkloadUnavailable || !strings.Contains(c.Message, want) {
				return fmt.Errorf("Ready = %+v, want WorkloadUnavailable saying %q", c, want)
			}
			return nil
		})
	}
	waitMessage("pod alice-1 cannot be scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient memory.")
	p.Status = waiting("ErrImagePull", `failed to pull image "ghcr.io/ilpfleet/ilpfleet:dev"`)
	if err := k8s.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	waitMessage(`pod alice-1: container connector is waiting: ErrImagePull: failed to pull image "ghcr.io/ilpfleet/ilpfleet:dev"`)
}

// applyPodEntry writes a status.pods entry as that pod does (server-side apply, its own manager).
func applyPodEntry(t *testing.T, ns, pod string, applied bool) {
	t.Helper()
	e := ilpv1.ConnectorPodStatus{Name: pod, AppliedGeneration: 1, Applied: applied, Reason: "ApplyFailed", Message: pod + " failed", LastTransitionTime: metav1.Now()}
	body := fmt.Sprintf(`{"apiVersion":%q,"kind":"Connector","metadata":{"name":"alice","namespace":%q},"status":{"pods":[%s]}}`,
		ilpv1.GroupVersion.String(), ns, mustJSON(t, e))
	obj := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"}}
	if err := k8s.Status().Patch(context.Background(), obj, client.RawPatch(types.ApplyPatchType, []byte(body)),
		client.FieldOwner("ilpfleet-pod-"+pod), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

// TestStatusPodsOfDeletedPodsGo: the entries of pods that no longer exist leave status.pods;
// those of pods that exist stay, failures included.
func TestStatusPodsOfDeletedPodsGo(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, conn)
	waitProgressingStarted(t, conn)
	live := connectorPod(t, ns, "alice-live", corev1.PodStatus{Phase: corev1.PodRunning})
	doomed := connectorPod(t, ns, "alice-doomed", corev1.PodStatus{Phase: corev1.PodRunning})
	applyPodEntry(t, ns, "alice-gone", false) // a pod deleted while the operator was away
	applyPodEntry(t, ns, "alice-live", false)
	applyPodEntry(t, ns, "alice-doomed", true)
	wantEntries := func(want ...string) {
		t.Helper()
		eventually(t, func() error {
			var names []string
			for _, e := range get(t, ns, "alice", conn).Status.Pods {
				names = append(names, e.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, want) {
				return fmt.Errorf("status.pods of %v, want %v", names, want)
			}
			return nil
		})
	}
	wantEntries("alice-doomed", "alice-live")
	if err := k8s.Delete(context.Background(), doomed, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	wantEntries("alice-live")
	// The live pod's entry is still its own: it updates it as before.
	applyPodEntry(t, ns, live.Name, true)
	eventually(t, func() error {
		if ps := get(t, ns, "alice", conn).Status.Pods; len(ps) != 1 || !ps[0].Applied {
			return fmt.Errorf("status.pods = %+v", ps)
		}
		return nil
	})
}

// TestScaleSubresource: kubectl scale and a HorizontalPodAutoscaler work on a Connector through
// its scale subresource: spec.replicas (1 when left out), the pods' count and their selector.
func TestScaleSubresource(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	conn.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "redis", Key: "url"}}}
	mustCreate(t, secret(ns, "redis", map[string]string{"url": "redis://127.0.0.1:6379/0"}), conn)
	markAvailable(t, ns, "alice", false)
	scale := &autoscalingv1.Scale{}
	eventually(t, func() error {
		if err := k8s.SubResource("scale").Get(context.Background(), conn, scale); err != nil {
			return err
		}
		if scale.Spec.Replicas != 1 || scale.Status.Replicas != 1 || scale.Status.Selector != "app.kubernetes.io/component=connector,ilp.ilpfleet.dev/connector=alice" {
			return fmt.Errorf("scale = %+v", scale)
		}
		return nil
	})
	scale.Spec.Replicas = 3
	if err := k8s.SubResource("scale").Update(context.Background(), conn, client.WithSubResourceBody(scale)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if d := get(t, ns, "alice", &appsv1.Deployment{}); ptr.Deref(d.Spec.Replicas, 0) != 3 {
			return fmt.Errorf("Deployment replicas = %d, want 3", ptr.Deref(d.Spec.Replicas, 0))
		}
		return nil
	})
}

// TestCountColumnsShowZero: the ACCOUNTS and PODS printer columns read 0, not nothing, for a
// Connector without Accounts or ready pods.
func TestCountColumnsShowZero(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, conn)
	waitProgressingStarted(t, conn)
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ilpv1.GroupVersion.WithKind("Connector"))
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(conn), u); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"accounts", "readyReplicas"} {
		if v, found, err := unstructured.NestedInt64(u.Object, "status", f); err != nil || !found || v != 0 {
			t.Errorf("status.%s = %d (found %t, %v), want 0", f, v, found, err)
		}
	}
}

// TestConfigFailureNamesThePodOnce: a failing pod's entry is quoted with its name in front —
// once: the pods' own messages already start with it.
func TestConfigFailureNamesThePodOnce(t *testing.T) {
	conn := sampleConnector("ns")
	for _, tc := range []struct{ msg, want string }{
		{"alice-1 has not started: bind", "alice-1 has not started: bind"},
		{"bind: permission denied", "pod alice-1: bind: permission denied"},
		{"alice-10 failed", "pod alice-1: alice-10 failed"}, // another pod's name, not its own
	} {
		f := configFailure(conn, &ilpv1.ConnectorPodStatus{Name: "alice-1", Reason: "ApplyFailed", Message: tc.msg})
		if f == nil || f.msg != tc.want {
			t.Errorf("configFailure of %q = %+v, want message %q", tc.msg, f, tc.want)
		}
	}
}

// rolledOutConnector creates the sample Connector in a new namespace and plays its first roll
// out to the end: its Deployment available, Progressing False (RolloutComplete).
func rolledOutConnector(t *testing.T) (string, *ilpv1.Connector) {
	t.Helper()
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, conn)
	waitProgressingStarted(t, conn)
	markAvailable(t, ns, "alice", false)
	waitCondition(t, conn, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)
	return ns, conn
}
