package kube

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// PodFieldManager is the field manager under which pod writes its own entry of
// Connector.status.pods. One manager per pod: server-side apply then keeps every other pod's
// entry (the list is a map keyed by name). The operator's merge patches of the status
// (optimistically locked) carry the entries over unchanged, except that they drop the entries
// of pods that no longer exist (controllers prunePods, which checks with an uncached read):
// such a pod never writes again, and a live pod's entry is never dropped.
func PodFieldManager(pod string) string { return "ilpfleet-pod-" + pod }

// podReporter writes this pod's entry of Connector.status.pods. Unlike the reporter it runs on
// every pod, Lease or not: the point is that each pod speaks for itself. It writes when the
// entry changed, at most once per ReportInterval.
type podReporter struct {
	s *Source

	mu   sync.Mutex
	want *ilpv1.ConnectorPodStatus // nil before the first sync
	wake chan struct{}

	// Owned by the Start goroutine.
	last      *ilpv1.ConnectorPodStatus
	lastWrite time.Time
}

func newPodReporter(s *Source) *podReporter {
	return &podReporter{s: s, wake: make(chan struct{}, 1)}
}

// NeedLeaderElection is false: every pod reports its own entry.
func (p *podReporter) NeedLeaderElection() bool { return false }

// set records the outcome of a sync, as the ConfigApplied condition the sync computed.
func (p *podReporter) set(c *metav1.Condition) {
	e := &ilpv1.ConnectorPodStatus{Name: p.s.opts.Pod, AppliedGeneration: c.ObservedGeneration,
		Applied: c.Status == metav1.ConditionTrue, Reason: c.Reason, Message: c.Message}
	p.mu.Lock()
	p.want = e
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Start reports until ctx is done.
func (p *podReporter) Start(ctx context.Context) error {
	return reportLoop(ctx, p.s.opts.ReportInterval, p.wake, p.flush)
}

func (p *podReporter) flush(ctx context.Context, now time.Time) {
	p.mu.Lock()
	want := p.want
	p.mu.Unlock()
	if want == nil || samePodEntry(p.last, want) {
		return
	}
	if !p.lastWrite.IsZero() && now.Sub(p.lastWrite) < p.s.opts.ReportInterval {
		return
	}
	if p.last == nil {
		// A restarted pod: start from what the API holds, so that an unchanged entry is not
		// rewritten and its transition time is kept.
		p.last = p.current(ctx)
		if samePodEntry(p.last, want) {
			return
		}
	}
	e := *want
	e.LastTransitionTime = metav1.NewTime(now)
	if p.last != nil && p.last.Applied == e.Applied {
		e.LastTransitionTime = p.last.LastTransitionTime
	}
	if err := p.write(ctx, &e); err != nil {
		p.s.log.Warn("cannot write this pod's entry of the Connector status; will retry", "error", err)
		return
	}
	p.last, p.lastWrite = &e, now
}

// current returns this pod's entry as the cache sees it, or nil.
func (p *podReporter) current(ctx context.Context) *ilpv1.ConnectorPodStatus {
	var conn ilpv1.Connector
	if err := p.s.cl.Get(ctx, client.ObjectKey{Namespace: p.s.opts.Namespace, Name: p.s.opts.Connector}, &conn); err != nil {
		return nil
	}
	for i := range conn.Status.Pods {
		if conn.Status.Pods[i].Name == p.s.opts.Pod {
			e := conn.Status.Pods[i]
			return &e
		}
	}
	return nil
}

func samePodEntry(a, b *ilpv1.ConnectorPodStatus) bool {
	return a != nil && b != nil && a.Name == b.Name && a.AppliedGeneration == b.AppliedGeneration &&
		a.Applied == b.Applied && a.Reason == b.Reason && a.Message == b.Message
}

// write server-side-applies this pod's entry alone under its own field manager.
func (p *podReporter) write(ctx context.Context, e *ilpv1.ConnectorPodStatus) error {
	return applyStatus(ctx, p.s, PodFieldManager(p.s.opts.Pod), map[string]any{"pods": []ilpv1.ConnectorPodStatus{*e}})
}
