// Package v1alpha1 holds the ilp.ilpfleet.dev/v1alpha1 API: Connector, Account, Route and
// SettlementEngine.
// +kubebuilder:object:generate=true
// +groupName=ilp.ilpfleet.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "ilp.ilpfleet.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers every kind of this package and its list, and the meta/v1 types
// (options, WatchEvent) for the group version: what controller-runtime's scheme.Builder did.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Connector{}, &ConnectorList{},
		&Account{}, &AccountList{},
		&Route{}, &RouteList{},
		&SettlementEngine{}, &SettlementEngineList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
