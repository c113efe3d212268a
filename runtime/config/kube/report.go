package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
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
	"github.com/ilpfleet/ilpfleet/internal/textcut"
	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// Reasons of the ConfigApplied condition on the Connector.
const (
	reasonApplied     = "Applied"
	reasonPartial     = "ObjectsLeftOut"
	reasonNotFully    = "ObjectsNotFullyApplied" // none left out, but some Account runs with a problem
	reasonInvalid     = "InvalidConfig"
	reasonApplyFailed = "ApplyFailed"
)

// Reasons of the ConfigApplied condition the pods write on an Account or a Route, which the
// operator's Ready follows: False while the pods leave the object out, or (an Account only)
// keep it in their configuration with a problem; True (reasonApplied) over a False, or over a
// True about an older generation, once they run the object's current generation in full.
const (
	// ReasonLeftOut: the pods run without the object.
	ReasonLeftOut = "LeftOut"
	// ReasonNotFullyApplied: the pods run the Account, but not as its current generation
	// says: its previous version (its Secret cannot be read now), or without settlement
	// (its SettlementEngine settles another asset). The message says which.
	ReasonNotFullyApplied = "NotFullyApplied"
)

// maxAccountWrites bounds the Account and Route status writes of one flush (a quarter of
// ReportInterval), so that a pod that starts with 10,000 Accounts, or a new Lease holder,
// spreads its first report over the following ticks instead of flooding the API server. The
// Connector's ConfigApplied is written first, so it never waits behind them, then the
// Accounts' and Routes' ConfigApplied, then the Accounts' connected flags and balances.
const maxAccountWrites = 50

// maxMessage bounds a condition message: a list of 10,000 bad Accounts must not make the
// status write fail (the API allows 32 KiB) nor bury the first problems.
const maxMessage = 2048

// Kinds whose objects carry a ConfigApplied the pods write.
const (
	kindAccount = "Account"
	kindRoute   = "Route"
)

// reporter writes what the pod knows back to the API: the Connector's ConfigApplied condition
// and inherited address, each Account's status.connected and status.balance, and the
// ConfigApplied condition of the Accounts and Routes that need one (objectConditions). Only the
// pod holding the Lease (LeaseName) writes, so that replicas do not fight; it writes an object
// only when its value changed, and at most once per ReportInterval per object.
type reporter struct {
	s *Source

	mu       sync.Mutex
	cond     *metav1.Condition // ConfigApplied wanted; nil before the first sync
	accounts []string          // ids in the running config
	inherit  bool              // the running config inherits its address
	objs     configConditions  // of the config in force
	wake     chan struct{}

	// Owned by the Start goroutine.
	lastCond    *metav1.Condition
	lastAddress string
	// lastWrite is by object: "" is the Connector's ConfigApplied, keyAddress its address,
	// an Account name its connected flag and balance, keyCondition+kind+"/"+name the
	// ConfigApplied of that Account or Route.
	lastWrite map[string]time.Time
	written   map[string]accountStatus
	// have is the ConfigApplied of the Accounts and Routes that are or were candidates for a
	// write (a False wanted, or carrying a ConfigApplied that is not current), as this
	// reporter wrote it or first read it from the cache. Objects the pods never left out
	// never enter it.
	have map[objectKey]haveCondition
	// writeFailures lets a WARN about a status write that failed through once per
	// repeatLogEvery for each object: a write refused until the operator is back (a new
	// Account's status not yet in the pods' Role) is retried every report interval.
	writeFailures warnlimit.Limiter
}

// objectKey names an Account or a Route.
type objectKey struct{ kind, name string }

// haveCondition is an object's ConfigApplied (nil: none) on the object of that uid: an object
// deleted and created again under its name starts afresh.
type haveCondition struct {
	uid  types.UID
	cond *metav1.Condition
}

// Keys of reporter.lastWrite that are not Account names (a name has no slash).
const (
	keyAddress   = "/address"
	keyCondition = "/condition/"
)

// configConditions is what the config in force means for the ConfigApplied of the Accounts
// and of the Routes.
type configConditions struct{ accounts, routes objectConditions }

func (c *configConditions) of(kind string) *objectConditions {
	if kind == kindRoute {
		return &c.routes
	}
	return &c.accounts
}

