// Command crddoc writes the field reference of docs/user-guide.md: one table per kind, every
// field of spec and status with its type, whether it is required, its documentation and its
// validation, read from the OpenAPI schemas of config/crd/bases. It replaces the text between
// the BEGIN and END markers of the guide and leaves the rest alone.
//
//	go run ./hack/crddoc
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// Markers around the generated part of the guide.
const (
	beginMarker = "<!-- BEGIN GENERATED: go run ./hack/crddoc -->"
	endMarker   = "<!-- END GENERATED -->"
)

// kindOrder is the order of the kinds in the guide: the one users start with first.
var kindOrder = []string{"Connector", "Account", "Route", "SettlementEngine"}

// opaque are fields of Kubernetes types, documented by Kubernetes: listed, not expanded.
var opaque = map[string]string{
	"spec.resources":                 "core/v1 ResourceRequirements",
	"spec.affinity":                  "core/v1 Affinity",
	"spec.tolerations":               "[]core/v1 Toleration",
	"spec.topologySpreadConstraints": "[]core/v1 TopologySpreadConstraint",
	"spec.env":                       "[]core/v1 EnvVar",
	"spec.envFrom":                   "[]core/v1 EnvFromSource",
	"status.conditions":              "[]meta/v1 Condition",
}

func main() {
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	if err := run(*root); err != nil {
		fmt.Fprintln(os.Stderr, "crddoc:", err)
		os.Exit(1)
	}
}

func run(root string) error {
	guide := filepath.Join(root, "docs", "user-guide.md")
	old, err := os.ReadFile(guide)
	if err != nil {
		return err
	}
	tables, err := render(filepath.Join(root, "config", "crd", "bases"))
	if err != nil {
		return err
	}
	updated, err := splice(old, tables)
	if err != nil {
		return fmt.Errorf("%s: %w", guide, err)
	}
	return os.WriteFile(guide, updated, 0o644)
}

// splice replaces what lies between the markers of doc with generated.
func splice(doc, generated []byte) ([]byte, error) {
	b := bytes.Index(doc, []byte(beginMarker))
	e := bytes.Index(doc, []byte(endMarker))
	if b < 0 || e < b {
		return nil, errors.New("no " + beginMarker + " … " + endMarker + " block")
	}
	var out bytes.Buffer
	out.Write(doc[:b+len(beginMarker)])
	out.WriteString("\n")
	out.Write(generated)
	out.Write(doc[e:])
	return out.Bytes(), nil
}

// render returns the Markdown of every kind's tables.
func render(dir string) ([]byte, error) {
	schemas, err := readSchemas(dir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, kind := range kindOrder {
		s, ok := schemas[kind]
		if !ok {
			return nil, fmt.Errorf("no CRD for %s in %s", kind, dir)
		}
		delete(schemas, kind)
		fmt.Fprintf(&b, "\n### %s\n\n%s\n\n", kind, oneLine(s.Description))
		if spec, ok := s.Properties["spec"]; ok && len(spec.XValidations) > 0 {
			b.WriteString("Rules on the whole spec, checked at admission:\n\n")
			for _, r := range spec.XValidations {
				fmt.Fprintf(&b, "- %s\n", r.Message)
			}
			b.WriteString("\n")
		}
		fmt.Fprintln(&b, "| Field | Type | Required | Description |")
		fmt.Fprintln(&b, "|---|---|---|---|")
		for _, part := range []string{"spec", "status"} {
			if p, ok := s.Properties[part]; ok {
				rows(&b, part, p)
			}
		}
	}
	if len(schemas) > 0 {
		return nil, fmt.Errorf("CRDs not placed in kindOrder: %v", keys(schemas))
	}
	b.WriteString("\n")
	return b.Bytes(), nil
}

func readSchemas(dir string) (map[string]apiextv1.JSONSchemaProps, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	out := map[string]apiextv1.JSONSchemaProps{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var crd apiextv1.CustomResourceDefinition
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Storage && v.Schema != nil && v.Schema.OpenAPIV3Schema != nil {
				out[crd.Spec.Names.Kind] = *v.Schema.OpenAPIV3Schema
			}
		}
	}
	return out, nil
}

// rows writes the properties of s, depth first in name order, each under its path.
func rows(b *bytes.Buffer, path string, s apiextv1.JSONSchemaProps) {
	required := map[string]bool{}
	for _, r := range s.Required {
		required[r] = true
	}
	for _, name := range keys(s.Properties) {
		p := s.Properties[name]
		fp := path + "." + name
		req := ""
		if required[name] {
			req = "yes"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", fp, typeOf(fp, p), req, cell(describe(p)))
		if _, ok := opaque[fp]; ok {
			continue
		}
		if p.Type == "object" && len(p.Properties) > 0 {
			rows(b, fp, p)
		}
		if p.Type == "array" && p.Items != nil && p.Items.Schema != nil && len(p.Items.Schema.Properties) > 0 {
			rows(b, fp+"[]", *p.Items.Schema)
		}
	}
}

func typeOf(path string, p apiextv1.JSONSchemaProps) string {
	if t, ok := opaque[path]; ok {
		return t
	}
	switch {
	case p.XIntOrString:
		return "int or string"
	case p.Type == "array" && p.Items != nil && p.Items.Schema != nil:
		return "[]" + p.Items.Schema.Type
	case p.Type == "object" && p.AdditionalProperties != nil && p.AdditionalProperties.Schema != nil:
		return "map[string]" + p.AdditionalProperties.Schema.Type
	}
	return p.Type
}

// describe is the field's documentation followed by its validation.
func describe(p apiextv1.JSONSchemaProps) string {
	parts := []string{oneLine(p.Description)}
	if len(p.Enum) > 0 {
		var vs []string
		for _, e := range p.Enum {
			vs = append(vs, "`"+strings.Trim(string(e.Raw), `"`)+"`")
		}
		parts = append(parts, "One of "+strings.Join(vs, ", ")+".")
	}
	if p.Pattern != "" {
		parts = append(parts, "Pattern `"+p.Pattern+"`.")
	}
	if p.Minimum != nil {
		parts = append(parts, "Minimum "+strconv.FormatFloat(*p.Minimum, 'f', -1, 64)+".")
	}
	if p.Maximum != nil {
		parts = append(parts, "Maximum "+strconv.FormatFloat(*p.Maximum, 'f', -1, 64)+".")
	}
	if p.MaxLength != nil {
		parts = append(parts, "At most "+strconv.FormatInt(*p.MaxLength, 10)+" characters.")
	}
	if p.Default != nil {
		parts = append(parts, "Default `"+string(p.Default.Raw)+"`.")
	}
	for _, r := range p.XValidations {
		parts = append(parts, "Rule: "+r.Message+".")
	}
	return strings.TrimSpace(strings.Join(parts, " "))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// cell escapes what would end a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
