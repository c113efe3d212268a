package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// serviceMonitorCRDName is the CRD whose arrival, or a change of it (it becomes established),
// makes every Connector write its ServiceMonitor: installing prometheus-operator after the
// fleet needs no restart of the operator.
const serviceMonitorCRDName = "servicemonitors.monitoring.coreos.com"

// serviceMonitorCRDMeta is the watched type of serviceMonitorCRDName: a CRD's metadata.
func serviceMonitorCRDMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	return m
}

// serviceMonitorGVK is prometheus-operator's ServiceMonitor, handled as unstructured so that
// the operator neither imports nor requires prometheus-operator.
var serviceMonitorGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}

// workloadState is what the reconcile learnt about the Deployment or StatefulSet.
type workloadState struct {
	kind, name, image string
	desired           int32
	replicas, ready   int32
	availableReplicas int32
	available         bool        // at least desired pods available
	rolledOut         bool        // the workload controller finished rolling the current template
	templateDone      bool        // the current template rolled out before (ConnectorStatus.RolledOutTemplate): pods replaced since are no roll
	otherPods         bool        // pods of another template may still run: a roll is going, even back to a template that rolled out before
	templateHash      string      // hash of the current pod template as stored (templateHash)
	created           bool        // the workload was created by this reconcile
	changed           []string    // restart inputs that changed in this reconcile: the pods roll
	rollout           rolloutNote // why the current template rolled out: this reconcile's changes, else the workload's note
	held              bool        // left as it runs: the Connector's references do not resolve, or the cache lacks its Redis URL Secret
	// retiring is the workload of the other kind after a store change: its pods serve until
	// this one has its pods available.
	retiring *workloadState
	// cause is why pods do not come up, when they say it (podsCause); read only while the
	// workload lacks available pods.
	cause string
}

// applyOwned creates or updates every object the Connector owns and returns its workload's state.
// hold keeps a running workload as it is (applyWorkload).
func (r *ConnectorReconciler) applyOwned(ctx context.Context, conn *ilpv1.Connector, accounts []ilpv1.Account, secrets []string, hold bool) (*workloadState, error) {
	steps := []func() error{
		func() error { return r.applyRBAC(ctx, conn, accounts, secrets) },
		func() error { return r.applyServices(ctx, conn, accounts) },
		func() error { return r.applyPDB(ctx, conn) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	wl, err := r.applyWorkload(ctx, conn, accounts, hold)
	if err != nil {
		return nil, err
	}
	// After the workload: a ServiceMonitor that cannot be written (prometheus-operator's CRD
	// being removed, a foreign object of its name) or a policy the API server refuses (a bad
	// adminFrom) is reported, but does not hold up the pods' changes.
	return wl, errors.Join(r.applyServiceMonitor(ctx, conn), r.applyNetworkPolicy(ctx, conn, accounts))
}

// upsert creates or updates obj as a controlled child of owner. It refuses to adopt an object
// of the same name that something else created, rather than silently taking it over.
func upsert(ctx context.Context, c client.Client, owner, obj client.Object, mutate func() error) (controllerutil.OperationResult, error) {
	gvk, _ := apiutil.GVKForObject(obj, c.Scheme()) // typed or unstructured
	notOwned := fmt.Errorf("%s %s already exists and is not owned by %s: rename or delete it", gvk.Kind, obj.GetName(), owner.GetName())
	res, err := controllerutil.CreateOrUpdate(ctx, c, obj, func() error {
		if obj.GetResourceVersion() != "" && !metav1.IsControlledBy(obj, owner) {
			return notOwned
		}
		if err := mutate(); err != nil {
			return err
		}
		return controllerutil.SetControllerReference(owner, obj, c.Scheme())
	})
	if apierrors.IsAlreadyExists(err) {
		// The cache holds only objects with the operator's label (CacheOptions): one that
		// someone else made is not seen, and our create collides with it.
		return res, notOwned
	}
	return res, err
}

// deleteIfOwned deletes obj when it exists and owner controls it.
func deleteIfOwned(ctx context.Context, c client.Client, owner, obj client.Object) error {
	if err := c.Get(ctx, client.ObjectKey{Namespace: owner.GetNamespace(), Name: obj.GetName()}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, owner) {
		return nil
	}
	return client.IgnoreNotFound(c.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)))
}