// objectConditions is what the config in force means for the ConfigApplied of the objects of
// one kind (of this Connector, not being deleted).
type objectConditions struct {
	falses  map[string]metav1.Condition // the condition (False) of each object left out or not fully applied
	inForce map[string]int64            // the generation of each object run in full, as built
	uids    map[string]types.UID        // of the objects of both
	// stale are objects in force whose ConfigApplied, as the sync read them, is not current:
	// a False, or a True about an older generation. They get a True at the generation built.
	stale []string
}

type accountStatus struct {
	connected bool
	balance   string
}

func newReporter(s *Source) *reporter {
	return &reporter{s: s, wake: make(chan struct{}, 1), lastWrite: map[string]time.Time{}, written: map[string]accountStatus{},
		have: map[objectKey]haveCondition{}, writeFailures: warnlimit.Limiter{Every: repeatLogEvery}}
}

// NeedLeaderElection makes only the Lease holder report.
func (r *reporter) NeedLeaderElection() bool { return true }

// setConfig records the outcome of a sync as the ConfigApplied condition to write. cfg is the
// config built (nil: none); when err is nil it is in force, and accounts and routes (the
// namespace's, as the sync read them) and problems decide the Accounts' and Routes'
// ConfigApplied. pending are the store settings the running connector keeps until the
// operator replaces this pod (keepStore).
func (r *reporter) setConfig(conn *ilpv1.Connector, cfg *config.Config, accounts []ilpv1.Account, routes []ilpv1.Route, problems []Problem,
	reason string, err error, pending []string) {
	c := connectorCondition(conn, cfg, problems, reason, err, pending, r.s.opts.Pod, r.s.Runtime() != nil)
	if r.s.pods != nil {
		r.s.pods.set(c)
	}
	var objs *configConditions
	if cfg != nil && err == nil {
		// A refused config leaves the previous one, and what it meant for the objects, in force.
		objs = &configConditions{accountConditionsOf(conn.Name, cfg, accounts, problems), routeConditionsOf(conn.Name, routes, problems)}
	}
	r.mu.Lock()
	r.cond = c
	if objs != nil { // the accounts whose status to report are those of the config in force
		r.accounts = sortedIDs(cfg)
		r.inherit = cfg.ILPAddressInheritFrom != ""
		r.objs = *objs
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// connectorCondition is the Connector's ConfigApplied for the outcome of a sync (see
// setConfig); running tells whether a runtime runs (a previous configuration to keep).
func connectorCondition(conn *ilpv1.Connector, cfg *config.Config, problems []Problem, reason string, err error, pending []string,
	pod string, running bool) *metav1.Condition {
	c := &metav1.Condition{Type: ilpv1.ConditionConfigApplied, ObservedGeneration: conn.Generation, Reason: reason}
	if pod == "" {
		pod = "the connector"
	}
	switch {
	case err != nil && !running:
		// Nothing runs: there is no previous configuration to keep.
		c.Status = metav1.ConditionFalse
		c.Message = fmt.Sprintf("%s has not started: %v", pod, err)
	case err != nil:
		c.Status = metav1.ConditionFalse
		c.Message = fmt.Sprintf("%s keeps its previous configuration: %v", pod, err)
	case len(problems) > 0:
		out, partly := splitProblems(cfg, problems)
		c.Status, c.Reason = metav1.ConditionFalse, reasonPartial
		c.Message = fmt.Sprintf("%s runs generation %d with %d accounts", pod, conn.Generation, len(cfg.Accounts)) // runSummary
		if len(out) > 0 {
			c.Message += "; left out: " + problemList(out)
		} else {
			c.Reason = reasonNotFully
		}
		if len(partly) > 0 {
			c.Message += "; not fully applied: " + problemList(partly)
		}
	default:
		c.Status = metav1.ConditionTrue
		c.Message = fmt.Sprintf("%s runs generation %d with %d accounts and %d routes", pod, conn.Generation, len(cfg.Accounts), len(cfg.Routes)) // runSummary
	}
	if err == nil && len(pending) > 0 {
		// Not a failure: the operator rolls the pods for a store change, and this one keeps
		// serving with its store until its replacement runs.
		c.Message += fmt.Sprintf("; it keeps its store until the operator replaces it with a pod that opens the new one (%s changed)",
			strings.Join(pending, ", "))
	}
	c.Message = truncate(c.Message)
	return c
}

// splitProblems sorts problems into those of objects left out of cfg and those of Accounts
// that cfg holds all the same (Build: their previous version kept, or run without settlement).
func splitProblems(cfg *config.Config, problems []Problem) (out, partly []Problem) {
	for _, p := range problems {
		if keptWithProblem(cfg, p) {
			partly = append(partly, p)
		} else {
			out = append(out, p)
		}
	}
	return out, partly
}

// keptWithProblem reports whether p is about an Account that cfg (nil: none built) holds all
// the same: its previous version, or without settlement.
func keptWithProblem(cfg *config.Config, p Problem) bool {
	if cfg == nil || p.Kind != kindAccount {
		return false
	}
	_, ok := cfg.Accounts[p.Name]
	return ok
}

// problemsByName joins the messages of the problems of one kind by object name.
func problemsByName(kind string, problems []Problem) map[string][]string {
	msgs := map[string][]string{}
	for _, p := range problems {
		if p.Kind == kind {
			msgs[p.Name] = append(msgs[p.Name], p.Message)
		}
	}
	return msgs
}

func newObjectConditions(n int) objectConditions {
	return objectConditions{falses: map[string]metav1.Condition{}, inForce: make(map[string]int64, n), uids: make(map[string]types.UID, n)}
}

// add records one object of the Connector: with msgs, a False of reason (the messages after
// prefix); without, in force at its generation, and stale when its ConfigApplied (have) is.
func (oc *objectConditions) add(name string, uid types.UID, gen int64, have []metav1.Condition, reason, prefix string, msgs []string) {
	oc.uids[name] = uid
	if len(msgs) > 0 {
		oc.falses[name] = metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: reason,
			ObservedGeneration: gen, Message: truncate(prefix + strings.Join(msgs, "; "))}
		return
	}
	oc.inForce[name] = gen
	if c := meta.FindStatusCondition(have, ilpv1.ConditionConfigApplied); c != nil && !current(c, gen) {
		oc.stale = append(oc.stale, name)
	}
}

// current reports whether a ConfigApplied needs no True written over it for an object in force
// at generation gen: a True at gen (or later: the sync read an older copy).
func current(c *metav1.Condition, gen int64) bool {
	return c.Status == metav1.ConditionTrue && c.ObservedGeneration >= gen
}

// accountConditionsOf maps a config in force to the Accounts' ConfigApplied: False for each
// Account of the Connector left out (LeftOut) or held with a problem (NotFullyApplied), with
// its problems; True only for an Account in force whose ConfigApplied is a False or about an
// older generation, so that healthy Accounts are never written (absent means no problem) and
// one whose generation did not move is not written again.
func accountConditionsOf(connector string, cfg *config.Config, accounts []ilpv1.Account, problems []Problem) objectConditions {
	msgs := problemsByName(kindAccount, problems)
	oc := newObjectConditions(len(cfg.Accounts))
	for i := range accounts {
		a := &accounts[i]
		if a.Spec.ConnectorRef != connector || !a.DeletionTimestamp.IsZero() {
			continue
		}
		reason, prefix := ReasonLeftOut, "the connector pods leave this account out of their configuration: "
		if _, ok := cfg.Accounts[a.Name]; ok {
			// In force with a problem: its previous version kept, or run without settlement.
			reason, prefix = ReasonNotFullyApplied, "the connector pods run this account, but not as its current generation says: "
		}
		oc.add(a.Name, a.UID, a.Generation, a.Status.Conditions, reason, prefix, msgs[a.Name])
	}
	return oc
}

// routeConditionsOf maps a config in force to the Routes' ConfigApplied, as accountConditionsOf
// does for Accounts: Build leaves out every Route it has a problem with (its next hop not a
// configured account, its prefix an older Route's, a value the runtime refuses) and runs the
// others.
func routeConditionsOf(connector string, routes []ilpv1.Route, problems []Problem) objectConditions {
	msgs := problemsByName(kindRoute, problems)
	oc := newObjectConditions(len(routes))
	for i := range routes {
		rt := &routes[i]
		if rt.Spec.ConnectorRef != connector || !rt.DeletionTimestamp.IsZero() {
			continue
		}
		oc.add(rt.Name, rt.UID, rt.Generation, rt.Status.Conditions, ReasonLeftOut,
			"the connector pods leave this route out of their configuration: ", msgs[rt.Name])
	}
	return oc
}

// appliedCondition is the ConfigApplied written over a False, or over a True about an older
// generation, once the object's generation is in force in full.
func appliedCondition(kind string, generation int64) metav1.Condition {
	return metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionTrue, Reason: reasonApplied,
		ObservedGeneration: generation, Message: "the connector pods run this " + strings.ToLower(kind)}
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
	return textcut.Prefix(s, maxMessage) + "… (truncated)"
}

