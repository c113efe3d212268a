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

// Reasons of the ConfigApplied condition: on the Connector, all but reasonLeftOut; on an
// Account, only reasonLeftOut (False) and reasonApplied (True, written only over a False).
const (
	reasonApplied     = "Applied"
	reasonPartial     = "ObjectsLeftOut"
	reasonInvalid     = "InvalidConfig"
	reasonApplyFailed = "ApplyFailed"
	reasonLeftOut     = "LeftOut"
)

// maxAccountWrites bounds the Account status writes of one flush (a quarter of ReportInterval),
// so that a pod that starts with 10,000 Accounts, or a new Lease holder, spreads its first
// report over the following ticks instead of flooding the API server. The Connector's
// ConfigApplied is written first, so it never waits behind them, then the Accounts'
// ConfigApplied, then their connected flags and balances.
const maxAccountWrites = 50

// maxMessage bounds a condition message: a list of 10,000 bad Accounts must not make the
// status write fail (the API allows 32 KiB) nor bury the first problems.
const maxMessage = 2048

// reporter writes what the pod knows back to the API: the Connector's ConfigApplied condition
// and inherited address, each Account's status.connected and status.balance, and the
// ConfigApplied condition of the Accounts the config leaves out. Only the pod holding the Lease
// (LeaseName) writes, so that replicas do not fight; it writes an object only when its value
// changed, and at most once per ReportInterval per object.
type reporter struct {
	s *Source

	mu       sync.Mutex
	cond     *metav1.Condition // ConfigApplied wanted; nil before the first sync
	accounts []string          // ids in the running config
	inherit  bool              // the running config inherits its address
	acct     accountConditions // of the config in force
	wake     chan struct{}

	// Owned by the Start goroutine.
	lastCond    *metav1.Condition
	lastAddress string
	// lastWrite is by object: "" is the Connector's ConfigApplied, keyAddress its address,
	// an Account name its connected flag and balance, keyCondition+name its ConfigApplied.
	lastWrite map[string]time.Time
	written   map[string]accountStatus
	// acctHave is the ConfigApplied of the Accounts that are or were candidates for a write
	// (left out, or carrying a False), as this reporter wrote it or first read it from the
	// cache. Healthy Accounts never enter it.
	acctHave map[string]haveCondition
}

// haveCondition is an Account's ConfigApplied (nil: none) on the Account of that uid: an
// Account deleted and created again under its name starts afresh.
type haveCondition struct {
	uid  types.UID
	cond *metav1.Condition
}

// Keys of reporter.lastWrite that are not Account names (a name has no slash).
const (
	keyAddress   = "/address"
	keyCondition = "/condition/"
)

// accountConditions is what the config in force means for the Accounts' ConfigApplied.
type accountConditions struct {
	leftOut map[string]metav1.Condition // the condition (False) of each Account left out
	inForce map[string]int64            // the generation of each Account in force, as built
	uids    map[string]types.UID        // of the Accounts of both
	// carryFalse are Accounts in force whose ConfigApplied, as the sync read them, is False:
	// they get a True.
	carryFalse []string
}

type accountStatus struct {
	connected bool
	balance   string
}

func newReporter(s *Source) *reporter {
	return &reporter{s: s, wake: make(chan struct{}, 1), lastWrite: map[string]time.Time{}, written: map[string]accountStatus{},
		acctHave: map[string]haveCondition{}}
}

// NeedLeaderElection makes only the Lease holder report.
func (r *reporter) NeedLeaderElection() bool { return true }

