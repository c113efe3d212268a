package controllers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

// TestNameRulesSpareExistingObjects: Connectors admitted before the name rules (53
// characters, which a Deployment fits; a dot, which never reconciled) stay writable once the
// rules are in the CRD — their status, their labels, their finalizers — or they could not even
// be deleted. A control plane of its own: the CRD is installed without the rules first.
func TestNameRulesSpareExistingObjects(t *testing.T) {
	ctx := context.Background()
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	s := scheme.New()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	crd := connectorCRD(t)
	withRules := crd.Spec.DeepCopy()
	root := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	rules := root.XValidations
	root.XValidations = nil
	for _, r := range rules {
		if !strings.Contains(r.Rule, "metadata.name") {
			root.XValidations = append(root.XValidations, r)
		}
	}
	if len(root.XValidations) == len(rules) {
		t.Fatal("no name rule found in the Connector CRD")
	}
	if err := cl.Create(ctx, crd); err != nil {
		t.Fatal(err)
	}
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "up"}}); err != nil {
		t.Fatal(err)
	}
	names := []string{strings.Repeat("a", 53), "acme.eu"}
	for _, name := range names {
		c := sampleConnector("up")
		c.Name = name
		eventually(t, func() error { return cl.Create(ctx, c) }) // once the CRD is served
	}

	if err := cl.Get(ctx, client.ObjectKeyFromObject(crd), crd); err != nil {
		t.Fatal(err)
	}
	crd.Spec = *withRules
	if err := cl.Update(ctx, crd); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { // the rules are in force for new objects
		c := sampleConnector("up")
		c.Name = strings.Repeat("b", 53)
		if err := cl.Create(ctx, c); err == nil {
			_ = cl.Delete(ctx, c)
			return errors.New("a 53-character name still admitted")
		}
		return nil
	})
	for _, name := range names {
		var c ilpv1.Connector
		if err := cl.Get(ctx, client.ObjectKey{Namespace: "up", Name: name}, &c); err != nil {
			t.Fatal(err)
		}
		orig := c.DeepCopy()
		c.Status.Accounts = 3
		if err := cl.Status().Patch(ctx, &c, client.MergeFrom(orig)); err != nil {
			t.Errorf("%s: status write refused: %v", name, err)
		}
		orig = c.DeepCopy()
		c.Labels = map[string]string{"team": "x"}
		c.Finalizers = []string{"example.com/keep"}
		if err := cl.Patch(ctx, &c, client.MergeFrom(orig)); err != nil {
			t.Errorf("%s: label and finalizer update refused: %v", name, err)
		}
	}
}

// connectorCRD is the Connector CRD of config/crd/bases.
func connectorCRD(t *testing.T) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.Root(), "config", "crd", "bases", "ilp.ilpfleet.dev_connectors.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := utilyaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	return &crd
}
