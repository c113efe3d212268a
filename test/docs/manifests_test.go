package docs

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// minimal are the smallest valid objects of the project's kinds, which fragments complete.
var minimal = map[string]string{
	"Connector": `{"apiVersion":"ilp.ilpfleet.dev/v1alpha1","kind":"Connector","metadata":{"name":"docs"},
		"spec":{"ilpAddress":"test.docs"}}`,
	"Account": `{"apiVersion":"ilp.ilpfleet.dev/v1alpha1","kind":"Account","metadata":{"name":"docs"},
		"spec":{"connectorRef":"docs","relation":"peer","assetCode":"USD","assetScale":9,
		"link":{"btpClient":{"url":"btp+ws://peer:7768","tokenSecretRef":{"name":"docs","key":"token"}}}}}`,
	"Route": `{"apiVersion":"ilp.ilpfleet.dev/v1alpha1","kind":"Route","metadata":{"name":"docs"},
		"spec":{"connectorRef":"docs","targetPrefix":"test.peer","nextHop":"docs"}}`,
	"SettlementEngine": `{"apiVersion":"ilp.ilpfleet.dev/v1alpha1","kind":"SettlementEngine","metadata":{"name":"docs"},
		"spec":{"assetCode":"USD","assetScale":9,"image":"ilpfleet:docs","port":3000}}`,
}

// TestManifestsAdmitted creates every object of the examples with a server-side dry run and
// strict field validation (kubectl's default: an unknown field is refused), in a namespace of
// its own, and expects what the doc says: admitted, or refused with the documented error.
func TestManifestsAdmitted(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "docs-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range yamlExamples(t) {
		dir, err := parseDirective(d.marker)
		if err != nil {
			t.Errorf("%s: %v", d.where, err)
			continue
		}
		if !d.isObject() && dir.fragment == "" {
			continue // a connector config file: TestConnectorConfigFiles
		}
		obj, err := object(d, dir)
		if err != nil {
			t.Errorf("%s: %v", d.where, err)
			continue
		}
		if why, ok := foreignGroups[obj.GroupVersionKind().Group]; ok {
			t.Logf("%s: %s %s skipped: %s", d.where, obj.GetKind(), obj.GetName(), why)
			continue
		}
		n++
		t.Run(strings.ReplaceAll(d.where, "/", "_"), func(t *testing.T) { admit(t, ns.Name, obj, dir.refused) })
	}
	if n == 0 {
		t.Fatal("no object found in the examples")
	}
}

// object builds the unstructured object of a document, completing a fragment.
func object(d yamlDoc, dir directive) (*unstructured.Unstructured, error) {
	doc := d.obj
	if dir.fragment != "" {
		if d.isObject() {
			return nil, fmt.Errorf("fragment of %s has apiVersion and kind: drop the directive", dir.fragment)
		}
		base, ok := minimal[dir.fragment]
		if !ok {
			return nil, fmt.Errorf("fragment of %s: no minimal object of that kind in the test", dir.fragment)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(base), &m); err != nil {
			return nil, err
		}
		doc = mergeFragment(m, d.obj)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	return &u, nil
}

// mergeFragment puts the fragment's top-level keys over base's, and for metadata and spec its
// keys one level down: a fragment's spec.link replaces the minimal link rather than adding a
// second one.
func mergeFragment(base, frag map[string]any) map[string]any {
	for k, v := range frag {
		bm, bok := base[k].(map[string]any)
		fm, fok := v.(map[string]any)
		if (k == "spec" || k == "metadata") && bok && fok {
			for fk, fv := range fm {
				bm[fk] = fv
			}
			continue
		}
		base[k] = v
	}
	return base
}

// admit creates obj in ns with a dry run; refused is "" or the part of the error expected.
func admit(t *testing.T, ns string, obj *unstructured.Unstructured, refused string) {
	mapping, err := k8s.RESTMapper().RESTMapping(obj.GroupVersionKind().GroupKind(), obj.GroupVersionKind().Version)
	if err != nil {
		t.Fatalf("%s: %v (an API group of another project? add it to foreignGroups with why)", obj.GroupVersionKind(), err)
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		obj.SetNamespace(ns)
	}
	err = k8s.Create(ctx, obj, client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict))
	switch {
	case refused == "" && err != nil:
		t.Errorf("%s %s is refused: %v", obj.GetKind(), obj.GetName(), err)
	case refused != "" && err == nil:
		t.Errorf("%s %s is admitted; the doc says it is refused with %q", obj.GetKind(), obj.GetName(), refused)
	case refused != "" && !strings.Contains(err.Error(), refused):
		t.Errorf("%s %s is refused with %v; the doc says %q", obj.GetKind(), obj.GetName(), err, refused)
	}
}

func TestMergeFragment(t *testing.T) {
	base := map[string]any{"kind": "Account", "spec": map[string]any{"relation": "peer", "link": map[string]any{"btpClient": 1}}}
	frag := map[string]any{"spec": map[string]any{"link": map[string]any{"http": 2}}}
	got, _ := json.Marshal(mergeFragment(base, frag))
	if want := `{"kind":"Account","spec":{"link":{"http":2},"relation":"peer"}}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestRefusedDirective runs the directives the docs may use on examples written here, so that
// the refused path works before a doc first needs it.
func TestRefusedDirective(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "docs-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, marker, yaml string }{
		{"refused object", `refused "must not have one (RFC 34)"`,
			"apiVersion: ilp.ilpfleet.dev/v1alpha1\nkind: Connector\nmetadata: {name: x}\nspec: {ilpAddress: g.acme}\n"},
		{"unknown field refused", `refused "unknown field"`,
			"apiVersion: ilp.ilpfleet.dev/v1alpha1\nkind: Route\nmetadata: {name: x}\nspec: {connectorRef: c, targetPrefix: test.x, nextHop: a, colour: red}\n"},
		{"admitted fragment", "fragment of Account", "spec:\n  link: {btpListener: {port: 7768, secretRef: {name: s, key: k}}}\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			docs := splitYAML(t, tc.name, tc.marker, tc.yaml)
			dir, err := parseDirective(docs[0].marker)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := object(docs[0], dir)
			if err != nil {
				t.Fatal(err)
			}
			admit(t, ns.Name, obj, dir.refused)
		})
	}
}