// runSummary matches the start of connectorCondition's message when the config is in force:
// which pod runs which generation with how many objects.
var runSummary = regexp.MustCompile(`^.*? runs generation \d+ with \d+ accounts( and \d+ routes)?`)

// FailureKey is a ConfigApplied message of the pods without what changes with every generation,
// Account added or pod replaced (runSummary): the operator reports a failure once per key, so
// that a lasting one is not repeated at every change of the Connector.
func FailureKey(msg string) string { return runSummary.ReplaceAllString(msg, "") }

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
			r.warnWrite(now, "Connector", r.s.opts.Connector, err)
		} else {
			r.lastCond, r.lastWrite[""] = cond, now
		}
	}
	budget := r.reportObjectConditions(ctx, now, maxAccountWrites)
	rt := r.s.Runtime()
	if rt == nil {
		return
	}
	if inherit {
		r.reportAddress(ctx, string(rt.Address()), now)
	} else {
		r.lastAddress = "" // the operator writes the configured one over it: report again if inherited again
	}
	r.prune(ids) // by set, not size: an Account left out while another is added must be forgotten
	for _, id := range ids {
		if ctx.Err() != nil || budget == 0 {
			return
		}
		if r.reportAccount(ctx, rt, id, now) {
			budget--
		}
	}
}