// setConfig records the outcome of a sync as the ConfigApplied condition to write. cfg is the
// config built (nil: none); when err is nil it is in force, and accounts (the namespace's, as
// the sync read them) and problems decide the Accounts' ConfigApplied. pending are the store
// settings the running connector keeps until the operator replaces this pod (keepStore).
func (r *reporter) setConfig(conn *ilpv1.Connector, cfg *config.Config, accounts []ilpv1.Account, problems []Problem, reason string, err error, pending []string) {
	c := &metav1.Condition{Type: ilpv1.ConditionConfigApplied, ObservedGeneration: conn.Generation, Reason: reason}
	pod := r.s.opts.Pod
	if pod == "" {
		pod = "the connector"
	}
	switch {
	case err != nil && r.s.Runtime() == nil:
		// Nothing runs: there is no previous configuration to keep.
		c.Status = metav1.ConditionFalse
		c.Message = fmt.Sprintf("%s has not started: %v", pod, err)
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
	if err == nil && len(pending) > 0 {
		// Not a failure: the operator rolls the pods for a store change, and this one keeps
		// serving with its store until its replacement runs.
		c.Message += fmt.Sprintf("; it keeps its store until the operator replaces it with a pod that opens the new one (%s changed)",
			strings.Join(pending, ", "))
	}
	c.Message = truncate(c.Message)
	if r.s.pods != nil {
		r.s.pods.set(c)
	}
	var ac *accountConditions
	if cfg != nil && err == nil {
		// A refused config leaves the previous one, and what it meant for the Accounts, in force.
		a := accountConditionsOf(conn.Name, cfg, accounts, problems)
		ac = &a
	}
	r.mu.Lock()
	r.cond = c
	if ac != nil { // the accounts whose status to report are those of the config in force
		r.accounts = sortedIDs(cfg)
		r.inherit = cfg.ILPAddressInheritFrom != ""
		r.acct = *ac
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// accountConditionsOf maps a config in force to the Accounts' ConfigApplied: False for each
// Account of the Connector left out, with its problems; True only for an Account in force that
// carries a False, so that healthy Accounts are never written (absent means no problem).
func accountConditionsOf(connector string, cfg *config.Config, accounts []ilpv1.Account, problems []Problem) accountConditions {
	msgs := map[string][]string{}
	for _, p := range problems {
		if p.Kind == "Account" {
			msgs[p.Name] = append(msgs[p.Name], p.Message)
		}
	}
	ac := accountConditions{leftOut: map[string]metav1.Condition{}, inForce: make(map[string]int64, len(cfg.Accounts)),
		uids: make(map[string]types.UID, len(cfg.Accounts))}
	for i := range accounts {
		a := &accounts[i]
		if a.Spec.ConnectorRef != connector || !a.DeletionTimestamp.IsZero() {
			continue
		}
		ac.uids[a.Name] = a.UID
		if _, ok := cfg.Accounts[a.Name]; ok {
			// In force, even with a problem: a Secret that cannot be read for a passing
			// reason keeps the Account's running settings (Build).
			ac.inForce[a.Name] = a.Generation
			if c := meta.FindStatusCondition(a.Status.Conditions, ilpv1.ConditionConfigApplied); c != nil && c.Status == metav1.ConditionFalse {
				ac.carryFalse = append(ac.carryFalse, a.Name)
			}
			continue
		}
		if m, ok := msgs[a.Name]; ok {
			ac.leftOut[a.Name] = metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: reasonLeftOut,
				ObservedGeneration: a.Generation, Message: truncate("the connector pods leave this account out of their configuration: " + strings.Join(m, "; "))}
		}
	}
	return ac
}

// appliedCondition is the ConfigApplied written over a False once the Account is in force.
func appliedCondition(generation int64) metav1.Condition {
	return metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionTrue, Reason: reasonApplied,
		ObservedGeneration: generation, Message: "the connector pods run this account"}
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
	budget := r.reportAccountConditions(ctx, now, maxAccountWrites)
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
		stampTransition(cond, have, metav1.Now())
		return false
	}
	return true
}

// stampTransition sets the LastTransitionTime of cond, about to replace have (nil: none):
// have's while the status stays, as meta.SetStatusCondition does, else now.
func stampTransition(cond, have *metav1.Condition, now metav1.Time) {
	cond.LastTransitionTime = now
	if have != nil && have.Status == cond.Status {
		cond.LastTransitionTime = have.LastTransitionTime
	}
}

// writeCondition server-side-applies ConfigApplied alone under FieldManager: conditions are a
// map list keyed by type, so the operator's conditions are left alone, and the operator's own
// optimistically locked merge patches carry this one over unchanged.
func (r *reporter) writeCondition(ctx context.Context, cond *metav1.Condition) error {
	return applyStatus(ctx, r.s, FieldManager, map[string]any{"conditions": []metav1.Condition{*cond}})
}

// applyStatus server-side-applies status fields of this pod's Connector under manager.
func applyStatus(ctx context.Context, s *Source, manager string, status map[string]any) error {
	obj := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Name: s.opts.Connector, Namespace: s.opts.Namespace}}
	return applyStatusOf(ctx, s, obj, "Connector", manager, status)
}

