package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const root = "../.."

// checkedInCSV reads the ClusterServiceVersion of bundle/.
func checkedInCSV(t *testing.T) csv {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "bundle", "manifests", packageName+".clusterserviceversion.yaml"))
	if err != nil {
		t.Fatalf("no checked-in bundle: %v (run make bundle)", err)
	}
	var c csv
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// checkedInFiles reads the generated parts of bundle/, keyed like generate's result.
func checkedInFiles(t *testing.T) map[string][]byte {
	t.Helper()
	dir := filepath.Join(root, "bundle")
	files := map[string][]byte{}
	for _, p := range generatedPaths {
		err := filepath.WalkDir(filepath.Join(dir, p), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files[filepath.ToSlash(rel)], err = os.ReadFile(path)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// TestBundleIsCurrent regenerates the bundle with the version and image recorded in the
// checked-in CSV and fails on any difference: a CRD, RBAC, manager or sample change that was
// not followed by `make bundle`.
func TestBundleIsCurrent(t *testing.T) {
	old := checkedInCSV(t)
	want, err := generate(options{root: root, version: old.Spec.Version, image: old.Metadata.Annotations["containerImage"]})
	if err != nil {
		t.Fatal(err)
	}
	got := checkedInFiles(t)
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case got[n] == nil:
			t.Errorf("bundle/%s is missing", n)
		case want[n] == nil:
			t.Errorf("bundle/%s is not generated any more", n)
		case string(got[n]) != string(want[n]):
			t.Errorf("bundle/%s is stale", n)
		}
	}
	if t.Failed() {
		t.Log("run `make bundle BUNDLE_VERSION=" + old.Spec.Version + "` and commit bundle/")
	}
}

// TestCSVDescribesEveryCRD checks the links inside the generated CSV: every CRD of the bundle
// is owned with its storage version, has an alm-example, and the permissions are config/rbac's.
func TestCSVDescribesEveryCRD(t *testing.T) {
	files, err := generate(options{root: root, version: "1.2.3", image: "example.org/ilpfleet:v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	var c csv
	if err := yaml.UnmarshalStrict(files["manifests/"+packageName+".clusterserviceversion.yaml"], &c); err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Name != "ilpfleet.v1.2.3" || c.Spec.Version != "1.2.3" {
		t.Errorf("name %q version %q, want ilpfleet.v1.2.3 and 1.2.3", c.Metadata.Name, c.Spec.Version)
	}
	var examples []map[string]any
	if err := json.Unmarshal([]byte(c.Metadata.Annotations["alm-examples"]), &examples); err != nil {
		t.Fatalf("alm-examples: %v", err)
	}
	exampleKinds := map[string]bool{}
	for _, e := range examples {
		exampleKinds[e["kind"].(string)] = true
	}
	in, err := readInputs(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Spec.CustomResourceDefinitions.Owned) != len(in.crds) {
		t.Fatalf("%d owned CRDs, want %d", len(c.Spec.CustomResourceDefinitions.Owned), len(in.crds))
	}
	for i, o := range c.Spec.CustomResourceDefinitions.Owned {
		def := in.crds[i].def
		if files["manifests/"+in.crds[i].fileName] == nil {
			t.Errorf("CRD %s is not in manifests/", def.Name)
		}
		if o.Name != def.Name || o.Kind != def.Spec.Names.Kind || o.Version != "v1alpha1" {
			t.Errorf("owned[%d] = %s %s %s, want %s %s v1alpha1", i, o.Name, o.Kind, o.Version, def.Name, def.Spec.Names.Kind)
		}
		if !exampleKinds[o.Kind] {
			t.Errorf("no alm-example for %s: add one to config/samples", o.Kind)
		}
		if o.Description == "" || len(o.SpecDescriptors) == 0 || len(o.StatusDescriptors) == 0 {
			t.Errorf("%s: description or descriptors missing", o.Kind)
		}
	}
	p := c.Spec.Install.Spec
	if !reflect.DeepEqual(p.ClusterPermissions[0].Rules, in.clusterRole.Rules) || !reflect.DeepEqual(p.Permissions[0].Rules, in.leaderRole.Rules) {
		t.Error("CSV permissions differ from config/rbac")
	}
	dep := p.Deployments[0]
	ctr := dep.Spec.Template.Spec.Containers[0]
	if ctr.Image != "example.org/ilpfleet:v1.2.3" || c.Metadata.Annotations["containerImage"] != ctr.Image {
		t.Errorf("manager image %q, containerImage %q: want the --image", ctr.Image, c.Metadata.Annotations["containerImage"])
	}
	for _, e := range ctr.Env {
		if e.Name == "ILPFLEET_IMAGE" && e.Value != ctr.Image {
			t.Errorf("ILPFLEET_IMAGE = %q, want the manager's image", e.Value)
		}
	}
	if sa := dep.Spec.Template.Spec.ServiceAccountName; sa != p.ClusterPermissions[0].ServiceAccountName || sa != p.Permissions[0].ServiceAccountName {
		t.Errorf("deployment runs as %q, permissions are for %q and %q", sa, p.ClusterPermissions[0].ServiceAccountName, p.Permissions[0].ServiceAccountName)
	}
}

func TestMetadataMatchesDockerfile(t *testing.T) {
	files, err := generate(options{root: root, version: defaultVersion})
	if err != nil {
		t.Fatal(err)
	}
	var ann struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.UnmarshalStrict(files["metadata/annotations.yaml"], &ann); err != nil {
		t.Fatal(err)
	}
	df := string(files["bundle.Dockerfile"])
	for k, v := range ann.Annotations {
		if !strings.Contains(df, "LABEL "+k+"="+v+"\n") {
			t.Errorf("bundle.Dockerfile lacks LABEL %s=%s", k, v)
		}
	}
	if len(ann.Annotations) != len(bundleLabels) {
		t.Errorf("%d annotations, want %d", len(ann.Annotations), len(bundleLabels))
	}
}

func TestBadVersion(t *testing.T) {
	for _, v := range []string{"", "v0.1.0"} {
		if _, err := generate(options{root: root, version: v}); err == nil {
			t.Errorf("version %q accepted", v)
		}
	}
}

func TestWords(t *testing.T) {
	for in, want := range map[string]string{
		"SettlementEngine": "Settlement Engine", "ilpAddress": "ILP Address", "maxPacketAmount": "Max Packet Amount",
		"url": "URL", "ILPAddressSegment": "ILP Address Segment", "replicas": "Replicas",
	} {
		if got := words(in); got != want {
			t.Errorf("words(%q) = %q, want %q", in, got, want)
		}
	}
}
