package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
)

// AccountReconciler checks an Account's references — its Connector, the Secret keys of its
// link and its SettlementEngine — and whether its link works with the Connector's replicas
// (ReplicasSupported: a link whose state one pod holds, e.g. a BTP connection), and reports them in
// conditions and Events. A problem never stops the connector: the runtime skips an account it
// cannot configure, and says so in the Account's ConfigApplied condition (written by the
// connector pods), which Ready follows. It clears the connected flag the pods write once no
// pod can be running the Account (notRunning); it never writes the pods' fields otherwise,
// ConfigApplied least of all: the pods are its only writer, and move its True forward as they
// apply new generations of the Account. Ready is about the
// Account's configuration, not about its link: a counterparty that cannot be reached shows in
// status.connected only, so that its outages and reconnects never flap Ready.
type AccountReconciler struct {
	client.Client
	// Reader reads Secrets uncached: the manager caches only their metadata.
	Reader   client.Reader
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=accounts,verbs=get;list;watch
// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=accounts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile resolves the Account's references and writes its status.
func (r *AccountReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var acct ilpv1.Account
	if err := r.Get(ctx, req.NamespacedName, &acct); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	orig := acct.DeepCopy()
	conn, problem, err := r.resolve(ctx, &acct)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := &acct.Status.BaseStatus
	var replicas *refProblem
	if conn != nil {
		replicas = replicasProblem(&acct, conn)
	}
	if problem == nil {
		setCondition(&acct, st, ilpv1.ConditionReferencesResolved, true, ReasonResolved, "Connector "+acct.Spec.ConnectorRef+" and every Secret and SettlementEngine the account names exist")
		switch c := podsProblem(&acct); {
		case c != nil && c.Reason == kube.ReasonNotFullyApplied:
			setCondition(&acct, st, ilpv1.ConditionReady, false, ReasonConfigNotFullyApplied, c.Message)
		case c != nil:
			setCondition(&acct, st, ilpv1.ConditionReady, false, ReasonConfigNotApplied, c.Message)
		case replicas != nil:
			setCondition(&acct, st, ilpv1.ConditionReady, false, replicas.reason, replicas.msg)
		case podsGone(conn):
			setCondition(&acct, st, ilpv1.ConditionReady, true, ReasonScaledToZero, fmt.Sprintf("Connector %q is scaled to zero replicas: "+
				"no pod runs the account until it has replicas again; the account is valid and its references resolve", conn.Name))
		default:
			setCondition(&acct, st, ilpv1.ConditionReady, true, ReasonResolved, "the account is valid and its references resolve")
		}
	} else {
		setCondition(&acct, st, ilpv1.ConditionReferencesResolved, false, problem.reason, problem.msg)
		setCondition(&acct, st, ilpv1.ConditionReady, false, problem.reason, problem.msg)
		if r.Recorder != nil && !equality.Semantic.DeepEqual(orig.Status.Conditions, acct.Status.Conditions) {
			r.Recorder.Eventf(&acct, nil, corev1.EventTypeWarning, problem.reason, "Resolve", "%s", problem.msg)
		}
	}
	setReplicasSupported(&acct, conn, replicas)
	if acct.Status.Connected && notRunning(&acct, conn) {
		acct.Status.Connected = false
	}
	if equality.Semantic.DeepEqual(orig.Status, acct.Status) {
		return ctrl.Result{}, nil
	}
	res, err := patchStatus(ctx, r.Client, &acct, orig)
	if err == nil && res.IsZero() {
		r.warnReplicas(orig, &acct, conn)
		r.tellResolved(orig, &acct)
	}
	return res, err
}

// notRunning reports whether no connector pod can be running the Account, so that the
// connected flag the pods wrote is stale and nobody else will correct it: the pods write it
// only for the accounts of their configuration, and only when it changes. That is so when the
// Connector does not exist (its pods go with it, and so does their Role), when it is scaled to
// zero and its workload has no pod left, and when the pods leave the current generation of the
// Account out (they run without it; one they run not as its current generation says,
// NotFullyApplied, they do run, and keep its flag current). The operator clears the flag then: the merge patch drops
// status.connected, so the Connected column is blank (not known), not a stale true. It never
// writes true, nor clears a flag a pod may still be keeping current, so the two writers do not
// fight; a pod that runs the Account again reads the cleared flag and writes the real one.
func notRunning(acct *ilpv1.Account, conn *ilpv1.Connector) bool {
	if conn == nil || podsGone(conn) {
		return true
	}
	c := podsProblem(acct)
	return c != nil && c.Reason != kube.ReasonNotFullyApplied
}

// podsGone reports whether the Connector is scaled to zero and its workload has no pod left
// (conn nil: false).
func podsGone(conn *ilpv1.Connector) bool {
	return conn != nil && replicasOf(conn) == 0 && conn.Status.Replicas == 0
}

// tellResolved records a Normal Event when the Account's references resolve after they did
// not, once its status write went through (a lost write retries and would tell it twice), so
// that `kubectl describe` ends the story its Warning Events (ConnectorNotFound, …) began.
func (r *AccountReconciler) tellResolved(orig, acct *ilpv1.Account) {
	if r.Recorder == nil {
		return
	}
	if was, ok := resolvedAgain(orig.Status.Conditions, acct.Status.Conditions); ok {
		r.Recorder.Eventf(acct, nil, corev1.EventTypeNormal, ReasonResolved, "Resolve",
			"every reference of the account resolves now: Connector %s and every Secret and SettlementEngine the account names exist; before: %s: %s",
			acct.Spec.ConnectorRef, was.Reason, was.Message)
	}
}

// resolvedAgain returns the ReferencesResolved of was when it was False and now is True.
func resolvedAgain(was, now []metav1.Condition) (*metav1.Condition, bool) {
	w := meta.FindStatusCondition(was, ilpv1.ConditionReferencesResolved)
	n := meta.FindStatusCondition(now, ilpv1.ConditionReferencesResolved)
	if w == nil || n == nil || w.Status != metav1.ConditionFalse || n.Status != metav1.ConditionTrue {
		return nil, false
	}
	return w, true
}

// warnReplicas tells the Connector, in a Warning Event about it (the Account as related
// object), that the Account's link does not work with its replicas: when the Account's
// ReplicasSupported turns False, or stays False with another reason or message (the Account's
// link or route exchange changed), once its status write went through — not on every
// reconcile, nor on a scale among replica counts above one, which the message does not name
// (replicasProblem).
func (r *AccountReconciler) warnReplicas(orig, acct *ilpv1.Account, conn *ilpv1.Connector) {
	c := conditionChanged(orig.Status.Conditions, acct.Status.Conditions, ilpv1.ConditionReplicasSupported)
	if r.Recorder == nil || conn == nil || c == nil || c.Status != metav1.ConditionFalse {
		return
	}
	r.Recorder.Eventf(conn, acct, corev1.EventTypeWarning, c.Reason, "CheckReplicas", "Account %s: %s", acct.Name, c.Message)
}

// ReasonConfigNotFullyApplied is Ready's reason while the connector pods run the Account, but
// not as its current generation says (their ConfigApplied False, kube.ReasonNotFullyApplied):
// its previous version, its Secret unreadable to them, or without settlement.
const ReasonConfigNotFullyApplied = "ConfigNotFullyApplied"

// podsProblem returns the pods' ConfigApplied condition when it says that they leave the
// current generation of the Account out of their configuration, or do not run it in full
// (its Reason tells which), else nil.
func podsProblem(acct *ilpv1.Account) *metav1.Condition {
	return podsFalse(acct, acct.Status.Conditions)
}

// podsFalse returns the ConfigApplied (written by the connector pods) of conds, the conditions
// of obj, when it is False at obj's current generation, else nil. One about an older
// generation is not trusted: the pods have not built the current one yet.
func podsFalse(obj client.Object, conds []metav1.Condition) *metav1.Condition {
	c := meta.FindStatusCondition(conds, ilpv1.ConditionConfigApplied)
	if c == nil || c.Status != metav1.ConditionFalse || c.ObservedGeneration != obj.GetGeneration() {
		return nil
	}
	return c
}

// resolve returns the Account's Connector (nil when it does not exist) and the first
// reference of the Account that does not resolve, or nil.
func (r *AccountReconciler) resolve(ctx context.Context, acct *ilpv1.Account) (*ilpv1.Connector, *refProblem, error) {
	var conn ilpv1.Connector
	if err := r.Get(ctx, client.ObjectKey{Namespace: acct.Namespace, Name: acct.Spec.ConnectorRef}, &conn); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return nil, nil, err
		}
		return nil, &refProblem{ReasonConnectorNotFound, fmt.Sprintf("Connector %q does not exist in namespace %s", acct.Spec.ConnectorRef, acct.Namespace)}, nil
	}
	p, err := r.resolveRefs(ctx, acct, &conn)
	return &conn, p, err
}