// applyStatusOf server-side-applies status fields of obj (named, in this pod's namespace), of
// the given kind, under manager.
func applyStatusOf(ctx context.Context, s *Source, obj client.Object, kind, manager string, status map[string]any) error {
	body := map[string]any{
		"apiVersion": ilpv1.GroupVersion.String(),
		"kind":       kind,
		"metadata":   map[string]any{"name": obj.GetName(), "namespace": obj.GetNamespace()},
		"status":     status,
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
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

// reportAccountConditions writes the ConfigApplied condition of the Accounts that need one: a
// False on each Account left out, a True over a False on an Account now in force; at most
// budget writes, and returns what is left of it. Each is compared first with what this
// reporter wrote, else with what the cache holds, so that a restarted pod or a new Lease
// holder rewrites nothing that is already there.
func (r *reporter) reportAccountConditions(ctx context.Context, now time.Time, budget int) int {
	r.mu.Lock()
	ac := r.acct
	r.mu.Unlock()
	for _, name := range r.conditionCandidates(ac) {
		if ctx.Err() != nil || budget == 0 {
			return budget
		}
		want, ok := ac.leftOut[name]
		if !ok {
			want = appliedCondition(ac.inForce[name])
		}
		h, known := r.acctHave[name]
		if !known || h.uid != ac.uids[name] {
			if h, ok = r.cachedCondition(ctx, name, ac.uids[name]); !ok {
				continue
			}
			r.acctHave[name] = h
		}
		have := h.cond
		if !conditionNeeded(have, &want) || !r.due(keyCondition+name, now) {
			continue
		}
		budget--
		stampTransition(&want, have, metav1.NewTime(now))
		r.lastWrite[keyCondition+name] = now // also after a failure: retry at the pace of the rate limit
		if err := r.writeAccountCondition(ctx, name, want); err != nil {
			if apierrors.IsNotFound(err) {
				delete(r.acctHave, name)
			}
			r.s.log.Warn("cannot write the ConfigApplied condition of an Account; will retry", "account", name, "error", err)
			continue
		}
		r.acctHave[name] = haveCondition{h.uid, &want}
	}
	return budget
}

// conditionCandidates are the Accounts whose ConfigApplied may need a write, sorted: those left
// out, and those in force that carry a False (as the sync read them, or as this reporter wrote
// it). It forgets the Accounts that are neither left out nor in force any more.
func (r *reporter) conditionCandidates(ac accountConditions) []string {
	set := make(map[string]bool, len(ac.leftOut)+len(ac.carryFalse))
	for name := range ac.leftOut {
		set[name] = true
	}
	for _, name := range ac.carryFalse {
		set[name] = true
	}
	for name, have := range r.acctHave {
		_, out := ac.leftOut[name]
		_, in := ac.inForce[name]
		switch {
		case !out && !in:
			delete(r.acctHave, name)
			delete(r.lastWrite, keyCondition+name)
		case in && have.cond != nil && have.cond.Status == metav1.ConditionFalse:
			set[name] = true
		}
	}
	names := make([]string, 0, len(set))
	for name := range set {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// conditionNeeded reports whether want must be written over have: a False that differs from
// what the Account carries, or a True over a False.
func conditionNeeded(have, want *metav1.Condition) bool {
	if want.Status == metav1.ConditionTrue {
		return have != nil && have.Status == metav1.ConditionFalse
	}
	return !sameCondition(have, want)
}

// cachedCondition returns the Account's ConfigApplied as the cache holds it, and false when the
// cache does not hold the Account of that uid (yet, or any more).
func (r *reporter) cachedCondition(ctx context.Context, name string, uid types.UID) (haveCondition, bool) {
	var a ilpv1.Account
	if err := r.s.cl.Get(ctx, client.ObjectKey{Namespace: r.s.opts.Namespace, Name: name}, &a); err != nil || a.UID != uid {
		return haveCondition{}, false
	}
	h := haveCondition{uid: uid}
	if c := meta.FindStatusCondition(a.Status.Conditions, ilpv1.ConditionConfigApplied); c != nil {
		cp := *c
		h.cond = &cp
	}
	return h, true
}

// writeAccountCondition server-side-applies an Account's ConfigApplied alone under
// FieldManager: the operator's conditions (Ready, ReferencesResolved) stay its own, and its
// optimistically locked merge patches carry this one over unchanged.
func (r *reporter) writeAccountCondition(ctx context.Context, name string, c metav1.Condition) error {
	obj := &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.s.opts.Namespace}}
	return applyStatusOf(ctx, r.s, obj, "Account", FieldManager, map[string]any{"conditions": []metav1.Condition{c}})
}
