package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConnectorSpec describes one ILP connector: its identity, its forwarding policy and how the
// operator runs it. Accounts, Routes and SettlementEngines refer to it by name.
// +kubebuilder:validation:XValidation:rule="has(self.ilpAddress) || has(self.inheritAddressFrom)",message="set ilpAddress or inheritAddressFrom"
// +kubebuilder:validation:XValidation:rule="!has(self.ilpAddress) || !has(self.inheritAddressFrom)",message="ilpAddress and inheritAddressFrom are mutually exclusive"
// +kubebuilder:validation:XValidation:rule="!has(self.ilpAddress) || !has(self.network) || (self.network == 'production') == self.ilpAddress.startsWith('g.')",message="a production connector needs a g. address and a test connector must not have one (RFC 34)"
// +kubebuilder:validation:XValidation:rule="has(oldSelf.ilpAddress) == has(self.ilpAddress) && (!has(self.ilpAddress) || self.ilpAddress == oldSelf.ilpAddress)",message="ilpAddress is immutable: create a new Connector to change it"
type ConnectorSpec struct {
	// ILPAddress is the connector's own ILP address (RFC 15), e.g. g.acme or test.acme.
	// Immutable. Like CONNECTOR_ILP_ADDRESS.
	// +kubebuilder:validation:MaxLength=1023
	// +kubebuilder:validation:Pattern=`^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+$`
	// +optional
	ILPAddress string `json:"ilpAddress,omitempty"`

	// InheritAddressFrom names a parent Account whose connector assigns our address over IL-DCP.
	// Like CONNECTOR_ILP_ADDRESS_INHERIT_FROM.
	// +optional
	InheritAddressFrom string `json:"inheritAddressFrom,omitempty"`

	// Network is "test" or "production" (CONNECTOR_ENV). A node never mixes them (RFC 34).
	// Unset means test.
	// +kubebuilder:validation:Enum=test;production
	// +optional
	Network string `json:"network,omitempty"`

	// Rates selects the exchange-rate backend and the spread taken on each packet.
	// +optional
	Rates *RatesSpec `json:"rates,omitempty"`

	// MaxHoldTime caps how long the connector holds a packet for the next hop
	// (CONNECTOR_MAX_HOLD_TIME; unset: 30s).
	// +optional
	MaxHoldTime *metav1.Duration `json:"maxHoldTime,omitempty"`

	// MinMessageWindow is the time kept back from the incoming expiry for the response to travel
	// back (CONNECTOR_MIN_MESSAGE_WINDOW; unset: 1s).
	// +optional
	MinMessageWindow *metav1.Duration `json:"minMessageWindow,omitempty"`

	// DisableMiddleware removes built-in middlewares by name (CONNECTOR_DISABLE_MIDDLEWARE).
	// +listType=set
	// +optional
	DisableMiddleware []Middleware `json:"disableMiddleware,omitempty"`

	// Replicas is the number of connector pods. More than one requires a shared store.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Image overrides the connector runtime image; unset means the operator's own image.
	// +optional
	Image string `json:"image,omitempty"`
}

// Middleware is the name of a built-in middleware of the connector.
// +kubebuilder:validation:Enum=errorHandler;deduplicate;rateLimit;maxPacketAmount;throughput;balance;validateFulfillment;expire;stats;alert
type Middleware string

// RatesSpec configures the exchange-rate backend (CONNECTOR_BACKEND, CONNECTOR_BACKEND_CONFIG and
// CONNECTOR_SPREAD).
type RatesSpec struct {
	// Backend is one-to-one (rate 1, asset scales converted) or static (the Rates table).
	// +kubebuilder:validation:Enum=one-to-one;static
	// +optional
	Backend string `json:"backend,omitempty"`

	// Spread is the fraction kept on each conversion, a decimal string: "0.002" is 0.2 %.
	// +kubebuilder:validation:Pattern=`^(0|0?\.[0-9]+|1(\.0+)?)$`
	// +optional
	Spread string `json:"spread,omitempty"`

	// Rates maps asset codes to their value in a common unit, as decimal strings (static backend).
	// +optional
	Rates map[string]DecimalString `json:"rates,omitempty"`
}

// DecimalString is a non-negative decimal number written as a string, never a float.
// +kubebuilder:validation:Pattern=`^[0-9]+(\.[0-9]+)?$`
type DecimalString string

// ConnectorStatus reports the connector as the operator and its pods see it.
type ConnectorStatus struct {
	BaseStatus `json:",inline"`
	// Address is the ILP address in use (configured or inherited).
	// +optional
	Address string `json:"address,omitempty"`
	// Accounts is the number of Accounts that reference this connector.
	// +optional
	Accounts int32 `json:"accounts,omitempty"`
}

// Connector is one ILP connector, run by the operator as pods of the ilpfleet runtime.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ilpc;ilpconn,categories=ilp
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.address`
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.network`
// +kubebuilder:printcolumn:name="Accounts",type=integer,JSONPath=`.status.accounts`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Connector struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ConnectorSpec   `json:"spec"`
	Status ConnectorStatus `json:"status,omitempty"`
}

// ConnectorList is a list of Connectors.
// +kubebuilder:object:root=true
type ConnectorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Connector `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Connector{}, &ConnectorList{})
}