// resolveRefs returns the first reference of the Account besides its Connector that does not
// resolve, or nil.
func (r *AccountReconciler) resolveRefs(ctx context.Context, acct *ilpv1.Account, conn *ilpv1.Connector) (*refProblem, error) {
	if p, err := checkSecretRefs(ctx, r.Reader, acct.Namespace, accountSecretRefs(acct)); p != nil || err != nil {
		return p, err
	}
	name := acct.Spec.SettlementEngineRef
	if name == "" {
		return nil, nil
	}
	var eng ilpv1.SettlementEngine
	if err := r.Get(ctx, client.ObjectKey{Namespace: acct.Namespace, Name: name}, &eng); err != nil {
		if client.IgnoreNotFound(err) != nil {
			return nil, err
		}
		return &refProblem{ReasonEngineNotFound, fmt.Sprintf("SettlementEngine %q does not exist in namespace %s", name, acct.Namespace)}, nil
	}
	if why := eng.AssetMismatch(acct.Spec.AssetCode); why != "" {
		return &refProblem{ReasonEngineAssetMismatch, why}, nil
	}
	if l := conn.Spec.Listeners; l == nil || l.Settlement == nil {
		// The engine runs in its own pods: without the listener it cannot report incoming
		// settlements, and the peer's payments would never lower the balance.
		return &refProblem{ReasonNoSettlementListener, fmt.Sprintf("Connector %q has no spec.listeners.settlement, so SettlementEngine %q cannot reach it to report incoming settlements; "+
			"set spec.listeners.settlement on the Connector and point the engine at http://%s-admin:<that port>", conn.Name, name, conn.Name)}, nil
	}
	return nil, nil
}

