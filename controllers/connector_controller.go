package controllers

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
)

// Reasons of a Connector's Ready and Progressing conditions.
const (
	ReasonAvailable           = "Available"
	ReasonWorkloadUnavailable = "WorkloadUnavailable"
	ReasonScaledToZero        = "ScaledToZero"
	ReasonConfigNotApplied    = "ConfigNotApplied"
	ReasonReconcileError      = "ReconcileError"
	ReasonCreating            = "Creating"
	ReasonRolloutComplete     = "RolloutComplete"
	ReasonRollingOut          = "RollingOut"
)

// ConnectorReconciler runs each Connector as a workload of the ilpfleet runtime and reports on
// it. It owns, all named after the Connector: a ServiceAccount, Role and RoleBinding (<name>-connector)
// scoped to what the pods may read; a Deployment, or a StatefulSet with a volume for the file
// store (<name>); the peer Service (<name>, BTP and ILP-over-HTTP) and the admin Service
// (<name>-admin, settlement and admin/metrics); a PodDisruptionBudget when replicas > 1; a
// NetworkPolicy when spec.networkPolicy is set; and a ServiceMonitor when the
// prometheus-operator CRD is installed. Everything that can be
// hot-reloaded reaches the pods through their Kubernetes config source, so only image,
// resources, store, scheduling and listener changes roll them (see restartInputs).
type ConnectorReconciler struct {
	client.Client
	// Reader reads Secrets uncached: the manager caches only their metadata.
	Reader   client.Reader
	Recorder events.EventRecorder
	Options  Options

	// reported is, by Connector (namespace/name), the configuration failure last reported in
	// a Warning Event (configFailure.key): one Event per change, not one per reconcile. In
	// memory: a restarted operator reports a failure that persists once more.
	reported sync.Map
}

// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=connectors;accounts;routes;settlementengines,verbs=get;list;watch
// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=connectors/status;accounts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=connectors/finalizers;settlementengines/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="";events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=servicemonitors,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch

