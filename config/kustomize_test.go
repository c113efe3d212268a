// Package config holds the kustomize tree; this test builds every kustomization in it.
package config

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// TestKustomizationsBuild runs `kubectl kustomize` (kustomize built into kubectl) on every
// kustomization and checks the kinds each one must produce.
func TestKustomizationsBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is needed to build the kustomizations (its kustomize): install kubectl")
	}
	cases := []struct {
		dir  string
		want []string // kinds that must appear
	}{
		{"crd", []string{"CustomResourceDefinition"}},
		{"rbac", []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}},
		{"manager", []string{"Namespace", "Deployment"}},
		{"samples", []string{"Connector", "Account", "Route", "SettlementEngine", "Secret"}},
		{"default", []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "Deployment"}},
		{"prometheus", []string{"Deployment", "Service", "ServiceMonitor", "PrometheusRule"}},
		{"grafana", []string{"ConfigMap"}},
	}
	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", tc.dir).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", tc.dir, err, out)
			}
			kinds := decodeKinds(t, out)
			for _, k := range tc.want {
				if kinds[k] == 0 {
					t.Errorf("kustomize %s: no %s in the output (kinds: %v)", tc.dir, k, kinds)
				}
			}
		})
	}
}

func decodeKinds(t *testing.T, data []byte) map[string]int {
	t.Helper()
	kinds := map[string]int{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj unstructured.Unstructured
		err := dec.Decode(&obj.Object)
		if errors.Is(err, io.EOF) {
			return kinds
		}
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if obj.GetKind() == "" || obj.GetName() == "" {
			t.Fatalf("an object without kind or name: %s", strings.TrimSpace(string(must(obj.MarshalJSON()))))
		}
		kinds[obj.GetKind()]++
	}
}

func must(b []byte, _ error) []byte { return b }
