package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/textcut"
)

// stuckReasons are the waiting reasons of a container that say why a pod does not come up and
// that only its owner can fix: the image cannot be pulled, the process keeps exiting, or the
// container cannot even be created.
var stuckReasons = []string{"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff",
	"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}

// maxCause bounds the pod's own words quoted in a condition message (an image pull error can
// run to kilobytes of registry output).
const maxCause = 512

// connectorPods lists the Connector's pods from the cache (which holds the operator's labelled
// pods only, CacheOptions).
func (r *ConnectorReconciler) connectorPods(ctx context.Context, conn *ilpv1.Connector) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(conn.Namespace), client.MatchingLabels(selectorLabels(conn))); err != nil {
		return nil, err
	}
	return pods.Items, nil
}

// podsCause says why pods do not come up, when one of them says it: a container waiting for a
// reason of stuckReasons, or a pod the scheduler cannot place. "" when none does (they start,
// or run without passing their probe: ConfigApplied and status.pods say why). Pods are taken
// in name order, so that the message does not change with the order the cache lists them in.
func podsCause(pods []corev1.Pod) string {
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	for i := range pods {
		if c := podCause(&pods[i]); c != "" {
			return c
		}
	}
	return ""
}

// podCause is podsCause for one pod; a terminating pod has none (its successor counts).
func podCause(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return ""
	}
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && slices.Contains(stuckReasons, w.Reason) {
			return fmt.Sprintf("pod %s: container %s is waiting: %s", p.Name, cs.Name, quoted(w.Reason, w.Message))
		}
	}
	if p.Status.Phase == corev1.PodPending {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return fmt.Sprintf("pod %s cannot be scheduled: %s", p.Name, quoted(c.Reason, c.Message))
			}
		}
	}
	return ""
}

// quoted is reason, and msg (bounded) after it when there is one.
func quoted(reason, msg string) string {
	if msg == "" {
		return reason
	}
	if len(msg) > maxCause {
		msg = textcut.Prefix(msg, maxCause) + "…"
	}
	return reason + ": " + msg
}

// prunePods drops from status.pods the entries of pods that no longer exist, so that the
// documented `kubectl get connector -o jsonpath='{.status.pods}'` shows the pods there are,
// not the failures of pods deleted long ago. An entry whose pod the cache lacks is checked with
// one uncached read first: a pod just created writes its entry before the cache may hold it.
// The entries are the pods' own (server-side apply, a field manager per pod); a deleted pod
// never writes again, and the merge patch of the status (optimistic lock) leaves the others
// as they are.
func (r *ConnectorReconciler) prunePods(ctx context.Context, conn *ilpv1.Connector, pods []corev1.Pod) {
	have := map[string]bool{}
	for i := range pods {
		have[pods[i].Name] = true
	}
	var keep []ilpv1.ConnectorPodStatus
	for _, e := range conn.Status.Pods {
		if have[e.Name] || !r.podGone(ctx, conn.Namespace, e.Name) {
			keep = append(keep, e)
		}
	}
	if len(keep) != len(conn.Status.Pods) {
		conn.Status.Pods = keep
	}
}

// podGone reads the pod uncached: true when it does not exist. A failed read keeps the entry
// (false): a failure it reports must not be hidden; the next reconcile reads again.
func (r *ConnectorReconciler) podGone(ctx context.Context, ns, name string) bool {
	var pod metav1.PartialObjectMetadata
	pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return apierrors.IsNotFound(r.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod))
}

// connectorOfPod maps a connector pod to its Connector.
func connectorOfPod(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[labelComponent] != componentConnector || l[ilpv1.LabelConnector] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: l[ilpv1.LabelConnector]}}}
}

// podChanges are the pod events that concern its Connector or SettlementEngine: a pod gone
// (its status.pods entry goes), and a change of why it does not come up (podCause). Not every
// pod status change: readiness reaches the owner through its workload's status.
var podChanges = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Pod)
		n, ok2 := e.ObjectNew.(*corev1.Pod)
		return !ok1 || !ok2 || podCause(o) != podCause(n)
	},
}
