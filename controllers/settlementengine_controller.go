package controllers

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// SettlementEngineReconciler runs each SettlementEngine as a Deployment with a Service, both
// named <name>-engine, checks the Secrets its environment reads, and reports the engine's URL.
type SettlementEngineReconciler struct {
	client.Client
	// Reader reads Secrets uncached: the manager caches only their metadata.
	Reader   client.Reader
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=settlementengines,verbs=get;list;watch
// +kubebuilder:rbac:groups=ilp.ilpfleet.dev,resources=settlementengines/status,verbs=get;update;patch

func engineSelector(e *ilpv1.SettlementEngine) map[string]string {
	return map[string]string{labelComponent: componentEngine, ilpv1.LabelSettlementEngine: e.Name}
}

func engineLabels(e *ilpv1.SettlementEngine) map[string]string {
	l := engineSelector(e)
	l["app.kubernetes.io/name"] = "ilpfleet"
	l[LabelManagedBy] = ManagedBy
	return l
}

// Reconcile writes the engine's Deployment and Service and its status.
func (r *SettlementEngineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var eng ilpv1.SettlementEngine
	if err := r.Get(ctx, req.NamespacedName, &eng); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !eng.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	orig := eng.DeepCopy()
	problem, err := checkSecretRefs(ctx, r.Reader, eng.Namespace, engineSecretRefs(&eng))
	if err != nil {
		return ctrl.Result{}, err
	}
	wl, applyErr := r.apply(ctx, &eng)
	r.setConditions(&eng, problem, wl, applyErr)
	if r.Recorder != nil {
		now := meta.FindStatusCondition(eng.Status.Conditions, ilpv1.ConditionReady)
		was := meta.FindStatusCondition(orig.Status.Conditions, ilpv1.ConditionReady)
		if now.Status == metav1.ConditionFalse && now.Reason != ReasonWorkloadUnavailable && (was == nil || was.Reason != now.Reason || was.Message != now.Message) {
			r.Recorder.Eventf(&eng, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
		}
	}
	if !equality.Semantic.DeepEqual(orig.Status, eng.Status) {
		if res, err := patchStatus(ctx, r.Client, &eng, orig); err != nil || !res.IsZero() {
			return res, err
		}
	}
	return ctrl.Result{}, applyErr
}

// apply writes the Service and the Deployment, and returns the Deployment's state.
func (r *SettlementEngineReconciler) apply(ctx context.Context, eng *ilpv1.SettlementEngine) (*workloadState, error) {
	om := metav1.ObjectMeta{Namespace: eng.Namespace, Name: eng.WorkloadName()}
	svc := &corev1.Service{ObjectMeta: om}
	if _, err := upsert(ctx, r.Client, eng, svc, func() error {
		svc.Labels = mergeLabels(svc.Labels, engineLabels(eng))
		svc.Spec.Type, svc.Spec.Selector = corev1.ServiceTypeClusterIP, engineSelector(eng)
		svc.Spec.Ports = []corev1.ServicePort{servicePort("http", eng.Spec.Port, intstr.FromString("http"))}
		return nil
	}); err != nil {
		return nil, err
	}
	dep := &appsv1.Deployment{ObjectMeta: om}
	op, err := upsert(ctx, r.Client, eng, dep, func() error {
		dep.Labels = mergeLabels(dep.Labels, engineLabels(eng))
		dep.Spec.Replicas = ptr.To(ptr.Deref(eng.Spec.Replicas, 1))
		dep.Spec.Selector = &metav1.LabelSelector{MatchLabels: engineSelector(eng)}
		dep.Spec.Strategy = engineStrategy(eng)
		setPodTemplate(dep, &dep.Spec.Template, enginePodTemplate(eng))
		return nil
	})
	if err != nil {
		return nil, err
	}
	wl := &workloadState{desired: workloadReplicas(dep), created: op == controllerutil.OperationResultCreated}
	workloadStatus(dep, wl)
	if !wl.available {
		// Why its pods do not come up, when they say it: an engine image comes from a third
		// party, and a wrong one (ErrImagePull) is the usual first failure.
		var pods corev1.PodList
		if err := r.List(ctx, &pods, client.InNamespace(eng.Namespace), client.MatchingLabels(engineSelector(eng))); err != nil {
			return nil, err
		}
		wl.cause = podsCause(pods.Items)
	}
	return wl, nil
}

// engineOfPod maps a settlement engine's pod to its SettlementEngine.
func engineOfPod(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[labelComponent] != componentEngine || l[ilpv1.LabelSettlementEngine] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: l[ilpv1.LabelSettlementEngine]}}}
}