// prune forgets the accounts no longer configured, so that one configured again is written
// again (the operator may have cleared its connected meanwhile).
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
	// conditions, and clears connected only when no pod runs the Account — which this
	// reporter has then forgotten (prune), so it writes the value again when it runs it.
	if err := r.s.cl.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			delete(r.written, id)
		}
		return true
	}
	r.written[id], r.lastWrite[id] = want, now
	return true
}

// reportObjectConditions writes the ConfigApplied condition of the Accounts and Routes that
// need one: a False on each object left out or not fully applied, a True over a False, or over
// a True about an older generation, on an object now in force; at most budget writes, and
// returns what is left of it. Each is compared first with what this reporter wrote, else with
// what the cache holds, so that a restarted pod or a new Lease holder rewrites nothing that is
// already there.
func (r *reporter) reportObjectConditions(ctx context.Context, now time.Time, budget int) int {
	r.mu.Lock()
	objs := r.objs
	r.mu.Unlock()
	for _, k := range r.conditionCandidates(&objs) {
		if ctx.Err() != nil || budget == 0 {
			return budget
		}
		oc := objs.of(k.kind)
		want, ok := oc.falses[k.name]
		if !ok {
			want = appliedCondition(k.kind, oc.inForce[k.name])
		}
		h, known := r.have[k]
		if !known || h.uid != oc.uids[k.name] {
			if h, ok = r.cachedCondition(ctx, k, oc.uids[k.name]); !ok {
				continue
			}
			r.have[k] = h
		}
		have := h.cond
		key := keyCondition + k.kind + "/" + k.name
		if !conditionNeeded(have, &want) || !r.due(key, now) {
			continue
		}
		budget--
		stampTransition(&want, have, metav1.NewTime(now))
		r.lastWrite[key] = now // also after a failure: retry at the pace of the rate limit
		if err := r.writeObjectCondition(ctx, k, want); err != nil {
			if apierrors.IsNotFound(err) {
				delete(r.have, k)
			}
			r.warnWrite(now, k.kind, k.name, err)
			continue
		}
		r.writeFailures.Forget(k.kind + "/" + k.name) // a later failure is news
		r.have[k] = haveCondition{h.uid, &want}
	}
	return budget
}

