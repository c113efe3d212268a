package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// Reasons of the ConfigApplied condition.
const (
	reasonApplied     = "Applied"
	reasonPartial     = "ObjectsLeftOut"
	reasonInvalid     = "InvalidConfig"
	reasonApplyFailed = "ApplyFailed"
)

// maxAccountWrites bounds the Account status writes of one flush (a quarter of ReportInterval),
// so that a pod that starts with 10,000 Accounts, or a new Lease holder, spreads its first
// report over the following ticks instead of flooding the API server; ConfigApplied is written
// first, so it never waits behind them.
const maxAccountWrites = 50

// maxMessage bounds a condition message: a list of 10,000 bad Accounts must not make the
// status write fail (the API allows 32 KiB) nor bury the first problems.
const maxMessage = 2048

// reporter writes what the pod knows back to the API: the Connector's ConfigApplied condition
// and inherited address, and each Account's status.connected and status.balance. Only the pod holding the Lease
// (LeaseName) writes, so that replicas do not fight; it writes an object only when its value
// changed, and at most once per ReportInterval per object.
type reporter struct {
	s *Source

	mu       sync.Mutex
	cond     *metav1.Condition // ConfigApplied wanted; nil before the first sync
	accounts []string          // ids in the running config
	inherit  bool              // the running config inherits its address
	wake     chan struct{}

	// Owned by the Start goroutine.
	lastCond    *metav1.Condition
	lastAddress string
	// lastWrite is by object: "" is the Connector's ConfigApplied, keyAddress its address,
	// else the Account name.
	lastWrite map[string]time.Time
	written   map[string]accountStatus
}

// keyAddress is the address's key in reporter.lastWrite: never an Account name (no slash).
const keyAddress = "/address"

type accountStatus struct {
	connected bool
	balance   string
}

func newReporter(s *Source) *reporter {
	return &reporter{s: s, wake: make(chan struct{}, 1), lastWrite: map[string]time.Time{}, written: map[string]accountStatus{}}
}

// NeedLeaderElection makes only the Lease holder report.
func (r *reporter) NeedLeaderElection() bool { return true }

// setConfig records the outcome of a sync as the ConfigApplied condition to write. cfg is the
// config now in force (nil: unchanged).
func (r *reporter) setConfig(conn *ilpv1.Connector, cfg *config.Config, problems []Problem, reason string, err error) {
	c := &metav1.Condition{Type: ilpv1.ConditionConfigApplied, ObservedGeneration: conn.Generation, Reason: reason}
	pod := r.s.opts.Pod
	if pod == "" {
		pod = "the connector"
	}
	switch {
	case err != nil:
		c.Status = metav1.ConditionFalse
		c.Message = fmt.Sprintf("%s keeps its previous configuration: %v", pod, err)
	case len(problems) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, reasonPartial
		c.Message = fmt.Sprintf("%s runs generation %d with %d accounts; left out: %s", pod, conn.Generation, len(cfg.Accounts), problemList(problems))
	default:
		c.Status = metav1.ConditionTrue
		c.Message = fmt.Sprintf("%s runs generation %d with %d accounts and %d routes", pod, conn.Generation, len(cfg.Accounts), len(cfg.Routes))
	}
	c.Message = truncate(c.Message)
	if r.s.pods != nil {
		r.s.pods.set(c)
	}
	r.mu.Lock()
	r.cond = c
	if cfg != nil {
		r.accounts = sortedIDs(cfg)
		r.inherit = cfg.ILPAddressInheritFrom != ""
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func problemList(ps []Problem) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage] + "… (truncated)"
}

func sortedIDs(c *config.Config) []string {
	ids := make([]string, 0, len(c.Accounts))
	for id := range c.Accounts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Start reports until ctx is done.
func (r *reporter) Start(ctx context.Context) error {
	return reportLoop(ctx, r.s.opts.ReportInterval, r.wake, r.flush)
}

// reportLoop calls flush on every wake and at a quarter of interval, so that a change held back
// by the rate limit goes out soon after the limit allows, until ctx is done.
func reportLoop(ctx context.Context, interval time.Duration, wake <-chan struct{}, flush func(context.Context, time.Time)) error {
	t := time.NewTicker(interval / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-wake:
		}
		flush(ctx, time.Now())
	}
}

// due reports whether object key may be written at now.
func (r *reporter) due(key string, now time.Time) bool {
	last, ok := r.lastWrite[key]
	return !ok || now.Sub(last) >= r.s.opts.ReportInterval
}

func (r *reporter) flush(ctx context.Context, now time.Time) {
	r.mu.Lock()
	cond, ids, inherit := r.cond, r.accounts, r.inherit
	r.mu.Unlock()
	if cond != nil && !sameCondition(r.lastCond, cond) && r.due("", now) && !r.conditionCurrent(ctx, cond) {
		if err := r.writeCondition(ctx, cond); err != nil {
			r.s.log.Warn("cannot write the ConfigApplied condition; will retry", "error", err)
		} else {
			r.lastCond, r.lastWrite[""] = cond, now
		}
	}
	rt := r.s.Runtime()
	if rt == nil {
		return
	}
	if inherit {
		r.reportAddress(ctx, string(rt.Address()), now)
	} else {
		r.lastAddress = "" // the operator writes the configured one over it: report again if inherited again
	}
	if len(r.written) > len(ids) {
		r.prune(ids)
	}
	budget := maxAccountWrites
	for _, id := range ids {
		if ctx.Err() != nil || budget == 0 {
			return
		}
		if r.reportAccount(ctx, rt, id, now) {
			budget--
		}
	}
}