func (r *ConnectorReconciler) meta(conn *ilpv1.Connector, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: conn.Namespace, Name: name}
}

// applyRBAC writes the pods' ServiceAccount, their Role (rewritten as Accounts and Routes come
// and go and change the Secrets in use) and the RoleBinding between them.
func (r *ConnectorReconciler) applyRBAC(ctx context.Context, conn *ilpv1.Connector, accounts []ilpv1.Account, secrets []string) error {
	name := connectorSAName(conn)
	sa := &corev1.ServiceAccount{ObjectMeta: r.meta(conn, name)}
	if _, err := upsert(ctx, r.Client, conn, sa, func() error {
		sa.Labels = mergeLabels(sa.Labels, connectorLabels(conn))
		return nil
	}); err != nil {
		return err
	}
	var routes ilpv1.RouteList // the pods write their ConfigApplied
	if err := r.List(ctx, &routes, client.InNamespace(conn.Namespace)); err != nil {
		return err
	}
	role := &rbacv1.Role{ObjectMeta: r.meta(conn, name)}
	if _, err := upsert(ctx, r.Client, conn, role, func() error {
		role.Labels = mergeLabels(role.Labels, connectorLabels(conn))
		role.Rules = connectorRules(conn, accountNames(accounts), routeNames(conn.Name, routes.Items), secrets)
		return nil
	}); err != nil {
		return err
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: r.meta(conn, name)}
	_, err := upsert(ctx, r.Client, conn, rb, func() error {
		rb.Labels = mergeLabels(rb.Labels, connectorLabels(conn))
		rb.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}
		rb.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: conn.Namespace}}
		return nil
	})
	return err
}

// applyServices writes the peer Service (deleted when no port is peer-facing: a Service needs
// one) and the admin Service.
func (r *ConnectorReconciler) applyServices(ctx context.Context, conn *ilpv1.Connector, accounts []ilpv1.Account) error {
	peer := &corev1.Service{ObjectMeta: r.meta(conn, conn.Name)}
	if ports := peerServicePorts(conn, accounts); len(ports) == 0 {
		if err := deleteIfOwned(ctx, r.Client, conn, peer); err != nil {
			return err
		}
	} else if _, err := upsert(ctx, r.Client, conn, peer, func() error {
		typ, ann := corev1.ServiceTypeClusterIP, map[string]string(nil)
		if s := conn.Spec.Service; s != nil {
			if s.Type != "" {
				typ = s.Type
			}
			ann = s.Annotations
		}
		peer.Labels = mergeLabels(peer.Labels, connectorLabels(conn))
		peer.Labels[labelService] = "peer"
		peer.Annotations = mergeLabels(peer.Annotations, ann)
		peer.Spec.Type, peer.Spec.Selector = typ, selectorLabels(conn)
		peer.Spec.Ports = keepNodePorts(peer.Spec.Ports, ports)
		return nil
	}); err != nil {
		return err
	}
	admin := &corev1.Service{ObjectMeta: r.meta(conn, adminServiceName(conn))}
	_, err := upsert(ctx, r.Client, conn, admin, func() error {
		admin.Labels = mergeLabels(admin.Labels, connectorLabels(conn))
		admin.Labels[labelService] = "admin"
		admin.Spec.Type, admin.Spec.Selector = corev1.ServiceTypeClusterIP, selectorLabels(conn)
		admin.Spec.Ports = adminServicePorts(conn)
		return nil
	})
	return err
}

