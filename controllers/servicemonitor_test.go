package controllers

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// serviceMonitorCRD is prometheus-operator's ServiceMonitor CRD, reduced to what the API server
// needs to serve the kind (the real one has a full schema; the operator writes selector and
// endpoints only).
func serviceMonitorCRD() *apiextv1.CustomResourceDefinition {
	preserve := true
	return &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "servicemonitors.monitoring.coreos.com"},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com",
			Names: apiextv1.CustomResourceDefinitionNames{Plural: "servicemonitors", Singular: "servicemonitor",
				Kind: "ServiceMonitor", ListKind: "ServiceMonitorList"},
			Scope: apiextv1.NamespaceScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: &preserve}}}},
		},
	}
}

// uninstallCRD removes crd and waits until it is gone: a test that installs it again while
// its deletion is under way waits in vain for it to be served.
func uninstallCRD(t *testing.T, crd *apiextv1.CustomResourceDefinition) {
	t.Helper()
	if err := envtest.UninstallCRDs(testEnv.Config, envtest.CRDInstallOptions{CRDs: []*apiextv1.CustomResourceDefinition{crd}}); err != nil {
		t.Fatal(err)
	}
	sch := runtime.NewScheme()
	_ = apiextv1.AddToScheme(sch)
	ext, err := client.New(testEnv.Config, client.Options{Scheme: sch}) // k8s's scheme has no CRD type
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		err := ext.Get(context.Background(), client.ObjectKeyFromObject(crd), &apiextv1.CustomResourceDefinition{})
		return checkf(apierrors.IsNotFound(err), fmt.Sprintf("CRD still there: %v", err))
	})
}

// TestServiceMonitor installs the ServiceMonitor CRD after a Connector exists, checks the
// object the operator then writes for it (owned, selecting the admin Service, scraping its
// metrics port), removes the CRD again and checks that the Connector still reconciles: an
// operator that learned the kind must not fail every Connector once prometheus-operator is
// uninstalled.
func TestServiceMonitor(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), conn, sampleAccount(ns, "bob", "alice"))
	peer := waitPeerPorts(t, ns, []string{"btp-7768:7768"}) // the account's listener makes it

	crd := serviceMonitorCRD()
	if _, err := envtest.InstallCRDs(testEnv.Config, envtest.CRDInstallOptions{CRDs: []*apiextv1.CustomResourceDefinition{crd}}); err != nil {
		t.Fatal(err)
	}
	removed := false
	removeCRD := func() {
		uninstallCRD(t, crd)
		removed = true
	}
	t.Cleanup(func() {
		if !removed {
			removeCRD()
		}
	})

	sm := &unstructured.Unstructured{}
	sm.SetGroupVersionKind(schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"})
	eventually(t, func() error { return k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "alice"}, sm) })
	assertOwned(t, sm, "Connector", "alice")
	admin := get(t, ns, "alice-admin", &corev1.Service{})
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if len(sel) == 0 {
		t.Fatalf("ServiceMonitor selects nothing: %v", sm.Object["spec"])
	}
	selects := func(svc *corev1.Service) bool { return labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels)) }
	if !selects(admin) {
		t.Errorf("ServiceMonitor selects %v; the admin Service has labels %v", sel, admin.Labels)
	}
	if selects(peer) {
		t.Errorf("ServiceMonitor also selects the peer Service (labels %v)", peer.Labels)
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != "admin" || eps[0].(map[string]any)["path"] != "/metrics" {
		t.Errorf("endpoints = %v, want the admin port's /metrics", eps)
	}
	if got := svcPorts(admin); len(got) == 0 || got[0] != fmt.Sprintf("admin:%d", ilpv1.DefaultAdminPort) {
		t.Errorf("admin Service ports %v: the endpoint names a port it does not have", got)
	}

	// A ServiceMonitor the operator cannot write (one of the name it would use, not its own) is
	// reported, and does not hold up the workload.
	foreign := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
	foreign.SetGroupVersionKind(sm.GroupVersionKind())
	foreign.SetNamespace(ns)
	foreign.SetName("carol")
	carol := sampleConnector(ns)
	carol.Name = "carol"
	mustCreate(t, foreign, carol)
	get(t, ns, "carol", &appsv1.Deployment{})
	waitCondition(t, carol, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonReconcileError)

	removeCRD()
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Rates.Spread = "0.003" })
	// Reconciled at the new generation, and not failed: no kubelet runs the pods here.
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonWorkloadUnavailable)
}
