// Package docs tests the examples of the documentation, so that they cannot silently become
// untrue: every Kubernetes object of README.md, docs/*.md and the example manifests
// (config/samples, config/argocd) is created with a server-side dry run against a real
// kube-apiserver with the CRDs installed; every CONNECTOR_* example (variables, account
// objects, config files) goes through the runtime's config loader and the connector's build of
// its accounts; every `ilpfleet` command line uses flags that exist.
//
// Conventions in the Markdown (HTML comments, which readers of the rendered page do not see),
// on the last non-blank line before a fenced block:
//
//	<!-- docs-test: refused "<part of the error>" -->   the example must be refused, with that error
//	<!-- docs-test: fragment of <Kind> -->              a partial object: its top-level keys
//	                                                     (spec's and metadata's one level down)
//	                                                     replace those of a minimal <Kind>
//
// A YAML document without apiVersion and kind and with no directive is a connector config
// file. Blocks that are none of these are skipped only through the list skipped, with a reason.
package docs

import (
	"context"
	"fmt"
	"os"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

// k8s is an admin client of the test control plane.
var k8s client.Client

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	env, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if k8s, err = client.New(env.Config, client.Options{Scheme: scheme.New()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// docFiles are the Markdown files whose examples are tested.
var docFiles = []string{
	"README.md",
	"docs/configuration.md",
	"docs/user-guide.md",
	"docs/operations.md",
	"config/argocd/README.md", // the user guide sends readers there to install the health checks
}

// manifestGlobs are the example manifests the docs point users to.
var manifestGlobs = []string{
	"config/samples/*.yaml",
	"config/argocd/argocd-cm.yaml",
	"config/argocd/health/ilp.ilpfleet.dev/*/testdata/*.yaml", // full objects, as a cluster holds them
}

var ctx = context.Background()