// keepNodePorts carries the node ports the API server allocated over to the desired ports,
// so that an update neither changes them nor looks like a change.
func keepNodePorts(have, want []corev1.ServicePort) []corev1.ServicePort {
	for i := range want {
		for _, h := range have {
			if h.Port == want[i].Port && h.Protocol == want[i].Protocol {
				want[i].NodePort = h.NodePort
			}
		}
	}
	return want
}

// applyPDB keeps a PodDisruptionBudget for a Connector with more than one replica only.
func (r *ConnectorReconciler) applyPDB(ctx context.Context, conn *ilpv1.Connector) error {
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: r.meta(conn, conn.Name)}
	if replicasOf(conn) <= 1 {
		return deleteIfOwned(ctx, r.Client, conn, pdb)
	}
	_, err := upsert(ctx, r.Client, conn, pdb, func() error {
		connectorPDB(conn, pdb)
		return nil
	})
	return err
}

// applyNetworkPolicy keeps the pods' NetworkPolicy while spec.networkPolicy is set; its peer
// ports follow the Accounts.
func (r *ConnectorReconciler) applyNetworkPolicy(ctx context.Context, conn *ilpv1.Connector, accounts []ilpv1.Account) error {
	np := &networkingv1.NetworkPolicy{ObjectMeta: r.meta(conn, conn.Name)}
	if conn.Spec.NetworkPolicy == nil {
		return deleteIfOwned(ctx, r.Client, conn, np)
	}
	_, err := upsert(ctx, r.Client, conn, np, func() error {
		connectorNetworkPolicy(conn, accounts, np)
		return nil
	})
	return err
}

// applyServiceMonitor scrapes the admin Service's /metrics when prometheus-operator is installed;
// without its CRD there is nothing to do.
func (r *ConnectorReconciler) applyServiceMonitor(ctx context.Context, conn *ilpv1.Connector) error {
	// The cache holds that one CRD's metadata (CacheOptions), so its absence costs no API call;
	// the RESTMapper would ask the API server's discovery on every reconcile.
	if err := r.Get(ctx, client.ObjectKey{Name: serviceMonitorCRDName}, serviceMonitorCRDMeta()); err != nil {
		return client.IgnoreNotFound(err)
	}
	if _, err := r.RESTMapper().RESTMapping(serviceMonitorGVK.GroupKind(), serviceMonitorGVK.Version); err != nil {
		if meta.IsNoMatchError(err) {
			return nil // created, not served yet: its watch event comes again once established
		}
		return err
	}
	sm := &unstructured.Unstructured{}
	sm.SetGroupVersionKind(serviceMonitorGVK)
	sm.SetNamespace(conn.Namespace)
	sm.SetName(conn.Name)
	_, err := upsert(ctx, r.Client, conn, sm, func() error {
		sm.SetLabels(mergeLabels(sm.GetLabels(), connectorLabels(conn)))
		sel := map[string]any{}
		for k, v := range selectorLabels(conn) {
			sel[k] = v
		}
		sel[labelService] = "admin"
		return unstructured.SetNestedField(sm.Object, map[string]any{
			"selector":  map[string]any{"matchLabels": sel},
			"endpoints": []any{map[string]any{"port": "admin", "path": "/metrics"}},
		}, "spec")
	})
	if apierrors.IsNotFound(err) {
		// The create found no such resource: the CRD was removed after the RESTMapper learned
		// it (it keeps the mapping) and before the cache saw it go. Nothing scrapes any more.
		return nil
	}
	return err
}

// storeSecretName is the Secret holding the Redis URL, "" without one.
func storeSecretName(conn *ilpv1.Connector) string {
	s := conn.Spec.Store
	if s == nil || s.Type != ilpv1.StoreRedis || s.Redis == nil {
		return ""
	}
	return s.Redis.URLSecretRef.Name
}

// storeSecretVersion is the resourceVersion of the Secret holding the Redis URL, "" without
// one (or while the cache does not hold it): the store is opened once per process, so a
// rotated URL (password) needs new pods.
func (r *ConnectorReconciler) storeSecretVersion(ctx context.Context, conn *ilpv1.Connector) (string, error) {
	name := storeSecretName(conn)
	if name == "" {
		return "", nil
	}
	v, err := secretVersions(ctx, r.Client, conn.Namespace, []string{name})
	return v[name], err
}

