package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// The parts of OLM's ClusterServiceVersion (operators.coreos.com/v1alpha1) the bundle sets,
// declared here so that the generator needs no OLM module.
type (
	csv struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   csvMetadata    `json:"metadata"`
		Spec       csvSpec        `json:"spec"`
		Status     map[string]any `json:"status,omitempty"`
	}
	csvMetadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	}
	csvSpec struct {
		APIServiceDefinitions     map[string]any      `json:"apiservicedefinitions"`
		CustomResourceDefinitions ownedCRDs           `json:"customresourcedefinitions"`
		Description               string              `json:"description"`
		DisplayName               string              `json:"displayName"`
		Install                   install             `json:"install"`
		InstallModes              []installMode       `json:"installModes"`
		Keywords                  []string            `json:"keywords"`
		Links                     []link              `json:"links"`
		Maturity                  string              `json:"maturity"`
		MinKubeVersion            string              `json:"minKubeVersion"`
		Provider                  map[string]string   `json:"provider"`
		Version                   string              `json:"version"`
		NativeAPIs                []map[string]string `json:"nativeAPIs,omitempty"`
	}
	ownedCRDs struct {
		Owned []ownedCRD `json:"owned"`
	}
	ownedCRD struct {
		Name              string       `json:"name"`
		Version           string       `json:"version"`
		Kind              string       `json:"kind"`
		DisplayName       string       `json:"displayName"`
		Description       string       `json:"description"`
		Resources         []resource   `json:"resources,omitempty"`
		SpecDescriptors   []descriptor `json:"specDescriptors,omitempty"`
		StatusDescriptors []descriptor `json:"statusDescriptors,omitempty"`
	}
	resource struct {
		Kind    string `json:"kind"`
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	descriptor struct {
		Path         string   `json:"path"`
		DisplayName  string   `json:"displayName"`
		Description  string   `json:"description"`
		XDescriptors []string `json:"x-descriptors,omitempty"`
	}
	install struct {
		Strategy string      `json:"strategy"`
		Spec     installSpec `json:"spec"`
	}
	installSpec struct {
		ClusterPermissions []permission     `json:"clusterPermissions"`
		Permissions        []permission     `json:"permissions"`
		Deployments        []deploymentSpec `json:"deployments"`
	}
	permission struct {
		ServiceAccountName string              `json:"serviceAccountName"`
		Rules              []rbacv1.PolicyRule `json:"rules"`
	}
	deploymentSpec struct {
		Name  string                `json:"name"`
		Label map[string]string     `json:"label,omitempty"`
		Spec  appsv1.DeploymentSpec `json:"spec"`
	}
	installMode struct {
		Type      string `json:"type"`
		Supported bool   `json:"supported"`
	}
	link struct {
		Name string `json:"name"`
		URL  string `json:"url"`
	}
)

// namePrefix is config/default's namePrefix: the bundle's objects carry the same names as a
// `kubectl apply -k config/default` install.
const namePrefix = "ilpfleet-"

const repository = "https://github.com/ilpfleet/ilpfleet"

// ownedResources are the objects the operator creates for each kind, for the CSV's
// "resources" (what an OLM console shows under the custom resource).
var ownedResources = map[string][]resource{
	"Connector": {
		{"Deployment", "<name> (memory or redis store)", "v1"},
		{"StatefulSet", "<name> (file store)", "v1"},
		{"Service", "<name> (BTP, ILP-over-HTTP) and <name>-admin (settlement, admin, metrics)", "v1"},
		{"ServiceAccount", "<name>-connector", "v1"},
		{"Role", "<name>-connector", "v1"},
		{"RoleBinding", "<name>-connector", "v1"},
		{"PodDisruptionBudget", "<name> (replicas > 1)", "v1"},
		{"ServiceMonitor", "<name> (when prometheus-operator is installed)", "v1"},
	},
	"SettlementEngine": {
		{"Deployment", "<name>-engine", "v1"},
		{"Service", "<name>-engine", "v1"},
	},
}

const csvDescription = `ilpfleet runs fleets of Interledger (ILPv4) connectors. A **Connector** is one connector,
run as pods of the ilpfleet runtime (a drop-in, faster replacement for the JavaScript
` + "`ilp-connector`" + `); **Accounts** are its peers, parents and children with their links and
limits; **Routes** are static routes; **SettlementEngines** settle balances (RFC 38).

Adding, changing or removing an Account or Route reaches the running connector pods in about a
second, without a restart and without losing a packet. Pods roll only for changes that cannot be
hot-reloaded (image, resources, store, scheduling, listeners), and the Connector's Progressing
condition says which one changed.

Every kind reports a Ready condition with observedGeneration, for ` + "`kubectl wait`" + ` and GitOps
health checks. See the user guide: ` + repository + `/blob/main/docs/user-guide.md`

