package v1alpha1

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SettlementEngineSpec describes a settlement engine (RFC 38) that the operator runs as a
// Deployment with a Service, both named <name>-engine, for one asset.
// +kubebuilder:validation:XValidation:rule="self.assetCode == oldSelf.assetCode && self.assetScale == oldSelf.assetScale",message="assetCode and assetScale are immutable: accounts settle through this engine in that asset"
// +kubebuilder:validation:XValidation:rule="!has(self.metricsPort) || self.metricsPort != self.port",message="metricsPort must differ from port (the RFC 38 API's)"
type SettlementEngineSpec struct {
	// AssetCode is the asset this engine settles, e.g. XRP.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=16
	AssetCode string `json:"assetCode"`
	// AssetScale of the engine's ledger amounts.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=255
	AssetScale int32 `json:"assetScale"`
	// Image of the engine.
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`
	// Command overrides the image's entrypoint.
	// +optional
	Command []string `json:"command,omitempty"`
	// Args to the engine.
	// +optional
	Args []string `json:"args,omitempty"`
	// Env of the engine container; use valueFrom.secretKeyRef for credentials. The operator
	// checks that every referenced Secret and key exists and says so in ReferencesResolved.
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// EnvFrom loads whole Secrets or ConfigMaps as environment variables.
	// +optional
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`
	// Resources of the engine container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// Port the engine serves the RFC 38 API on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// MetricsPort, when the engine serves Prometheus metrics on a port of its own (ilpfleet's
	// engine: ENGINE_METRICS_LISTEN=:<port> in env), declares it on the container as the port
	// named "metrics", so that a PodMonitor can select it by name. The engine itself is told in
	// env or args: the operator does not know the image's flags. Changing it rolls the pods.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	MetricsPort *int32 `json:"metricsPort,omitempty"`
	// Replicas of the engine; unset: 1. A single engine rolls by stopping its pod before its
	// successor starts (Recreate): its state is usually one process's. Several replicas roll
	// as a rolling update unless strategy says Recreate, and must share their state safely.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Strategy is how the engine's pods are replaced: Recreate stops every old pod before any
	// new one starts; RollingUpdate starts a new pod before stopping an old one. Unset:
	// Recreate for one replica, RollingUpdate for more. Set Recreate for several replicas of
	// which one is active and the others stand by, never ready (an engine built on ilpfleet's
	// framework with a Redis store: one process holds the store's lease): a rolling update
	// would wait for a new pod that cannot become ready while an old one holds the lease.
	// +optional
	Strategy EngineStrategy `json:"strategy,omitempty"`
}

// EngineStrategy is how a SettlementEngine's Deployment replaces its pods.
// +kubebuilder:validation:Enum=Recreate;RollingUpdate
type EngineStrategy string

// The strategies of a SettlementEngine's Deployment (appsv1.DeploymentStrategyType's names).
const (
	EngineStrategyRecreate      EngineStrategy = "Recreate"
	EngineStrategyRollingUpdate EngineStrategy = "RollingUpdate"
)

// SettlementEngineStatus reports the engine's deployment.
type SettlementEngineStatus struct {
	BaseStatus `json:",inline"`
	// URL is where connectors reach the engine: http://<name>-engine.<namespace>.svc:<port>.
	// +optional
	URL string `json:"url,omitempty"`
	// Replicas is the number of engine pods the Deployment has.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// ReadyReplicas is the number of engine pods that are ready.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
}

// SettlementEngine is a settlement engine the operator runs for connectors of its namespace.
// Its name is a DNS-1035 label of at most 56 characters: the operator names the engine's
// Deployment and Service <name>-engine, and a Service name has at most 63.
// +kubebuilder:validation:XValidation:rule="oldSelf.hasValue() || self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, no dots): the operator names the Service <name>-engine",optionalOldSelf=true
// +kubebuilder:validation:XValidation:rule="oldSelf.hasValue() || size(self.metadata.name) <= 56",message="metadata.name has at most 56 characters: the operator names the Service <name>-engine, which must fit 63",optionalOldSelf=true
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ilpse,categories=ilp
// +kubebuilder:printcolumn:name="Asset",type=string,JSONPath=`.spec.assetCode`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SettlementEngine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SettlementEngineSpec   `json:"spec"`
	Status SettlementEngineStatus `json:"status,omitempty"`
}

// SettlementEngineList is a list of SettlementEngines.
// +kubebuilder:object:root=true
type SettlementEngineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SettlementEngine `json:"items"`
}

// WorkloadName is the name of the Deployment and the Service the operator runs the engine as.
func (e *SettlementEngine) WorkloadName() string { return e.Name + "-engine" }

// InClusterURL is where the connectors of the engine's namespace reach it (status.url).
func (e *SettlementEngine) InClusterURL() string {
	return fmt.Sprintf("http://%s.%s.svc:%d", e.WorkloadName(), e.Namespace, e.Spec.Port)
}

// AssetMismatch says why the engine cannot settle an account of assetCode, "" when it can.
// Only the code must match: every RFC 38 amount carries its scale, and each side converts it
// to its own (the connector's settler and the engine framework), keeping what is finer than a
// unit for the next settlement. The operator (SettlementEngineAssetMismatch) and the pods
// (which then run the account without settlement) apply this one rule.
func (e *SettlementEngine) AssetMismatch(assetCode string) string {
	if e.Spec.AssetCode == assetCode {
		return ""
	}
	return fmt.Sprintf("SettlementEngine %q settles %s but the account's asset is %s", e.Name, e.Spec.AssetCode, assetCode)
}
