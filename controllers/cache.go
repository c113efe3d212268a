package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LabelManagedBy marks every object the operator creates, with the value ManagedBy.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "ilpfleet-operator"
)

// CacheOptions scope the manager's cache of the kinds the operator owns to the objects it
// made. Without them it would hold every Deployment, Service, ServiceAccount, Role … of the
// whole cluster in memory, which on a shared cluster dwarfs the fleet. An object of the same
// name that someone else made is then invisible to the cache: creating ours fails with
// AlreadyExists, which upsert turns into the same "not owned" error as an unlabeled object.
func CacheOptions() cache.Options {
	sel := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})}
	by := map[client.Object]cache.ByObject{}
	for _, o := range ownedKinds() {
		by[o] = sel
	}
	// Connector and SettlementEngine pods, which carry the label from their template: their
	// owner reports why they do not come up, and a Connector drops the status of pods gone
	// (connector_pods.go).
	by[&corev1.Pod{}] = sel
	// Of the cluster's CRDs, only prometheus-operator's ServiceMonitor one, metadata only.
	by[serviceMonitorCRDMeta()] = cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", serviceMonitorCRDName)}
	return cache.Options{ByObject: by}
}

// ownedKinds are the kinds the reconcilers create and watch with Owns.
func ownedKinds() []client.Object {
	return []client.Object{&appsv1.Deployment{}, &appsv1.StatefulSet{}, &corev1.Service{},
		&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}, &policyv1.PodDisruptionBudget{},
		&networkingv1.NetworkPolicy{}}
}