// prune forgets the accounts no longer configured.
func (r *reporter) prune(ids []string) {
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
	}
	for id := range r.written {
		if !keep[id] {
			delete(r.written, id)
			delete(r.lastWrite, id)
		}
	}
}

func sameCondition(a, b *metav1.Condition) bool {
	return a != nil && b != nil && a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message && a.ObservedGeneration == b.ObservedGeneration
}

// conditionCurrent reports whether the Connector already carries cond (as the cache sees it).
func (r *reporter) conditionCurrent(ctx context.Context, cond *metav1.Condition) bool {
	var conn ilpv1.Connector
	if err := r.s.cl.Get(ctx, client.ObjectKey{Namespace: r.s.opts.Namespace, Name: r.s.opts.Connector}, &conn); err != nil {
		return false
	}
	have := meta.FindStatusCondition(conn.Status.Conditions, cond.Type)
	if !sameCondition(have, cond) {
		// Keep the transition time while the status stays, as meta.SetStatusCondition does.
		cond.LastTransitionTime = metav1.Now()
		if have != nil && have.Status == cond.Status {
			cond.LastTransitionTime = have.LastTransitionTime
		}
		return false
	}
	return true
}

// writeCondition server-side-applies ConfigApplied alone under FieldManager: conditions are a
// map list keyed by type, so the operator's conditions are left alone, and the operator's own
// optimistically locked merge patches carry this one over unchanged.
func (r *reporter) writeCondition(ctx context.Context, cond *metav1.Condition) error {
	return applyStatus(ctx, r.s, FieldManager, map[string]any{"conditions": []metav1.Condition{*cond}})
}

// applyStatus server-side-applies status fields of this pod's Connector under manager.
func applyStatus(ctx context.Context, s *Source, manager string, status map[string]any) error {
	body := map[string]any{
		"apiVersion": ilpv1.GroupVersion.String(),
		"kind":       "Connector",
		"metadata":   map[string]any{"name": s.opts.Connector, "namespace": s.opts.Namespace},
		"status":     status,
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	obj := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Name: s.opts.Connector, Namespace: s.opts.Namespace}}
	return s.cl.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, data), client.FieldOwner(manager), client.ForceOwnership)
}

// reportAddress writes an inherited address into Connector.status.address (the Address
// printer column) once the parent gave it, and again when it changes. A configured address is
// the operator's to write, from spec.ilpAddress.
func (r *reporter) reportAddress(ctx context.Context, addr string, now time.Time) {
	if addr == "" || addr == r.lastAddress || !r.due(keyAddress, now) {
		return
	}
	var conn ilpv1.Connector
	if err := r.s.cl.Get(ctx, client.ObjectKey{Namespace: r.s.opts.Namespace, Name: r.s.opts.Connector}, &conn); err == nil && conn.Status.Address == addr {
		r.lastAddress = addr // a restarted pod or a new Lease holder: already there
		return
	}
	if err := applyStatus(ctx, r.s, AddressFieldManager, map[string]any{"address": addr}); err != nil {
		r.s.log.Warn("cannot write the inherited address into the Connector status; will retry", "error", err)
		return
	}
	r.lastAddress, r.lastWrite[keyAddress] = addr, now
}

// reportAccount writes an Account's connected flag and balance when they changed. The first
// comparison is with what the cache holds, so that a restarted pod or a new Lease holder does
// not rewrite every Account. It reports whether it wrote (or tried to).
func (r *reporter) reportAccount(ctx context.Context, rt Runtime, id string, now time.Time) bool {
	b, err := rt.Balance(ctx, id)
	if err != nil {
		return false // the store is away; try at the next tick
	}
	want := accountStatus{connected: rt.Connected(id), balance: strconv.FormatInt(b, 10)}
	have, ok := r.written[id]
	if !ok {
		var a ilpv1.Account
		if err := r.s.cl.Get(ctx, client.ObjectKey{Namespace: r.s.opts.Namespace, Name: id}, &a); err != nil {
			return false
		}
		have = accountStatus{connected: a.Status.Connected, balance: a.Status.Balance}
		r.written[id] = have
	}
	if have == want || !r.due(id, now) {
		return false
	}
	patch := fmt.Appendf(nil, `{"status":{"connected":%t,"balance":%q}}`, want.connected, want.balance)
	obj := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Name: id, Namespace: r.s.opts.Namespace}}
	// A merge patch of these two fields only: the operator's Account controller owns the
	// conditions and its merge patches never carry these fields.
	if err := r.s.cl.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			delete(r.written, id)
		}
		return true
	}
	r.written[id], r.lastWrite[id] = want, now
	return true
}