// applyWorkload writes the Deployment, or the StatefulSet for the file store, retires the other
// kind after a store change, and reports which restart inputs changed. The Deployment's
// strategy follows the Accounts' links (deploymentStrategy); a StatefulSet's never overlaps
// its pods (it stops a pod before it starts its successor of the same name) and keeps its own.
//
// hold (the Connector's own references do not resolve) keeps a running workload exactly as it
// is: its pods keep the config they have, while new pods could not open their store or build
// their config. So does a Redis URL Secret that the cache does not hold: its version would
// drop out of the restart inputs and roll the pods towards a store they cannot open. Without a
// running workload there is nothing to keep, and the new pods report why they cannot run.
func (r *ConnectorReconciler) applyWorkload(ctx context.Context, conn *ilpv1.Connector, accounts []ilpv1.Account, hold bool) (*workloadState, error) {
	image := conn.Spec.Image
	if image == "" {
		image = r.Options.ConnectorImage
	}
	storeSecret, err := r.storeSecretVersion(ctx, conn)
	if err != nil {
		return nil, err
	}
	hold = hold || (storeSecretName(conn) != "" && storeSecret == "")
	want, other := workloadObjects(conn)
	found, err := r.ownedWorkloads(ctx, conn, want, other)
	if err != nil {
		return nil, err
	}
	running := found.running()
	if hold && running != nil {
		return heldState(running), nil
	}
	lowPort := lowestPrivilegedPort(conn, accounts)
	inputs := restartInputsOf(conn, image, storeSecret, lowPort)
	tc := compareInputs(&inputs, running)
	st := &workloadState{name: conn.Name, image: image, desired: replicasOf(conn), changed: tc.changed, rollout: tc.rollout}
	tmpl := connectorPodTemplate(conn, image, inputs, lowPort)
	op, err := upsert(ctx, r.Client, conn, want, func() error {
		read := want.DeepCopyObject().(client.Object)
		setRolloutNote(want, st.rollout)
		setAnnotation(want, annotationAddressBaseline, tc.baseline)
		if err := mutateWorkload(conn, want, tmpl, deploymentStrategy(conn, accounts)); err != nil {
			return err
		}
		noteGenerations(read, want)
		return nil
	})
	if err != nil {
		return nil, err
	}
	workloadStatus(want, st)
	st.templateHash = templateHash(want)
	st.created = tc.prev == "" && op == controllerutil.OperationResultCreated
	if found.other != nil {
		return st, r.retire(ctx, found.other, st)
	}
	return st, nil
}

// templateChange is how a reconcile's restart inputs compare with the running workload's.
type templateChange struct {
	prev     string      // the running template's inputs, "" without one
	baseline string      // the annotationAddressBaseline the workload must carry (dropUntrackedAddress)
	changed  []string    // the inputs that changed: the pods roll
	rollout  rolloutNote // why the current template rolled out: these changes, else the workload's note
}

// compareInputs compares inputs with those of running (nil: none), leaving an untracked
// inherited address out of inputs.
func compareInputs(inputs *restartInputs, running client.Object) templateChange {
	var tc templateChange
	var note rolloutNote
	if running != nil {
		tc.prev, note = workloadInputs(running)
		tc.baseline = inputs.dropUntrackedAddress(tc.prev, running)
	}
	if tc.prev != "" {
		tc.changed = inputs.changedSince(tc.prev)
	}
	if len(tc.changed) > 0 {
		note.Reason, note.Message = rolloutReason(tc.changed)
		note.Inputs = inputs.String()
	}
	tc.rollout = currentRollout(note, inputs.String())
	return tc
}

// currentRollout is note when it was written for inputs, else none: a note about other
// inputs says why an older template rolled out, not the current one.
func currentRollout(note rolloutNote, inputs string) rolloutNote {
	if note.Inputs != inputs {
		return rolloutNote{}
	}
	return note
}