// Reconcile brings the Connector's owned objects to their desired state and writes its status.
func (r *ConnectorReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var conn ilpv1.Connector
	if err := r.Get(ctx, req.NamespacedName, &conn); err != nil {
		if apierrors.IsNotFound(err) {
			r.reported.Delete(req.String())
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !conn.DeletionTimestamp.IsZero() {
		r.reported.Delete(req.String())
		return ctrl.Result{}, nil // owner references let the garbage collector clean up
	}
	orig := conn.DeepCopy()
	var accounts ilpv1.AccountList
	if err := r.List(ctx, &accounts, client.InNamespace(conn.Namespace), client.MatchingFields{fieldConnectorRef: conn.Name}); err != nil {
		return ctrl.Result{}, err
	}
	conn.Status.Accounts = int32(len(accounts.Items))
	conn.Status.Selector = labels.SelectorFromSet(selectorLabels(&conn)).String()
	if conn.Spec.InheritAddressFrom == "" {
		// An inherited address is the pods' to report (kube.AddressFieldManager): only they
		// learn it, from the parent over IL-DCP.
		conn.Status.Address = conn.Spec.ILPAddress
	}
	secrets := usedSecretNames(&conn, accounts.Items)

	problem, err := r.resolve(ctx, &conn, accounts.Items)
	if err != nil {
		return ctrl.Result{}, err
	}
	wl, applyErr := r.applyOwned(ctx, &conn, accounts.Items, secrets, problem != nil)
	if wl != nil {
		// Once the workload is applied, whatever failed after it (a ServiceMonitor, a
		// NetworkPolicy): the versions are how the pods learn of a rotated Secret.
		if versions, err := secretVersions(ctx, r.Client, conn.Namespace, secrets); err != nil {
			applyErr = cmp.Or(applyErr, err)
		} else {
			conn.Status.SecretVersions = versions
		}
	}
	// Even when the apply failed: a failure the pods report is judged on the pods there are.
	if err := r.observePods(ctx, &conn, wl); err != nil && applyErr == nil {
		applyErr = err
	}
	failure := configFailure(&conn, failingPod(&conn))
	r.setConditions(&conn, problem, wl, applyErr, failure)
	r.emitEvents(orig, &conn, wl)
	r.reportFailure(req.String(), &conn, failure)
	if !equality.Semantic.DeepEqual(orig.Status, conn.Status) {
		if res, err := patchStatus(ctx, r.Client, &conn, orig); err != nil || !res.IsZero() {
			return res, err
		}
	}
	return ctrl.Result{}, applyErr
}

// resolve checks the Connector's own references: the parent to inherit the address from and
// the Secrets of its routing and store settings and of its spec.env.
func (r *ConnectorReconciler) resolve(ctx context.Context, conn *ilpv1.Connector, accounts []ilpv1.Account) (*refProblem, error) {
	if from := conn.Spec.InheritAddressFrom; from != "" {
		if p := inheritProblem(accounts, from); p != nil {
			return p, nil
		}
	}
	return checkSecretRefs(ctx, r.Reader, conn.Namespace, append(connectorSecretRefs(conn), connectorEnvSecretRefs(conn)...))
}

// inheritProblem checks that the account to inherit the address from exists and is a parent.
func inheritProblem(accounts []ilpv1.Account, name string) *refProblem {
	for _, a := range accounts {
		if a.Name != name {
			continue
		}
		if a.Spec.Relation != ilpv1.RelationParent {
			return &refProblem{ReasonInheritFromNotParent, fmt.Sprintf("inheritAddressFrom names Account %q whose relation is %s, not parent", name, a.Spec.Relation)}
		}
		return nil
	}
	return &refProblem{ReasonInheritFromNotFound, fmt.Sprintf("inheritAddressFrom names Account %q, which does not exist for this connector", name)}
}

// setConditions writes ReferencesResolved, Ready and Progressing.
func (r *ConnectorReconciler) setConditions(conn *ilpv1.Connector, problem *refProblem, wl *workloadState, applyErr error, failure *configFailureNote) {
	st := &conn.Status.BaseStatus
	if problem != nil && wl != nil && wl.held {
		problem = &refProblem{problem.reason, problem.msg + "; the running pods are kept as they are (no roll, no scaling) until it resolves, as new pods could not run"}
	}
	if problem != nil {
		setCondition(conn, st, ilpv1.ConditionReferencesResolved, false, problem.reason, problem.msg)
	} else {
		setCondition(conn, st, ilpv1.ConditionReferencesResolved, true, ReasonResolved, "every reference of the Connector resolves")
	}
	if applyErr != nil {
		setCondition(conn, st, ilpv1.ConditionReady, false, ReasonReconcileError, "the operator could not update the connector's objects: "+applyErr.Error())
		return
	}
	conn.Status.Workload, conn.Status.Image = wl.kind+"/"+wl.name, wl.image
	conn.Status.Replicas, conn.Status.ReadyReplicas = wl.replicas, wl.ready
	// A template that rolled out before is done only while no pod of another one runs: a roll
	// taken back half-way (an image that would not pull) still replaces the new pods.
	wl.templateDone = wl.templateHash != "" && conn.Status.RolledOutTemplate == wl.templateHash && !wl.otherPods
	setProgressing(conn, st, wl)
	if wl.rolledOut {
		// With the Progressing it completes: a lost write of both is made again by the next
		// reconcile, and a stale value never matches a newer template.
		conn.Status.RolledOutTemplate = wl.templateHash
	}
	ok, reason, msg := readiness(problem, wl, failure)
	setCondition(conn, st, ilpv1.ConditionReady, ok, reason, msg)
}

// readiness decides Ready. failure is what the pods report they could not apply at the
// current generation (configFailure): it keeps an available Connector not Ready; until the
// pods report, only the workload counts. Pods that are not available say why when they can
// (wl.cause), else the pods' failure does: a process that refused its configuration at start
// never passes its probe.
func readiness(problem *refProblem, wl *workloadState, failure *configFailureNote) (bool, string, string) {
	ok, reason, msg := workloadReadiness(problem, wl, "the Connector is scaled to zero replicas")
	switch {
	case reason == ReasonWorkloadUnavailable && wl.cause == "" && failure != nil:
		return ok, reason, msg + "; " + failure.msg
	case reason != ReasonAvailable:
		return ok, reason, msg
	case failure != nil:
		return false, ReasonConfigNotApplied, failure.msg
	}
	return ok, reason, msg
}

// configFailureNote is a configuration the pods report they could not apply: the reason they
// give (ApplyFailed, InvalidConfig, ObjectsLeftOut, ObjectsNotFullyApplied) and their message.
type configFailureNote struct{ reason, msg string }

// key identifies the failure for reportFailure: the same reason and message, whatever
// generation and pod the pods' message names (kube.FailureKey), is the same failure.
func (f *configFailureNote) key() string { return f.reason + "\x00" + kube.FailureKey(f.msg) }

// configFailure is what the pods report they could not apply at the Connector's current
// generation: ConfigApplied False, else the entry of failing (a pod of status.pods that could
// not apply it, whichever pod writes ConfigApplied); nil when nothing failed.
func configFailure(conn *ilpv1.Connector, failing *ilpv1.ConnectorPodStatus) *configFailureNote {
	if c := meta.FindStatusCondition(conn.Status.Conditions, ilpv1.ConditionConfigApplied); c != nil &&
		c.ObservedGeneration == conn.Generation && c.Status == metav1.ConditionFalse {
		return &configFailureNote{cmp.Or(c.Reason, ReasonConfigNotApplied), c.Message}
	}
	if failing != nil {
		msg := failing.Message
		if !strings.HasPrefix(msg, failing.Name+" ") { // the pods' own messages start with their name
			msg = fmt.Sprintf("pod %s: %s", failing.Name, msg)
		}
		return &configFailureNote{cmp.Or(failing.Reason, ReasonConfigNotApplied), msg}
	}
	return nil
}

// workloadReadiness decides Ready from the references and the pods alone: a reference
// problem, zero replicas (scaledToZero says what is), too few pods available, or else
// ReasonAvailable. It counts the available pods, old or new; after a store change, those of
// the retiring workload until the new one has its own.
func workloadReadiness(problem *refProblem, wl *workloadState, scaledToZero string) (bool, string, string) {
	serving, until := wl, ""
	if r := wl.retiring; !wl.available && r != nil && r.available {
		// A store change switches workload kinds: the old pods serve until the new ones can.
		serving, until = r, fmt.Sprintf(", and serves until %s/%s has its pods available", wl.kind, wl.name)
	}
	switch {
	case problem != nil:
		return false, problem.reason, problem.msg
	case wl.desired == 0:
		return true, ReasonScaledToZero, scaledToZero
	case !serving.available && wl.cause != "":
		return false, ReasonWorkloadUnavailable, podsAvailable(wl) + "; " + wl.cause
	case !serving.available:
		return false, ReasonWorkloadUnavailable, podsAvailable(wl)
	}
	return true, ReasonAvailable, podsAvailable(serving) + until
}

// podsAvailable says how many of its pods w has available.
func podsAvailable(w *workloadState) string {
	return fmt.Sprintf("%s/%s has %d of %d pods available", w.kind, w.name, w.availableReplicas, w.desired)
}

// failingPod returns an entry of status.pods that reports the current generation not applied,
// or nil. The entries of deleted pods are gone by then (observePods).
func failingPod(conn *ilpv1.Connector) *ilpv1.ConnectorPodStatus {
	for i := range conn.Status.Pods {
		if e := &conn.Status.Pods[i]; !e.Applied && e.AppliedGeneration == conn.Generation {
			return e
		}
	}
	return nil
}

// observePods reads the Connector's pods: it drops the status.pods entries of pods gone, and,
// while the workload lacks available pods, records in wl what the pods say of why (podsCause).
func (r *ConnectorReconciler) observePods(ctx context.Context, conn *ilpv1.Connector, wl *workloadState) error {
	pods, err := r.connectorPods(ctx, conn)
	if err != nil {
		return err
	}
	if wl != nil && !wl.available {
		wl.cause = podsCause(pods)
	}
	r.prunePods(ctx, conn, pods)
	return nil
}

// reportFailure emits a Warning Event when the pods report a configuration failure (failure,
// nil: none) other than the one last reported for key: once per change, with the pods'
// reason, so that the failure shows in kubectl describe and in event-driven alerting.
func (r *ConnectorReconciler) reportFailure(key string, conn *ilpv1.Connector, failure *configFailureNote) {
	if failure == nil {
		// Over only once the pods say so: at a new generation, before they report it, the
		// failure is not known to be gone.
		if c := meta.FindStatusCondition(conn.Status.Conditions, ilpv1.ConditionConfigApplied); c != nil &&
			c.Status == metav1.ConditionTrue && c.ObservedGeneration == conn.Generation {
			r.reported.Delete(key)
		}
		return
	}
	if prev, ok := r.reported.Swap(key, failure.key()); ok && prev == failure.key() {
		return
	}
	if r.Recorder != nil {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeWarning, failure.reason, "ApplyConfig", "%s", failure.msg)
	}
}

// setProgressing records why the pods of obj (a Connector or SettlementEngine) roll. A roll
// started by this reconcile sets the reason; a roll in progress keeps the reason it started
// with; a finished one says so.
func setProgressing(obj client.Object, st *ilpv1.BaseStatus, wl *workloadState) {
	switch {
	case wl.created:
		setCondition(obj, st, ilpv1.ConditionProgressing, true, ReasonCreating, "creating "+wl.kind+"/"+wl.name)
	case len(wl.changed) > 0 || (!wl.rolledOut && !wl.templateDone && wl.rollout.Reason != ""):
		// A roll this reconcile starts, or one still going for the reason it started with: the
		// workload keeps it, so a reason whose status write was lost is not replaced by the
		// previous roll's.
		setCondition(obj, st, ilpv1.ConditionProgressing, true, wl.rollout.Reason, wl.rollout.Message)
	case wl.rolledOut || wl.templateDone:
		// Done, or done before and pods replaced since (deleted, crashed, evicted): a pod
		// replaced from the same template is no roll, and the last roll's reason stays over.
		setCondition(obj, st, ilpv1.ConditionProgressing, false, ReasonRolloutComplete, "the current pod template has rolled out")
	default:
		if c := meta.FindStatusCondition(st.Conditions, ilpv1.ConditionProgressing); c != nil && c.Status == metav1.ConditionTrue {
			c.ObservedGeneration = obj.GetGeneration() // still rolling, for the reason it started with
			return
		}
		// Rolling for a reason this operator did not see (its write of the reason failed, or
		// someone else changed the workload, or the reason is not one it tracks): say that it
		// rolls, without inventing why.
		setCondition(obj, st, ilpv1.ConditionProgressing, true, ReasonRollingOut, "waiting for "+wl.kind+"/"+wl.name+" to roll out the current pod template")
	}
}

// emitEvents reports reference problems and rollouts when their condition changes.
func (r *ConnectorReconciler) emitEvents(orig, conn *ilpv1.Connector, wl *workloadState) {
	if r.Recorder == nil {
		return
	}
	changed := func(typ string) *metav1.Condition {
		now := meta.FindStatusCondition(conn.Status.Conditions, typ)
		was := meta.FindStatusCondition(orig.Status.Conditions, typ)
		if now == nil || (was != nil && was.Reason == now.Reason && was.Message == now.Message && was.Status == now.Status) {
			return nil
		}
		return now
	}
	if c := changed(ilpv1.ConditionReferencesResolved); c != nil && c.Status == metav1.ConditionFalse {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeWarning, c.Reason, "Resolve", "%s", c.Message)
	}
	if c := changed(ilpv1.ConditionReady); c != nil && c.Reason == ReasonReconcileError {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeWarning, c.Reason, "Reconcile", "%s", c.Message)
	}
	if wl != nil && len(wl.changed) > 0 {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeNormal, wl.rollout.Reason, "Rollout", "%s", wl.rollout.Message)
	}
}