// engineStrategy is how the engine's Deployment replaces its pods: spec.strategy, or by
// default Recreate for a single engine and a rolling update for several. A single engine is
// usually the only process on its state — an engine on ilpfleet's framework with a Redis store
// holds a lease on its key prefix, and a surge pod would wait for it, never ready, so a rolling
// update would stall (docs/user-guide.md, "Settling balances") — so its roll stops the old pod
// before starting the new one: a pause of a restart, which the connectors ride out (they retry
// settlements and messages). Several replicas roll as Kubernetes does by default: engines run
// so share their state by design; active/standby replicas (the lease again) say Recreate. Not
// in the pod template: changing it rolls no pod.
func engineStrategy(eng *ilpv1.SettlementEngine) appsv1.DeploymentStrategy {
	switch eng.Spec.Strategy {
	case ilpv1.EngineStrategyRecreate:
		return appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	case ilpv1.EngineStrategyRollingUpdate:
		return rollingUpdate()
	}
	if ptr.Deref(eng.Spec.Replicas, 1) <= 1 {
		return appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	}
	return rollingUpdate()
}

func enginePodTemplate(eng *ilpv1.SettlementEngine) corev1.PodTemplateSpec {
	ctr := corev1.Container{
		Name: "engine", Image: eng.Spec.Image, Command: eng.Spec.Command, Args: eng.Spec.Args,
		Env: eng.Spec.Env, EnvFrom: eng.Spec.EnvFrom,
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: eng.Spec.Port, Protocol: corev1.ProtocolTCP}},
		// Ready once the engine accepts connections on its port: RFC 38 has no health endpoint,
		// and a Ready engine that refuses the connector's first requests sends its settler into
		// backoff.
		// Every number written out, the API server's defaults included: setPodTemplate compares
		// the template with the one the API server holds.
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}},
			PeriodSeconds: 2, FailureThreshold: 3, TimeoutSeconds: 1, SuccessThreshold: 1},
		SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
	}
	if eng.Spec.Resources != nil {
		ctr.Resources = *eng.Spec.Resources
	}
	if p := eng.Spec.MetricsPort; p != nil {
		ctr.Ports = append(ctr.Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: *p, Protocol: corev1.ProtocolTCP})
	}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: engineLabels(eng)},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{ctr},
			// Engines come from third parties: no API credentials unless they ask for them.
			AutomountServiceAccountToken: ptr.To(false),
		},
	}
	// Without capabilities the engine cannot bind a port below 1024, whatever its user: the
	// pod lowers the bound for its own network as the Connector's pods do. Only then, so that
	// the template of every other engine stays as it was.
	if eng.Spec.Port < privilegedPorts {
		tmpl.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: unprivilegedPortStart(eng.Spec.Port)}
	}
	return tmpl
}

// setConditions writes ReferencesResolved, Ready, Progressing, the replica counts and the URL.
// Ready counts the available pods, old or new, as the Connector's does; Progressing says
// whether the Deployment has rolled out the current pod template.
func (r *SettlementEngineReconciler) setConditions(eng *ilpv1.SettlementEngine, problem *refProblem, wl *workloadState, applyErr error) {
	st := &eng.Status.BaseStatus
	if problem != nil {
		setCondition(eng, st, ilpv1.ConditionReferencesResolved, false, problem.reason, problem.msg)
	} else {
		setCondition(eng, st, ilpv1.ConditionReferencesResolved, true, ReasonResolved, "every Secret the engine's environment reads exists")
	}
	if applyErr != nil {
		setCondition(eng, st, ilpv1.ConditionReady, false, ReasonReconcileError, "the operator could not update the engine's objects: "+applyErr.Error())
		return
	}
	eng.Status.URL = eng.InClusterURL()
	eng.Status.Replicas, eng.Status.ReadyReplicas = wl.replicas, wl.ready
	setProgressing(eng, st, wl)
	ok, reason, msg := workloadReadiness(problem, servingEngine(wl), "the engine is scaled to zero replicas")
	setCondition(eng, st, ilpv1.ConditionReady, ok, reason, msg)
}

// servingEngine is wl as Ready judges an engine: available (workloadState.available, all
// desired pods) as soon as one pod is. An engine on ilpfleet's framework with a Redis store
// runs one active replica, the others standing by and never available (docs/user-guide.md,
// "Settling balances"), so Ready would otherwise stay False for good. The trade-off: an engine
// of another kind with several active replicas is Ready while one of them serves, degraded;
// status.readyReplicas and the Ready message ("1 of 3 pods available") still say so.
func servingEngine(wl *workloadState) *workloadState {
	if wl.available || wl.availableReplicas < 1 {
		return wl
	}
	w := *wl
	w.available = true
	return &w
}

// SetupWithManager registers the controller; it owns the Deployment and Service, and Secret
// changes (metadata only) re-check the engines that read them.
func (r *SettlementEngineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&ilpv1.SettlementEngine{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(byIndex(mgr.GetClient(), &ilpv1.SettlementEngineList{}, fieldSecretNames)), builder.OnlyMetadata).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(engineOfPod), builder.WithPredicates(podChanges)).
		Complete(quietWhenNamespaceGoes(r))
}
