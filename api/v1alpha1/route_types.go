package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RouteSpec is a static route of a connector (one entry of CONNECTOR_ROUTES): packets whose
// destination starts with TargetPrefix go to the account NextHop.
// +kubebuilder:validation:XValidation:rule="self.connectorRef == oldSelf.connectorRef",message="connectorRef is immutable: create a new Route instead"
type RouteSpec struct {
	// ConnectorRef names the Connector (same namespace) this route belongs to. Immutable.
	// +kubebuilder:validation:MinLength=1
	ConnectorRef string `json:"connectorRef"`
	// TargetPrefix is an ILP address prefix, matched on segment boundaries.
	// +kubebuilder:validation:MaxLength=1023
	// +kubebuilder:validation:XValidation:rule="self.matches('^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)*$')",message="must be an ILP address prefix (RFC 15): a scheme (g, private, example, peer, self, test, test1, test2, test3 or local), then any number of segments of letters, digits, '_', '~' or '-', each after a '.', e.g. test.bob or g"
	TargetPrefix string `json:"targetPrefix"`
	// NextHop names the Account (same connector) that packets for the prefix are sent to.
	// +kubebuilder:validation:MinLength=1
	NextHop string `json:"nextHop"`
}

// RouteStatus reports whether the route is usable.
type RouteStatus struct {
	BaseStatus `json:",inline"`
}

// Route is a static route of a connector.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ilproute;ilpr,categories=ilp
// +kubebuilder:printcolumn:name="Connector",type=string,JSONPath=`.spec.connectorRef`
// +kubebuilder:printcolumn:name="Prefix",type=string,JSONPath=`.spec.targetPrefix`
// +kubebuilder:printcolumn:name="Next Hop",type=string,JSONPath=`.spec.nextHop`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Route struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RouteSpec   `json:"spec"`
	Status RouteStatus `json:"status,omitempty"`
}

// RouteList is a list of Routes.
// +kubebuilder:object:root=true
type RouteList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Route `json:"items"`
}