// accountChanges are the Account events that concern its Connector: created, deleted, spec
// changed. Not a status write: the pods report balances there all the time, and nothing of a
// Connector (its objects, its status) depends on an Account's status.
var accountChanges = predicate.GenerationChangedPredicate{}

// SetupWithManager registers the controller: it owns the workload objects, and Account and
// Secret changes (Secrets watched by metadata only) re-render the Role, Services, the
// Deployment's strategy (deploymentStrategy: an Account's link) and status. Its pods are
// watched for why they do not come up and for their deletion (podChanges).
func (r *ConnectorReconciler) SetupWithManager(mgr ctrl.Manager) error {
	c := mgr.GetClient()
	return ctrl.NewControllerManagedBy(mgr).
		For(&ilpv1.Connector{}).
		Owns(&appsv1.Deployment{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Watches(&ilpv1.Account{}, handler.EnqueueRequestsFromMapFunc(connectorOf), builder.WithPredicates(accountChanges)).
		Watches(&ilpv1.Route{}, handler.EnqueueRequestsFromMapFunc(connectorOfRoute), builder.WithPredicates(routeComesOrGoes)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(connectorsOfSecret(c)), builder.OnlyMetadata).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(connectorOfPod), builder.WithPredicates(podChanges)).
		Watches(serviceMonitorCRDMeta(), handler.EnqueueRequestsFromMapFunc(allConnectors(c))). // only that CRD is cached
		Complete(quietWhenNamespaceGoes(r))
}