// conditionChanged returns the condition typ of now when it is new or differs from was in its
// status, reason or message (not merely in observedGeneration), else nil.
func conditionChanged(was, now []metav1.Condition, typ string) *metav1.Condition {
	n := meta.FindStatusCondition(now, typ)
	w := meta.FindStatusCondition(was, typ)
	if n == nil || (w != nil && w.Status == n.Status && w.Reason == n.Reason && w.Message == n.Message) {
		return nil
	}
	return n
}

// accountReconcileChanges are the Account events the Account controller acts on: created,
// deleted, spec changed, or the pods' ConfigApplied changed. Not any other status write: the
// pods write connected and balance into status all the time, and the controller's own writes
// would each reconcile once more for nothing.
var accountReconcileChanges = predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool { return configAppliedChanged(e.ObjectOld, e.ObjectNew) },
})

// configAppliedChanged reports whether the ConfigApplied condition of two versions of an
// Account differs in anything Ready is made of.
func configAppliedChanged(o, n client.Object) bool {
	oa, ok1 := o.(*ilpv1.Account)
	na, ok2 := n.(*ilpv1.Account)
	if !ok1 || !ok2 {
		return true
	}
	a := meta.FindStatusCondition(oa.Status.Conditions, ilpv1.ConditionConfigApplied)
	b := meta.FindStatusCondition(na.Status.Conditions, ilpv1.ConditionConfigApplied)
	if a == nil || b == nil {
		return (a == nil) != (b == nil)
	}
	return a.Status != b.Status || a.Reason != b.Reason || a.Message != b.Message || a.ObservedGeneration != b.ObservedGeneration
}

// connectorChangesForAccounts are the Connector events that re-check its Accounts: created,
// deleted, spec changed, or its workload's last pod gone or a first one back while it is
// scaled to zero (podsGone: the Accounts' connected flag and Ready depend on it). Not its other
// status writes, which its pods and controller make often.
var connectorChangesForAccounts = predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*ilpv1.Connector)
		n, ok2 := e.ObjectNew.(*ilpv1.Connector)
		return !ok1 || !ok2 || podsGone(o) != podsGone(n)
	},
})

// SetupWithManager registers the controller.
func (r *AccountReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return r.controller(mgr).Complete(quietWhenNamespaceGoes(r))
}

// controller builds the controller: Account changes (accountReconcileChanges), and Connector
// (connectorChangesForAccounts: created, deleted, spec changed — replicas included, which
// ReplicasSupported depends on — or its last pod gone),
// Secret (metadata only) and SettlementEngine changes re-check the Accounts that name them.
func (r *AccountReconciler) controller(mgr ctrl.Manager) *builder.TypedBuilder[reconcile.Request] {
	c := mgr.GetClient()
	return ctrl.NewControllerManagedBy(mgr).
		For(&ilpv1.Account{}, builder.WithPredicates(accountReconcileChanges)).
		Watches(&ilpv1.Connector{}, handler.EnqueueRequestsFromMapFunc(referrers(c, &ilpv1.AccountList{})), builder.WithPredicates(connectorChangesForAccounts)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(byIndex(c, &ilpv1.AccountList{}, fieldSecretNames)), builder.OnlyMetadata).
		Watches(&ilpv1.SettlementEngine{}, handler.EnqueueRequestsFromMapFunc(byIndex(c, &ilpv1.AccountList{}, fieldSettlementEngineRef)))
}