func renderCSV(o options, in *inputs) ([]byte, error) {
	examples, err := json.MarshalIndent(in.samples, "", "  ")
	if err != nil {
		return nil, err
	}
	owned := make([]ownedCRD, 0, len(in.crds))
	for _, c := range in.crds {
		oc, err := ownedCRDOf(&c.def)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.fileName, err)
		}
		owned = append(owned, oc)
	}
	sa := namePrefix + in.deployment.Spec.Template.Spec.ServiceAccountName
	c := csv{
		APIVersion: "operators.coreos.com/v1alpha1",
		Kind:       "ClusterServiceVersion",
		Metadata: csvMetadata{
			Name:      packageName + ".v" + o.version,
			Namespace: "placeholder",
			Annotations: map[string]string{
				"alm-examples":   string(examples),
				"capabilities":   "Basic Install",
				"categories":     "Networking",
				"containerImage": o.image,
				"description":    "Runs fleets of Interledger connectors: Connector, Account, Route and SettlementEngine",
				"repository":     repository,
				"operatorframework.io/suggested-namespace": "ilpfleet-system",
			},
		},
		Spec: csvSpec{
			APIServiceDefinitions:     map[string]any{},
			CustomResourceDefinitions: ownedCRDs{Owned: owned},
			Description:               csvDescription,
			DisplayName:               "ilpfleet",
			Install: install{Strategy: "deployment", Spec: installSpec{
				ClusterPermissions: []permission{{ServiceAccountName: sa, Rules: in.clusterRole.Rules}},
				Permissions:        []permission{{ServiceAccountName: sa, Rules: in.leaderRole.Rules}},
				Deployments:        []deploymentSpec{managerDeployment(in.deployment, o.image, sa)},
			}},
			InstallModes: []installMode{
				{"OwnNamespace", false}, {"SingleNamespace", false}, {"MultiNamespace", false}, {"AllNamespaces", true},
			},
			Keywords:       []string{"interledger", "ilp", "connector", "payments", "btp", "settlement"},
			Links:          []link{{"Source", repository}, {"User guide", repository + "/blob/main/docs/user-guide.md"}},
			Maturity:       defaultChannel,
			MinKubeVersion: "1.30.0",
			Provider:       map[string]string{"name": "ilpfleet"},
			Version:        o.version,
		},
	}
	return yaml.Marshal(c)
}

// managerDeployment is config/manager's Deployment as config/default renders it, with the
// bundle's image for the manager and, through ILPFLEET_IMAGE, for connector pods.
func managerDeployment(d appsv1.Deployment, image, serviceAccount string) deploymentSpec {
	spec := *d.Spec.DeepCopy()
	spec.Template.Spec.ServiceAccountName = serviceAccount
	for i := range spec.Template.Spec.Containers {
		ctr := &spec.Template.Spec.Containers[i]
		ctr.Image = image
		for j := range ctr.Env {
			if ctr.Env[j].Name == "ILPFLEET_IMAGE" {
				ctr.Env[j].Value = image
			}
		}
	}
	return deploymentSpec{Name: namePrefix + d.Name, Label: d.Labels, Spec: spec}
}

// ownedCRDOf describes one CRD for the CSV: its storage version, the type's documentation,
// and a descriptor per top-level spec and status field (what the scorecard's
// olm-spec-descriptors and olm-status-descriptors tests look for).
func ownedCRDOf(def *apiextv1.CustomResourceDefinition) (ownedCRD, error) {
	var v *apiextv1.CustomResourceDefinitionVersion
	for i := range def.Spec.Versions {
		if def.Spec.Versions[i].Storage {
			v = &def.Spec.Versions[i]
		}
	}
	if v == nil || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		return ownedCRD{}, fmt.Errorf("no storage version with a schema")
	}
	s := v.Schema.OpenAPIV3Schema
	kind := def.Spec.Names.Kind
	oc := ownedCRD{
		Name: def.Name, Version: v.Name, Kind: kind, DisplayName: words(kind),
		Description: firstSentence(s.Description), Resources: ownedResources[kind],
	}
	if spec, ok := s.Properties["spec"]; ok {
		oc.SpecDescriptors = descriptors(spec, nil)
	}
	if status, ok := s.Properties["status"]; ok {
		oc.StatusDescriptors = descriptors(status, map[string][]string{
			"conditions": {"urn:alm:descriptor:io.kubernetes.conditions"},
		})
	}
	return oc, nil
}

// descriptors lists the top-level properties of schema, sorted by path.
func descriptors(schema apiextv1.JSONSchemaProps, x map[string][]string) []descriptor {
	names := make([]string, 0, len(schema.Properties))
	for n := range schema.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]descriptor, 0, len(names))
	for _, n := range names {
		out = append(out, descriptor{Path: n, DisplayName: words(n), Description: firstSentence(schema.Properties[n].Description), XDescriptors: x[n]})
	}
	return out
}

// words turns a Go or JSON name into display words: SettlementEngine → Settlement Engine,
// ilpAddress → ILP Address, maxPacketAmount → Max Packet Amount.
func words(name string) string {
	var b strings.Builder
	rs := []rune(name)
	for i, r := range rs {
		lowerBefore := i > 0 && unicode.IsLower(rs[i-1])
		acronymEnd := i > 0 && i+1 < len(rs) && unicode.IsUpper(rs[i-1]) && unicode.IsLower(rs[i+1])
		if unicode.IsUpper(r) && (lowerBefore || acronymEnd) {
			b.WriteByte(' ')
		}
		if i == 0 {
			r = unicode.ToUpper(r)
		}
		b.WriteRune(r)
	}
	out := b.String()
	for _, a := range []string{"Ilp", "Http", "Btp", "Url"} {
		out = replaceWord(out, a, strings.ToUpper(a))
	}
	return out
}

func replaceWord(s, old, repl string) string {
	f := strings.Fields(s)
	for i := range f {
		if f[i] == old {
			f[i] = repl
		}
	}
	return strings.Join(f, " ")
}

// firstSentence is the first sentence of a field's documentation, on one line.
func firstSentence(doc string) string {
	doc = strings.Join(strings.Fields(doc), " ")
	if i := strings.Index(doc, ". "); i >= 0 {
		return doc[:i+1]
	}
	return doc
}
