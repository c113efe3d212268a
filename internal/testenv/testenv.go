// Package testenv starts the real test control plane (kube-apiserver and etcd built by
// hack/envtest-assets.sh) with the project's CRDs installed. Tests share one per package.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Root is the repository root, found from this file's location.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Start starts a control plane with config/crd/bases installed. It fails, rather than skips,
// when the binaries are missing: `make test` builds them, and a test that silently skipped
// would hide a broken control plane.
func Start() (*envtest.Environment, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(Root(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	// Namespaces are never deleted here (no namespace controller, no garbage collector), so
	// every Service a test package makes keeps its ClusterIP for the whole binary: envtest's
	// default /24 (254 addresses) ran out in the third round of `-count=3 ./controllers/`,
	// each round making about 120 Services.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	if _, err := env.Start(); err != nil {
		return nil, fmt.Errorf("start control plane from %s: %w", os.Getenv("KUBEBUILDER_ASSETS"), err)
	}
	return env, nil
}
