package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// crd is one CustomResourceDefinition of config/crd/bases, parsed and as written.
type crd struct {
	fileName string
	raw      []byte
	def      apiextv1.CustomResourceDefinition
}

// inputs are the parts of config/ the bundle is made of.
type inputs struct {
	crds        []crd
	deployment  appsv1.Deployment
	clusterRole rbacv1.ClusterRole
	leaderRole  rbacv1.Role
	samples     []map[string]any // the custom resources of config/samples, in kustomization order
	image       string           // config/manager's kustomize image, newName:newTag
}

func readInputs(root string) (*inputs, error) {
	in := &inputs{}
	var err error
	if in.crds, err = readCRDs(filepath.Join(root, "config", "crd", "bases")); err != nil {
		return nil, err
	}
	if err := readKind(filepath.Join(root, "config", "manager", "manager.yaml"), "Deployment", &in.deployment); err != nil {
		return nil, err
	}
	if err := readKind(filepath.Join(root, "config", "rbac", "role.yaml"), "ClusterRole", &in.clusterRole); err != nil {
		return nil, err
	}
	if err := readKind(filepath.Join(root, "config", "rbac", "leader_election_role.yaml"), "Role", &in.leaderRole); err != nil {
		return nil, err
	}
	if in.image, err = kustomizeImage(filepath.Join(root, "config", "manager", "kustomization.yaml")); err != nil {
		return nil, err
	}
	if in.samples, err = readSamples(filepath.Join(root, "config", "samples")); err != nil {
		return nil, err
	}
	return in, nil
}

// readCRDs reads every CRD file, sorted by name.
func readCRDs(dir string) ([]crd, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no CRDs in %s: run make manifests", dir)
	}
	sort.Strings(paths)
	var out []crd
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		c := crd{fileName: filepath.Base(p), raw: bytes.TrimPrefix(raw, []byte("---\n"))}
		if err := yaml.UnmarshalStrict(c.raw, &c.def); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if c.def.Kind != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s: a %s, not a CustomResourceDefinition", p, c.def.Kind)
		}
		out = append(out, c)
	}
	return out, nil
}

// documents splits a multi-document YAML file.
func documents(path string) ([][]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var docs [][]byte
	for _, d := range bytes.Split(raw, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs, nil
}

// stripComments drops whole-line comments, to tell empty documents from real ones.
func stripComments(d []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(d), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// readKind decodes the one document of kind in path into out, strictly.
func readKind(path, kind string, out any) error {
	docs, err := documents(path)
	if err != nil {
		return err
	}
	for _, d := range docs {
		var tm struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(d, &tm); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if tm.Kind == kind {
			if err := yaml.UnmarshalStrict(d, out); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s: no %s", path, kind)
}

// kustomization is the part of a kustomization.yaml this program reads.
type kustomization struct {
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

func readKustomization(path string) (kustomization, error) {
	var k kustomization
	raw, err := os.ReadFile(path)
	if err != nil {
		return k, err
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// kustomizeImage is the image config/manager's kustomization gives the manager.
func kustomizeImage(path string) (string, error) {
	k, err := readKustomization(path)
	if err != nil {
		return "", err
	}
	if len(k.Images) != 1 || k.Images[0].NewName == "" || k.Images[0].NewTag == "" {
		return "", fmt.Errorf("%s: want exactly one images entry with newName and newTag", path)
	}
	return k.Images[0].NewName + ":" + k.Images[0].NewTag, nil
}

// readSamples returns the ilp.ilpfleet.dev objects of the samples kustomization, in order.
func readSamples(dir string) ([]map[string]any, error) {
	k, err := readKustomization(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, r := range k.Resources {
		docs, err := documents(filepath.Join(dir, r))
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			var obj map[string]any
			if err := yaml.Unmarshal(d, &obj); err != nil {
				return nil, fmt.Errorf("%s: %w", r, err)
			}
			if api, _ := obj["apiVersion"].(string); strings.HasPrefix(api, "ilp.ilpfleet.dev/") {
				out = append(out, obj)
			}
		}
	}
	return out, nil
}
