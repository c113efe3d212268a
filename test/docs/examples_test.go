package docs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/ilpfleet/ilpfleet/internal/testenv"
)

// skipped are the YAML examples that are neither objects of the API server nor connector
// config files, found by their file and a string unique to them, with why they are not tested.
// An entry that matches nothing fails the test, so that the list cannot outlive its examples.
var skipped = []struct{ file, contains, why string }{
	{"docs/user-guide.md", "# payments/kustomization.yaml", "a kustomization file: kustomize reads it, not the API server (its patches are JSON patches of the objects above, which are tested)"},
	{"config/argocd/README.md", "components:", "a kustomization file of the user's Argo CD install: kustomize reads it, not the API server"},
}

// foreignGroups are API groups of other projects that examples use; the test control plane
// has no CRD for them, so their objects are skipped, with the reason.
var foreignGroups = map[string]string{
	"argoproj.io":           "Argo CD's Application: the test control plane has no Argo CD CRDs",
	"cert-manager.io":       "cert-manager's Certificate: the test control plane has no cert-manager CRDs",
	"monitoring.coreos.com": "prometheus-operator's PodMonitor: the test control plane has no prometheus-operator CRDs",
}

// yamlDoc is one YAML document of an example.
type yamlDoc struct {
	where  string // file:line, and the document's index when a block has several
	marker string // the docs-test directive of its block
	obj    map[string]any
}

// directive is a parsed docs-test directive.
type directive struct {
	refused  string // with "refused": the part of the error the example must get
	fragment string // with "fragment of": the kind the fragment belongs to
}

var (
	refusedRe  = regexp.MustCompile(`^refused\s+"(.*)"$`)
	fragmentRe = regexp.MustCompile(`^fragment of\s+([A-Za-z]+)$`)
)

// parseDirective reads a block's directive; an unknown one is an error, so that a typo in a
// doc does not silently turn a refused example into an untested one.
func parseDirective(s string) (directive, error) {
	switch {
	case s == "":
		return directive{}, nil
	case refusedRe.MatchString(s):
		return directive{refused: refusedRe.FindStringSubmatch(s)[1]}, nil
	case fragmentRe.MatchString(s):
		return directive{fragment: fragmentRe.FindStringSubmatch(s)[1]}, nil
	}
	return directive{}, fmt.Errorf("unknown docs-test directive %q: want refused \"<error>\" or fragment of <Kind>", s)
}

// yamlExamples returns every YAML document of the doc files' yaml blocks and of the manifest
// files, except the skipped ones.
func yamlExamples(t *testing.T) []yamlDoc {
	t.Helper()
	used := make([]bool, len(skipped))
	var out []yamlDoc
	add := func(file, where, marker, text string) {
		for i, s := range skipped {
			if s.file == file && strings.Contains(text, s.contains) {
				used[i] = true
				t.Logf("%s: skipped: %s", where, s.why)
				return
			}
		}
		out = append(out, splitYAML(t, where, marker, text)...)
	}
	for _, f := range docFiles {
		for _, b := range readDoc(t, f).blocks {
			if b.lang == "yaml" || b.lang == "yml" {
				add(f, b.String(), b.marker, b.text)
			}
		}
	}
	for _, f := range manifestFiles(t) {
		raw, err := os.ReadFile(filepath.Join(testenv.Root(), f))
		if err != nil {
			t.Fatal(err)
		}
		add(f, f, "", string(raw))
	}
	for i, s := range skipped {
		if !used[i] {
			t.Errorf("skipped entry %q of %s matches no example: remove it", s.contains, s.file)
		}
	}
	return out
}

// manifestFiles lists the manifest files, relative to the repository root, without the
// kustomization files (kustomize's input, not objects).
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, g := range manifestGlobs {
		paths, err := filepath.Glob(filepath.Join(testenv.Root(), g))
		if err != nil || len(paths) == 0 {
			t.Fatalf("%s matches no file (%v): fix manifestGlobs", g, err)
		}
		for _, p := range paths {
			if filepath.Base(p) == "kustomization.yaml" {
				continue
			}
			rel, _ := filepath.Rel(testenv.Root(), p)
			out = append(out, rel)
		}
	}
	return out
}

// splitYAML splits multi-document YAML and decodes each document strictly (a key given twice
// is an error: the API server would take only one of them).
func splitYAML(t *testing.T, where, marker, text string) []yamlDoc {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	var out []yamlDoc
	for i := 0; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		var obj map[string]any
		if err := yaml.UnmarshalStrict(raw, &obj); err != nil {
			t.Errorf("%s (document %d): not valid YAML: %v", where, i+1, err)
			continue
		}
		w := where
		if i > 0 {
			w = fmt.Sprintf("%s (document %d)", where, i+1)
		}
		out = append(out, yamlDoc{where: w, marker: marker, obj: obj})
	}
}

// stripComments drops the comment lines of a YAML document, to tell an empty one.
func stripComments(raw []byte) []byte {
	var b bytes.Buffer
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

// isObject tells a Kubernetes object (apiVersion and kind) from a config file or a fragment.
func (d yamlDoc) isObject() bool {
	_, a := d.obj["apiVersion"]
	_, k := d.obj["kind"]
	return a && k
}

func TestParseDirective(t *testing.T) {
	cases := []struct {
		in      string
		want    directive
		wantErr bool
	}{
		{"", directive{}, false},
		{`refused "must not"`, directive{refused: "must not"}, false},
		{"fragment of Connector", directive{fragment: "Connector"}, false},
		{"refuse it", directive{}, true},
	}
	for _, tc := range cases {
		got, err := parseDirective(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("parseDirective(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
