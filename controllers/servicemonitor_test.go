package controllers

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// TestServiceMonitor installs the ServiceMonitor CRD after a Connector exists, checks the
// object the operator then writes for it (owned, selecting the admin Service, scraping its
// metrics port), removes the CRD again and checks that the Connector still reconciles: an
// operator that learned the kind must not fail every Connector once prometheus-operator is
// uninstalled.
func TestServiceMonitor(t *testing.T) {
	ctx := context.Background()
	sch := runtime.NewScheme()
	if err := apiextv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	ext, err := client.New(testEnv.Config, client.Options{Scheme: sch})
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t)
	conn := sampleConnector(ns)
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), conn, sampleAccount(ns, "bob", "alice"))
	peer := waitPeerPorts(t, ns, []string{"btp-7768:7768"}) // the account's listener makes it

	crd := serviceMonitorCRD()
	if err := ext.Create(ctx, crd); err != nil {
		t.Fatal(err)
	}
	removed := false
	removeCRD := func() {
		if err := ext.Delete(ctx, crd); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		eventually(t, func() error {
			err := ext.Get(ctx, client.ObjectKeyFromObject(crd), &apiextv1.CustomResourceDefinition{})
			return checkf(apierrors.IsNotFound(err), fmt.Sprintf("CRD still there: %v", err))
		})
		removed = true
	}
	t.Cleanup(func() {
		if !removed {
			removeCRD()
		}
	})
	eventually(t, func() error {
		got := &apiextv1.CustomResourceDefinition{}
		if err := ext.Get(ctx, client.ObjectKeyFromObject(crd), got); err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("CRD not established: %+v", got.Status.Conditions)
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
	for k, v := range sel {
		if admin.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s; the admin Service has %q (labels %v)", k, v, admin.Labels[k], admin.Labels)
		}
	}
	if matches(sel, peer.Labels) {
		t.Errorf("ServiceMonitor also selects the peer Service (labels %v)", peer.Labels)
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != "admin" || eps[0].(map[string]any)["path"] != "/metrics" {
		t.Errorf("endpoints = %v, want the admin port's /metrics", eps)
	}
	if got := svcPorts(admin); len(got) == 0 || got[0] != fmt.Sprintf("admin:%d", DefaultAdminPort) {
		t.Errorf("admin Service ports %v: the endpoint names a port it does not have", got)
	}

	removeCRD()
	update(t, conn, func(c *ilpv1.Connector) { c.Spec.Rates.Spread = "0.003" })
	eventually(t, func() error {
		got := get(t, ns, "alice", &ilpv1.Connector{})
		for _, c := range got.Status.Conditions {
			if c.Type == ilpv1.ConditionReady && c.ObservedGeneration == got.Generation {
				return checkf(c.Reason != ReasonReconcileError, "Ready: "+c.Reason+": "+c.Message)
			}
		}
		return fmt.Errorf("no Ready condition for generation %d: %+v", got.Generation, got.Status.Conditions)
	})
}

// matches reports whether labels has every key and value of sel.
func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
