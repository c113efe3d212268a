package v1alpha1

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// TestAddToSchemeRegistersEveryKind: AddToScheme registers each kind and its list under
// GroupVersion, and the meta/v1 options for the group version, as the controller-runtime
// scheme.Builder it replaced did.
func TestAddToSchemeRegistersEveryKind(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for kind, obj := range map[string]runtime.Object{
		"Connector": &Connector{}, "ConnectorList": &ConnectorList{},
		"Account": &Account{}, "AccountList": &AccountList{},
		"Route": &Route{}, "RouteList": &RouteList{},
		"SettlementEngine": &SettlementEngine{}, "SettlementEngineList": &SettlementEngineList{},
	} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil {
			t.Errorf("%s: %v", kind, err)
			continue
		}
		if len(gvks) != 1 || gvks[0] != GroupVersion.WithKind(kind) {
			t.Errorf("%s registered as %v, want %v", kind, gvks, GroupVersion.WithKind(kind))
		}
	}
	if got := len(s.KnownTypes(GroupVersion)); got < 8 {
		t.Errorf("%d known types in %s, want at least the 8 kinds", got, GroupVersion)
	}
	if !s.Recognizes(GroupVersion.WithKind("ListOptions")) {
		t.Error("meta/v1 ListOptions not registered for the group version (metav1.AddToGroupVersion)")
	}
	if _, err := s.New(GroupVersion.WithKind("WatchEvent")); err != nil {
		t.Errorf("WatchEvent: %v", err)
	}
}
