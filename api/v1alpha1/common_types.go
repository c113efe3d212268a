package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Condition types shared by every kind. Ready is what `kubectl wait --for=condition=Ready` and the
// Argo CD health checks read.
const (
	ConditionReady = "Ready"
	// ConditionReferencesResolved says whether every object this one names exists.
	ConditionReferencesResolved = "ReferencesResolved"
	// ConditionProgressing is True while a Connector's or SettlementEngine's pods roll out; its
	// reason and message name why they rolled (which restart input changed).
	ConditionProgressing = "Progressing"
	// ConditionConfigApplied is written by the connector pods (the in-pod Kubernetes config
	// source), not by the operator. On a Connector: True once every pod runs the current
	// configuration. On an Account: False (reason LeftOut) while the pods leave the Account out
	// of their configuration, True (reason Applied) once they run it again; absent on an
	// Account they never left out. A False at the Account's current generation makes its
	// Ready False.
	ConditionConfigApplied = "ConfigApplied"
	// ConditionReplicasSupported is written by the operator on an Account: whether its link
	// works with its Connector's replicas. False when the Connector runs more than one and the
	// link holds state that only one pod can have: a BTP WebSocket connection (btpClient,
	// btpListener, each child of btpChildServer) or, for http in mode async, the Prepares that
	// await their reply; or an http sync link that exchanges routes (CCP runs in each pod).
	// Unknown while the Connector does not exist. False makes Ready False.
	ConditionReplicasSupported = "ReplicasSupported"
)

// Labels and annotations the operator puts on the objects it owns.
const (
	// LabelConnector carries the name of the Connector a workload object belongs to.
	LabelConnector = "ilp.ilpfleet.dev/connector"
	// LabelSettlementEngine carries the name of the SettlementEngine a workload object belongs to.
	LabelSettlementEngine = "ilp.ilpfleet.dev/settlement-engine"
	// AnnotationRestartInputs is the pod-template annotation holding one short hash per input
	// that cannot be hot-reloaded (image, resources, store, scheduling, listeners). A change of
	// its value is the only Connector change that rolls the pods.
	AnnotationRestartInputs = "ilp.ilpfleet.dev/restart-inputs"
	// AnnotationRolloutReason is the workload annotation saying why its current pod template
	// rolled out: {"inputs", "reason", "message"} as JSON, inputs being the template's
	// AnnotationRestartInputs then. The Connector's Progressing condition keeps it even when
	// the status write of the reconcile that started the roll was lost.
	AnnotationRolloutReason = "ilp.ilpfleet.dev/rollout-reason"
)

// FileStoreMountPath is where a connector pod mounts its PersistentVolumeClaim when the store
// is the embedded file store; the runtime keeps its data below it.
const FileStoreMountPath = "/var/lib/ilpfleet"

// SecretKeyRef names one key of a Secret in the object's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Key inside the Secret's data.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// BaseStatus is the part of every kind's status that reports reconciliation.
type BaseStatus struct {
	// ObservedGeneration is the metadata.generation the controller last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, plus what each kind reports.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ILP address grammar (RFC 15), as a CEL-free pattern so that the API server checks it cheaply.
// Kept in one place: the markers below repeat it because markers cannot reference constants.
const AddressPattern = `^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+$`