// workloadObjects are the Connector's workload of the kind its store needs (a StatefulSet for
// the file store's volume, else a Deployment) and an empty one of the other kind.
func workloadObjects(conn *ilpv1.Connector) (want, other client.Object) {
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: conn.Namespace, Name: conn.Name}}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: conn.Namespace, Name: conn.Name}}
	if storeType(conn) == ilpv1.StoreFile {
		return sts, dep
	}
	return dep, sts
}

// owned is the Connector's workloads that exist and it controls: want of the kind its store
// needs, other of the other kind; nil when absent.
type owned struct{ want, other client.Object }

// running is the workload whose template the pods run: want, else other (after a store change
// that has not created want yet); nil without either.
func (o owned) running() client.Object {
	if o.want != nil {
		return o.want
	}
	return o.other
}

// ownedWorkloads reads want and other and returns those that exist and conn controls.
func (r *ConnectorReconciler) ownedWorkloads(ctx context.Context, conn *ilpv1.Connector, want, other client.Object) (owned, error) {
	w, err := r.controlled(ctx, conn, want)
	if err != nil {
		return owned{}, err
	}
	o, err := r.controlled(ctx, conn, other)
	if err != nil {
		return owned{}, err
	}
	return owned{want: w, other: o}, nil
}

// controlled reads obj and returns it when it exists and conn controls it, else nil.
func (r *ConnectorReconciler) controlled(ctx context.Context, conn *ilpv1.Connector, obj client.Object) (client.Object, error) {
	err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj)
	if err != nil || !metav1.IsControlledBy(obj, conn) {
		return nil, client.IgnoreNotFound(err)
	}
	return obj, nil
}

// retire deletes the workload of the kind the store no longer needs once the new one has its
// pods available (or none are wanted): until then its pods serve, and the roll is not over.
func (r *ConnectorReconciler) retire(ctx context.Context, old client.Object, st *workloadState) error {
	if st.available || st.desired == 0 {
		return client.IgnoreNotFound(r.Delete(ctx, old, client.PropagationPolicy(metav1.DeletePropagationBackground)))
	}
	st.retiring = &workloadState{desired: workloadReplicas(old)}
	workloadStatus(old, st.retiring)
	st.rolledOut = false
	return nil
}

// heldState is the state of a running workload that this reconcile leaves as it is.
func heldState(w client.Object) *workloadState {
	st := &workloadState{name: w.GetName(), desired: workloadReplicas(w), held: true}
	if c := podTemplate(w).Spec.Containers; len(c) > 0 {
		st.image = c[0].Image
	}
	inputs, note := workloadInputs(w)
	st.rollout = currentRollout(note, inputs)
	workloadStatus(w, st)
	st.templateHash = templateHash(w)
	return st
}

// templateHash is a hash of w's pod template as stored, the API server's defaults included:
// the same while the template is, whoever changed it (kubectl rollout restart included).
func templateHash(w client.Object) string { return shortHash(podTemplate(w)) }

// workloadInputs are the restart inputs of a workload's pod template and its rollout note
// (zero when absent or unreadable).
func workloadInputs(w client.Object) (string, rolloutNote) {
	var n rolloutNote
	_ = json.Unmarshal([]byte(w.GetAnnotations()[ilpv1.AnnotationRolloutReason]), &n)
	return podTemplate(w).Annotations[ilpv1.AnnotationRestartInputs], n
}

// podTemplate is the pod template of a Deployment or StatefulSet.
func podTemplate(w client.Object) *corev1.PodTemplateSpec {
	if d, ok := w.(*appsv1.Deployment); ok {
		return &d.Spec.Template
	}
	return &w.(*appsv1.StatefulSet).Spec.Template
}