// warnWrite logs that the ConfigApplied of an object could not be written: at WARN once per
// repeatLogEvery for the object, with the count held back, at DEBUG otherwise.
func (r *reporter) warnWrite(now time.Time, kind, name string, err error) {
	level, n := slog.LevelDebug, 0
	if ok, held := r.writeFailures.Allow(kind+"/"+name, now); ok {
		level, n = slog.LevelWarn, held
	}
	r.s.log.Log(context.Background(), level, "cannot write a ConfigApplied condition; will retry (logged again every "+repeatLogEvery.String()+" while it fails)",
		"kind", kind, "name", name, "error", err, "suppressed", n)
}

// conditionCandidates are the Accounts and Routes whose ConfigApplied may need a write, sorted
// (Accounts first): those with a False wanted, and those in force whose ConfigApplied is not
// current (as the sync read them, or as this reporter wrote it). It forgets the objects that
// are neither any more.
func (r *reporter) conditionCandidates(objs *configConditions) []objectKey {
	var keys []objectKey
	for _, kind := range []string{kindAccount, kindRoute} {
		oc := objs.of(kind)
		set := make(map[string]bool, len(oc.falses)+len(oc.stale))
		for name := range oc.falses {
			set[name] = true
		}
		for _, name := range oc.stale {
			set[name] = true
		}
		for k, have := range r.have {
			if k.kind != kind {
				continue
			}
			_, out := oc.falses[k.name]
			gen, in := oc.inForce[k.name]
			switch {
			case !out && !in:
				delete(r.have, k)
				delete(r.lastWrite, keyCondition+k.kind+"/"+k.name)
				r.writeFailures.Forget(k.kind + "/" + k.name)
			case in && have.cond != nil && !current(have.cond, gen):
				set[k.name] = true
			}
		}
		names := make([]string, 0, len(set))
		for name := range set {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			keys = append(keys, objectKey{kind, name})
		}
	}
	return keys
}

// conditionNeeded reports whether want must be written over have: a False that differs from
// what the object carries, or a True over a False or over a True about an older generation.
func conditionNeeded(have, want *metav1.Condition) bool {
	if want.Status == metav1.ConditionTrue {
		return have != nil && !current(have, want.ObservedGeneration)
	}
	return !sameCondition(have, want)
}

// newObject is an empty Account or Route named k, in ns.
func newObject(k objectKey, ns string) client.Object {
	om := metav1.ObjectMeta{Name: k.name, Namespace: ns}
	if k.kind == kindRoute {
		return &ilpv1.Route{ObjectMeta: om}
	}
	return &ilpv1.Account{ObjectMeta: om}
}

// cachedCondition returns the object's ConfigApplied as the cache holds it, and false when the
// cache does not hold the object of that uid (yet, or any more).
func (r *reporter) cachedCondition(ctx context.Context, k objectKey, uid types.UID) (haveCondition, bool) {
	obj := newObject(k, r.s.opts.Namespace)
	if err := r.s.cl.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil || obj.GetUID() != uid {
		return haveCondition{}, false
	}
	var conds []metav1.Condition
	switch o := obj.(type) {
	case *ilpv1.Account:
		conds = o.Status.Conditions
	case *ilpv1.Route:
		conds = o.Status.Conditions
	}
	h := haveCondition{uid: uid}
	if c := meta.FindStatusCondition(conds, ilpv1.ConditionConfigApplied); c != nil {
		cp := *c
		h.cond = &cp
	}
	return h, true
}

// writeObjectCondition server-side-applies an Account's or Route's ConfigApplied alone under
// FieldManager: the operator's conditions (Ready, ReferencesResolved) stay its own, and its
// optimistically locked merge patches carry this one over unchanged.
func (r *reporter) writeObjectCondition(ctx context.Context, k objectKey, c metav1.Condition) error {
	return applyStatusOf(ctx, r.s, newObject(k, r.s.opts.Namespace), k.kind, FieldManager, map[string]any{"conditions": []metav1.Condition{c}})
}
