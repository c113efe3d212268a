// Command bundle writes the OLM bundle of ilpfleet (bundle/manifests, bundle/metadata,
// bundle/tests/scorecard and bundle/bundle.Dockerfile) from the kustomize sources in config/:
// the CRDs, the manager's Deployment and RBAC, and the samples as alm-examples. It replaces
// `operator-sdk generate bundle`, which cannot be installed where ilpfleet is built, and
// produces the registry+v1 layout that operator-sdk and opm read.
//
//	go run ./hack/bundle [--version 0.1.0] [--image ghcr.io/ilpfleet/ilpfleet:v0.1.0]
//
// The output is deterministic (sorted keys, no timestamps), so that a test can regenerate it
// and compare it with the checked-in bundle.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Package and channel of the bundle.
const (
	packageName    = "ilpfleet"
	defaultChannel = "alpha"
	defaultVersion = "0.1.0"
	// scorecardImage runs the scorecard tests; the version operator-sdk's own bundles pin.
	scorecardImage = "quay.io/operator-framework/scorecard-test:v1.42.3"
)

// options are what the bundle depends on besides the files under config/.
type options struct {
	root    string // repository root
	version string // semantic version of the CSV
	image   string // operator (and default connector) image; empty: config/manager's kustomize image
}

// generatedPaths are the parts of bundle/ this program owns; everything else (README.md) is
// left alone, and stale files below these directories are removed.
var generatedPaths = []string{"manifests", "metadata", "tests", "bundle.Dockerfile"}

func main() {
	var o options
	out := flag.String("out", "bundle", "directory to write the bundle to")
	flag.StringVar(&o.root, "root", ".", "repository root (holds config/)")
	flag.StringVar(&o.version, "version", defaultVersion, "semantic version of the bundle")
	flag.StringVar(&o.image, "image", "", "operator image (default: the image of config/manager/kustomization.yaml)")
	flag.Parse()
	files, err := generate(o)
	if err == nil {
		err = write(*out, files)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundle:", err)
		os.Exit(1)
	}
	fmt.Printf("bundle %s written to %s (%d files)\n", o.version, *out, len(files))
}

// write replaces the generated parts of dir with files (paths relative to dir).
func write(dir string, files map[string][]byte) error {
	for _, p := range generatedPaths {
		if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
			return err
		}
	}
	for name, data := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// generate renders every file of the bundle, keyed by its slash-separated path in the bundle.
func generate(o options) (map[string][]byte, error) {
	if o.version == "" || strings.HasPrefix(o.version, "v") {
		return nil, fmt.Errorf("--version %q: want a semantic version without v, e.g. 0.1.0", o.version)
	}
	in, err := readInputs(o.root)
	if err != nil {
		return nil, err
	}
	if o.image == "" {
		o.image = in.image
	}
	files := map[string][]byte{}
	for _, c := range in.crds {
		files["manifests/"+c.fileName] = c.raw
	}
	csv, err := renderCSV(o, in)
	if err != nil {
		return nil, err
	}
	files["manifests/"+packageName+".clusterserviceversion.yaml"] = csv
	files["metadata/annotations.yaml"] = annotationsYAML()
	files["tests/scorecard/config.yaml"] = scorecardYAML()
	files["bundle.Dockerfile"] = dockerfile()
	return files, nil
}