// workloadReplicas is a Deployment's or StatefulSet's replica count.
func workloadReplicas(w client.Object) int32 {
	if d, ok := w.(*appsv1.Deployment); ok {
		return ptr.Deref(d.Spec.Replicas, 1)
	}
	return ptr.Deref(w.(*appsv1.StatefulSet).Spec.Replicas, 1)
}

// workloadStatus fills st from a Deployment's or StatefulSet's status, against st.desired.
func workloadStatus(w client.Object, st *workloadState) {
	st.name = w.GetName()
	switch o := w.(type) {
	case *appsv1.Deployment:
		st.kind = "Deployment"
		deploymentState(o, st)
	case *appsv1.StatefulSet:
		st.kind = "StatefulSet"
		statefulSetState(o, st)
	}
}

// rolloutNote is AnnotationRolloutReason's value.
type rolloutNote struct {
	Inputs  string `json:"inputs"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// setRolloutNote writes n on the workload when it is new (a roll this reconcile starts); other
// annotations are left alone.
func setRolloutNote(o client.Object, n rolloutNote) {
	if n.Reason == "" {
		return
	}
	b, _ := json.Marshal(n)
	setAnnotation(o, ilpv1.AnnotationRolloutReason, string(b))
}

// setAnnotation sets an annotation of o, or removes it when value is "".
func setAnnotation(o client.Object, key, value string) {
	a := o.GetAnnotations()
	if value == "" {
		delete(a, key)
		return
	}
	if a == nil {
		a = map[string]string{}
	}
	a[key] = value
	o.SetAnnotations(a)
}

// annotationTemplateHash, on a workload, is the hash of the pod template the operator last
// wrote (setPodTemplate).
const annotationTemplateHash = "ilp.ilpfleet.dev/pod-template-hash"

// setPodTemplate puts want in the workload's pod template when it differs from what the
// operator wants of the template now: the operator's own change (a new hash of want: a field
// set, changed or removed) or someone else's change of a field the operator sets (want is then
// no longer a subset of have). Otherwise the template is left as it is, with the API server's
// defaults that want lacks: replacing it would send an update on every reconcile.
func setPodTemplate(w client.Object, have *corev1.PodTemplateSpec, want corev1.PodTemplateSpec) {
	h := shortHash(want)
	if w.GetAnnotations()[annotationTemplateHash] == h && equality.Semantic.DeepDerivative(want, *have) {
		return
	}
	*have = want
	setAnnotation(w, annotationTemplateHash, h)
}

// mutateWorkload sets what the operator owns of the Connector's Deployment (with strategy) or
// StatefulSet.
func mutateWorkload(conn *ilpv1.Connector, w client.Object, tmpl corev1.PodTemplateSpec, strategy appsv1.DeploymentStrategy) error {
	w.SetLabels(mergeLabels(w.GetLabels(), connectorLabels(conn)))
	setPodTemplate(w, podTemplate(w), tmpl)
	switch o := w.(type) {
	case *appsv1.Deployment:
		o.Spec.Replicas = ptr.To(replicasOf(conn))
		o.Spec.Selector = &metav1.LabelSelector{MatchLabels: selectorLabels(conn)}
		o.Spec.Strategy = strategy
	case *appsv1.StatefulSet:
		o.Spec.Replicas = ptr.To(replicasOf(conn))
		if o.CreationTimestamp.IsZero() {
			// Selector, service name and claim templates are immutable: set them once.
			claim, err := fileStoreClaim(conn)
			if err != nil {
				return err
			}
			claim.Name = dataVolume
			o.Spec.Selector = &metav1.LabelSelector{MatchLabels: selectorLabels(conn)}
			o.Spec.ServiceName = adminServiceName(conn)
			o.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{claim}
		}
	}
	return nil
}

// annotationGenerations, on a Deployment the operator writes, is its deploymentGenerations,
// as JSON.
const annotationGenerations = "ilp.ilpfleet.dev/generations"

// deploymentGenerations tells a rollout from another change of a Deployment: its generation
// also rises when only its strategy changes (deploymentStrategy follows the Accounts), its
// replicas, or its annotations — none of which rolls a pod.
type deploymentGenerations struct {
	// Written is the generation the operator's last write gave the Deployment. While the
	// Deployment still has it, nobody else changed its spec or annotations since: the API
	// server raises the generation by one on each such change (apps/v1 Deployment strategy).
	Written int64 `json:"written"`
	// Template is a generation at which the pod template was already the current one.
	Template int64 `json:"template"`
}

// noteGenerations records, on a Deployment that the operator's write changes from read (its
// state before the mutation), the generation the write gives it and the one from which its pod
// template is the current one: the same as before when the write leaves the template alone
// (a strategy switch), else the written one. Not on a StatefulSet: the operator changes
// nothing of one but its template, replicas and annotations, and annotations do not raise a
// StatefulSet's generation.
func noteGenerations(read, w client.Object) {
	d, ok := w.(*appsv1.Deployment)
	r, ok2 := read.(*appsv1.Deployment)
	if !ok || !ok2 || equality.Semantic.DeepEqual(r, d) {
		return // no write: nothing to note (and a note alone would be a write)
	}
	g := deploymentGenerations{Written: r.Generation + 1} // a create gives generation 1
	switch prev, known := generationsOf(r); {
	case r.CreationTimestamp.IsZero() || !equality.Semantic.DeepEqual(r.Spec.Template, d.Spec.Template):
		g.Template = g.Written
	case known && prev.Written == r.Generation:
		g.Template = prev.Template // unchanged since the operator's last write
	default:
		g.Template = r.Generation // changed by someone else since: the template as read is the current one
	}
	b, _ := json.Marshal(g)
	setAnnotation(d, annotationGenerations, string(b))
}

// generationsOf reads a Deployment's annotationGenerations.
func generationsOf(d *appsv1.Deployment) (deploymentGenerations, bool) {
	var g deploymentGenerations
	v, ok := d.Annotations[annotationGenerations]
	if !ok || json.Unmarshal([]byte(v), &g) != nil || g.Written <= 0 || g.Template <= 0 || g.Template > g.Written {
		return deploymentGenerations{}, false
	}
	return g, true
}

// templateGeneration is the generation from which the Deployment's pod template is the
// current one, as far as it can be told: its annotationGenerations, while nobody but the
// operator changed the Deployment since its last write; else the Deployment's generation.
func templateGeneration(d *appsv1.Deployment) int64 {
	if g, ok := generationsOf(d); ok && g.Written == d.Generation {
		return g.Template
	}
	return d.Generation
}

// deploymentState fills st from a Deployment. It is rolled out when the Deployment controller
// has seen its current pod template (not necessarily its current generation: a strategy switch
// or a scale rolls nothing) and all of the desired pods are of that template and available.
func deploymentState(d *appsv1.Deployment, st *workloadState) {
	s := d.Status
	st.replicas, st.ready, st.availableReplicas = s.Replicas, s.ReadyReplicas, s.AvailableReplicas
	st.available = st.desired > 0 && s.AvailableReplicas >= st.desired
	st.rolledOut = s.ObservedGeneration >= templateGeneration(d) && s.UpdatedReplicas == st.desired &&
		s.Replicas == st.desired && s.AvailableReplicas == st.desired
	st.otherPods = s.ObservedGeneration < templateGeneration(d) || s.UpdatedReplicas < s.Replicas
}

func statefulSetState(s *appsv1.StatefulSet, st *workloadState) {
	t := s.Status
	st.replicas, st.ready, st.availableReplicas = t.Replicas, t.ReadyReplicas, t.AvailableReplicas
	st.available = st.desired > 0 && t.AvailableReplicas >= st.desired
	st.rolledOut = t.ObservedGeneration >= s.Generation && t.UpdatedReplicas == st.desired &&
		t.CurrentRevision == t.UpdateRevision && t.AvailableReplicas == st.desired
	st.otherPods = t.ObservedGeneration < s.Generation || t.CurrentRevision != t.UpdateRevision
}
