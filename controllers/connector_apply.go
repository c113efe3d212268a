package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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
	created           bool        // the workload was created by this reconcile
	changed           []string    // restart inputs that changed in this reconcile: the pods roll
	rollout           rolloutNote // why the current template rolled out: this reconcile's changes, else the workload's note
}

// applyOwned creates or updates every object the Connector owns and returns its workload's state.
func (r *ConnectorReconciler) applyOwned(ctx context.Context, conn *ilpv1.Connector, accounts []ilpv1.Account, secrets []string) (*workloadState, error) {
	steps := []func() error{
		func() error { return r.applyRBAC(ctx, conn, secrets) },
		func() error { return r.applyServices(ctx, conn, accounts) },
		func() error { return r.applyPDB(ctx, conn) },
		func() error { return r.applyServiceMonitor(ctx, conn) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	wl, err := r.applyWorkload(ctx, conn)
	if err != nil {
		return nil, err
	}
	// After the workload: a policy the API server refuses (a bad adminFrom) is reported, but
	// does not hold up the pods' changes.
	return wl, r.applyNetworkPolicy(ctx, conn, accounts)
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

// applyRBAC writes the pods' ServiceAccount, their Role (rewritten as Accounts change the
// Secrets in use) and the RoleBinding between them.
func (r *ConnectorReconciler) applyRBAC(ctx context.Context, conn *ilpv1.Connector, secrets []string) error {
	name := connectorSAName(conn)
	sa := &corev1.ServiceAccount{ObjectMeta: r.meta(conn, name)}
	if _, err := upsert(ctx, r.Client, conn, sa, func() error {
		sa.Labels = mergeLabels(sa.Labels, connectorLabels(conn))
		return nil
	}); err != nil {
		return err
	}
	role := &rbacv1.Role{ObjectMeta: r.meta(conn, name)}
	if _, err := upsert(ctx, r.Client, conn, role, func() error {
		role.Labels = mergeLabels(role.Labels, connectorLabels(conn))
		role.Rules = connectorRules(conn, secrets)
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

// storeSecretVersion is the resourceVersion of the Secret holding the Redis URL, "" without
// one: the store is opened once per process, so a rotated URL (password) needs new pods.
func (r *ConnectorReconciler) storeSecretVersion(ctx context.Context, conn *ilpv1.Connector) (string, error) {
	s := conn.Spec.Store
	if s == nil || s.Type != ilpv1.StoreRedis || s.Redis == nil {
		return "", nil
	}
	name := s.Redis.URLSecretRef.Name
	v, err := secretVersions(ctx, r.Client, conn.Namespace, []string{name})
	return v[name], err
}

// applyWorkload writes the Deployment, or the StatefulSet for the file store, deletes the
// other kind after a store change, and reports which restart inputs changed.
func (r *ConnectorReconciler) applyWorkload(ctx context.Context, conn *ilpv1.Connector) (*workloadState, error) {
	image := conn.Spec.Image
	if image == "" {
		image = r.Options.ConnectorImage
	}
	storeSecret, err := r.storeSecretVersion(ctx, conn)
	if err != nil {
		return nil, err
	}
	inputs := restartInputsOf(conn, image, storeSecret)
	tmpl := connectorPodTemplate(conn, image, inputs)
	dep := &appsv1.Deployment{ObjectMeta: r.meta(conn, conn.Name)}
	sts := &appsv1.StatefulSet{ObjectMeta: r.meta(conn, conn.Name)}
	prev, note, err := r.previousInputs(ctx, conn, dep, sts)
	if err != nil {
		return nil, err
	}
	st := &workloadState{name: conn.Name, image: image, desired: replicasOf(conn)}
	if prev != "" {
		st.changed = inputs.changedSince(prev)
	}
	if len(st.changed) > 0 {
		note.Reason, note.Message = rolloutReason(st.changed)
		note.Inputs = inputs.String()
	}
	if note.Inputs == inputs.String() {
		st.rollout = note
	}
	var op controllerutil.OperationResult
	if storeType(conn) == ilpv1.StoreFile {
		st.kind = "StatefulSet"
		if err := deleteIfOwned(ctx, r.Client, conn, &appsv1.Deployment{ObjectMeta: r.meta(conn, conn.Name)}); err != nil {
			return nil, err
		}
		if op, err = upsert(ctx, r.Client, conn, sts, func() error { setRolloutNote(sts, st.rollout); return mutateStatefulSet(conn, sts, tmpl) }); err != nil {
			return nil, err
		}
		statefulSetState(sts, st)
	} else {
		st.kind = "Deployment"
		if err := deleteIfOwned(ctx, r.Client, conn, &appsv1.StatefulSet{ObjectMeta: r.meta(conn, conn.Name)}); err != nil {
			return nil, err
		}
		if op, err = upsert(ctx, r.Client, conn, dep, func() error { setRolloutNote(dep, st.rollout); return mutateDeployment(conn, dep, tmpl) }); err != nil {
			return nil, err
		}
		deploymentState(dep, st)
	}
	st.created = prev == "" && op == controllerutil.OperationResultCreated
	return st, nil
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
	a := o.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[ilpv1.AnnotationRolloutReason] = string(b)
	o.SetAnnotations(a)
}

// previousInputs is the restart-inputs annotation of the existing workload of either kind, and
// its rollout note (zero when absent or unreadable).
func (r *ConnectorReconciler) previousInputs(ctx context.Context, conn *ilpv1.Connector, dep *appsv1.Deployment, sts *appsv1.StatefulSet) (string, rolloutNote, error) {
	for _, o := range []struct {
		obj  client.Object
		tmpl *corev1.PodTemplateSpec
	}{{dep, &dep.Spec.Template}, {sts, &sts.Spec.Template}} {
		err := r.Get(ctx, client.ObjectKeyFromObject(o.obj), o.obj)
		if client.IgnoreNotFound(err) != nil {
			return "", rolloutNote{}, err
		}
		if err == nil && metav1.IsControlledBy(o.obj, conn) {
			var n rolloutNote
			_ = json.Unmarshal([]byte(o.obj.GetAnnotations()[ilpv1.AnnotationRolloutReason]), &n)
			return o.tmpl.Annotations[ilpv1.AnnotationRestartInputs], n, nil
		}
	}
	return "", rolloutNote{}, nil
}

func mutateDeployment(conn *ilpv1.Connector, dep *appsv1.Deployment, tmpl corev1.PodTemplateSpec) error {
	dep.Labels = mergeLabels(dep.Labels, connectorLabels(conn))
	dep.Spec.Replicas = ptr.To(replicasOf(conn))
	dep.Spec.Selector = &metav1.LabelSelector{MatchLabels: selectorLabels(conn)}
	dep.Spec.Template = tmpl
	return nil
}

func mutateStatefulSet(conn *ilpv1.Connector, sts *appsv1.StatefulSet, tmpl corev1.PodTemplateSpec) error {
	sts.Labels = mergeLabels(sts.Labels, connectorLabels(conn))
	sts.Spec.Replicas = ptr.To(replicasOf(conn))
	sts.Spec.Template = tmpl
	if sts.CreationTimestamp.IsZero() {
		// Selector, service name and claim templates are immutable: set them once.
		claim, err := fileStoreClaim(conn)
		if err != nil {
			return err
		}
		claim.Name = dataVolume
		sts.Spec.Selector = &metav1.LabelSelector{MatchLabels: selectorLabels(conn)}
		sts.Spec.ServiceName = adminServiceName(conn)
		sts.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{claim}
	}
	return nil
}

func deploymentState(d *appsv1.Deployment, st *workloadState) {
	s := d.Status
	st.replicas, st.ready, st.availableReplicas = s.Replicas, s.ReadyReplicas, s.AvailableReplicas
	st.available = st.desired > 0 && s.AvailableReplicas >= st.desired
	st.rolledOut = s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == st.desired &&
		s.Replicas == st.desired && s.AvailableReplicas == st.desired
}

func statefulSetState(s *appsv1.StatefulSet, st *workloadState) {
	t := s.Status
	st.replicas, st.ready, st.availableReplicas = t.Replicas, t.ReadyReplicas, t.AvailableReplicas
	st.available = st.desired > 0 && t.AvailableReplicas >= st.desired
	st.rolledOut = t.ObservedGeneration >= s.Generation && t.UpdatedReplicas == st.desired &&
		t.CurrentRevision == t.UpdateRevision && t.AvailableReplicas == st.desired
}
