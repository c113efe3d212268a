package controllers

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// TestServiceMonitorFailureDoesNotHoldUpSecretRotation: 97123b5 says a ServiceMonitor that
// cannot be written no longer holds up the pods' changes. A Secret rotation reaches the pods
// only through status.secretVersions, which is computed only when applyOwned returned no error.
func TestServiceMonitorFailureDoesNotHoldUpSecretRotation(t *testing.T) {
	ns := namespace(t)
	crd := serviceMonitorCRD()
	if _, err := envtest.InstallCRDs(testEnv.Config, envtest.CRDInstallOptions{CRDs: []*apiextv1.CustomResourceDefinition{crd}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uninstallCRD(t, crd) })
	foreign := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
	foreign.SetAPIVersion("monitoring.coreos.com/v1")
	foreign.SetKind("ServiceMonitor")
	foreign.SetNamespace(ns)
	foreign.SetName("alice")
	eventually(t, func() error { return k8s.Create(context.Background(), foreign) })

	s := secret(ns, "bob", map[string]string{"secret": "v1"})
	conn := sampleConnector(ns)
	mustCreate(t, s, conn, sampleAccount(ns, "bob", "alice"))
	waitCondition(t, conn, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonReconcileError)
	update(t, s, func(s *corev1.Secret) { s.StringData = map[string]string{"secret": "v2"} })
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(conn), conn); err != nil {
			return err
		}
		if got := conn.Status.SecretVersions["bob"]; got != s.ResourceVersion {
			return fmt.Errorf("secretVersions[bob] = %q, want the rotated Secret's %q: the pods never re-read it", got, s.ResourceVersion)
		}
		return nil
	})
}
