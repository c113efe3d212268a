package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The network rule reads an unset network as test, as the runtime does (config.Defaults):
// otherwise a g. address without network would be admitted and then refused by every pod.

// ConnectorSpec describes one ILP connector: its identity, its forwarding policy and how the
// operator runs it. Accounts, Routes and SettlementEngines refer to it by name.
// +kubebuilder:validation:XValidation:rule="has(self.ilpAddress) || has(self.inheritAddressFrom)",message="set ilpAddress or inheritAddressFrom"
// +kubebuilder:validation:XValidation:rule="!has(self.ilpAddress) || !has(self.inheritAddressFrom)",message="ilpAddress and inheritAddressFrom are mutually exclusive"
// +kubebuilder:validation:XValidation:rule="!has(self.ilpAddress) || (has(self.network) && self.network == 'production') == self.ilpAddress.startsWith('g.')",message="a production connector needs a g. address and a test connector (network unset or test) must not have one (RFC 34)"
// +kubebuilder:validation:XValidation:rule="!has(self.ilpAddress) || !has(oldSelf.ilpAddress) || self.ilpAddress == oldSelf.ilpAddress",message="ilpAddress is immutable: running pods cannot change their address, and a change of it does not restart them; to change it, delete the Connector and create it again with the new address (its Accounts and Routes stay and attach to it; balances survive only in a file or redis store), or create a new Connector"
// +kubebuilder:validation:XValidation:rule="has(oldSelf.ilpAddress) == has(self.ilpAddress)",messageExpression="has(self.ilpAddress) ? 'ilpAddress cannot replace inheritAddressFrom on an existing Connector: running pods cannot change their address, and only a change of inheritAddressFrom (or network) restarts them; delete the Connector and create it again with ilpAddress (its Accounts and Routes stay and attach to it; balances survive only in a file or redis store)' : 'inheritAddressFrom cannot replace ilpAddress on an existing Connector: the ilpAddress of a running Connector is fixed; delete the Connector and create it again with inheritAddressFrom (its Accounts and Routes stay and attach to it; balances survive only in a file or redis store)'",message="a Connector cannot switch between ilpAddress and inheritAddressFrom: running pods cannot change their address; delete the Connector and create it again with the other field (its Accounts and Routes stay and attach to it; balances survive only in a file or redis store)"
// +kubebuilder:validation:XValidation:rule="!has(self.replicas) || self.replicas <= 1 || (has(self.store) && self.store.type == 'redis')",message="replicas > 1 needs a shared store: set store.type to redis (the memory and file stores are per pod)"
type ConnectorSpec struct {
	// ILPAddress is the connector's own ILP address (RFC 15), e.g. g.acme or test.acme.
	// Immutable. Like CONNECTOR_ILP_ADDRESS.
	// +kubebuilder:validation:MaxLength=1023
	// +kubebuilder:validation:XValidation:rule="self.matches('^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+$')",message="must be an ILP address (RFC 15): a scheme (g, private, example, peer, self, test, test1, test2, test3 or local), then one or more segments of letters, digits, '_', '~' or '-', each after a '.', e.g. test.alice or g.acme"
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

	// Store keeps balances and other durable state (CONNECTOR_STORE). Unset: memory.
	// Changing it rolls the pods.
	// +optional
	Store *StoreSpec `json:"store,omitempty"`

	// Routing tunes route broadcasting (CCP) and route selection.
	// +optional
	Routing *RoutingSpec `json:"routing,omitempty"`

	// Listeners are the connector-wide ports: the settlement API and the admin API with
	// /metrics and /healthz. Peer ports belong to Accounts (btpListener, btpChildServer and
	// http.incoming).
	// +optional
	Listeners *ListenersSpec `json:"listeners,omitempty"`

	// Service is how the peer-facing endpoints (BTP and ILP-over-HTTP) are exposed. The
	// settlement and admin ports are always on a separate ClusterIP Service, <name>-admin.
	// +optional
	Service *ServiceSpec `json:"service,omitempty"`

	// MaxHoldTime caps how long the connector holds a packet for the next hop
	// (CONNECTOR_MAX_HOLD_TIME; unset: 30s).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	MaxHoldTime *metav1.Duration `json:"maxHoldTime,omitempty"`

	// MinMessageWindow is the time kept back from the incoming expiry for the response to travel
	// back (CONNECTOR_MIN_MESSAGE_WINDOW; unset: 1s).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	MinMessageWindow *metav1.Duration `json:"minMessageWindow,omitempty"`

	// DisableMiddleware removes built-in middlewares by name (CONNECTOR_DISABLE_MIDDLEWARE).
	// +listType=set
	// +optional
	DisableMiddleware []Middleware `json:"disableMiddleware,omitempty"`

	// Replicas is the number of connector pods. More than one requires a shared store. The
	// scale subresource sets it (kubectl scale, a HorizontalPodAutoscaler); the default, 1, is
	// in the schema so that the scale of a Connector that leaves it out reads 1, not 0 (which an
	// autoscaler takes as scaling turned off).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Image overrides the connector runtime image; unset means the operator's own image.
	// Changing it rolls the pods.
	// +optional
	Image string `json:"image,omitempty"`

	// Logging sets the connector pods' log level and format. Changing it rolls the pods.
	// +optional
	Logging *LoggingSpec `json:"logging,omitempty"`

	// Resources of the connector container. Changing them rolls the pods. A memory limit also sets
	// GOMEMLIMIT in the container to 90 % of it (the Go runtime's soft memory limit).
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// Env adds environment variables to the connector container, e.g. HTTPS_PROXY and NO_PROXY
	// for an egress proxy; values may come from Secrets (valueFrom.secretKeyRef). Names the
	// operator sets are refused: the configuration comes from the Connector and its Accounts,
	// never from CONNECTOR_* variables here. Changing it rolls the pods.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(e, !e.name.startsWith('CONNECTOR_') && !(e.name in ['POD_NAMESPACE', 'POD_NAME', 'GOMEMLIMIT']))",message="env must not set CONNECTOR_* (the configuration comes from the Connector and its Accounts), POD_NAMESPACE, POD_NAME or GOMEMLIMIT (the operator sets them; GOMEMLIMIT follows resources.limits.memory)"
	// +listType=map
	// +listMapKey=name
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`

	// NodeSelector of the connector pods. Changing it rolls the pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the connector pods. Changing them rolls the pods.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// Affinity of the connector pods. Changing it rolls the pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// TopologySpreadConstraints of the connector pods. When unset and replicas > 1 the pods
	// carry none: set them to spread across zones. Changing them rolls the pods.
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// PodDisruptionBudget tunes the budget the operator creates when replicas > 1 (unset:
	// maxUnavailable 1). No budget exists for a single replica, so that node drains never block.
	// +optional
	PodDisruptionBudget *PodDisruptionBudgetSpec `json:"podDisruptionBudget,omitempty"`

	// NetworkPolicy, when set, has the operator write a NetworkPolicy <name> for the pods: the
	// peer ports (BTP, ILP-over-HTTP) stay open to every source, the settlement port admits only
	// the SettlementEngines its Accounts name, and the admin port (admin API, /metrics) only
	// adminFrom. Both of those APIs change balances and have no authentication. Unset: no
	// policy of the operator's. Enforced only by a network plugin that implements policies.
	// +optional
	NetworkPolicy *NetworkPolicySpec `json:"networkPolicy,omitempty"`
}

// StoreType names a connector store.
// +kubebuilder:validation:Enum=memory;file;redis
type StoreType string

// The stores of the connector runtime.
const (
	StoreMemory StoreType = "memory"
	StoreFile   StoreType = "file"
	StoreRedis  StoreType = "redis"
)

// The file store's volume is fixed when the StatefulSet is created: its volume claim template
// cannot change, so a new size would roll the pods and be ignored. The two transition rules
// refuse adding, removing or changing store.file.size or store.file.storageClassName while
// store.type stays file. They sit on StoreSpec, not FileStoreSpec: a rule there only runs when
// the old object had store.file too, so adding it went unchecked.
// +kubebuilder:validation:XValidation:rule="oldSelf.type != 'file' || self.type != 'file' || ((has(self.file) && has(self.file.size)) == (has(oldSelf.file) && has(oldSelf.file.size)) && (!has(self.file) || !has(self.file.size) || self.file.size == oldSelf.file.size))",message="store.file is immutable: its size is fixed when the volume is created (unset: 1Gi; a StatefulSet cannot change its volume claim template); leave store.file.size as it was, and to grow the volume expand the PersistentVolumeClaim data-<name>-0 (its StorageClass must allow volume expansion)"
// +kubebuilder:validation:XValidation:rule="oldSelf.type != 'file' || self.type != 'file' || ((has(self.file) && has(self.file.storageClassName)) == (has(oldSelf.file) && has(oldSelf.file.storageClassName)) && (!has(self.file) || !has(self.file.storageClassName) || self.file.storageClassName == oldSelf.file.storageClassName))",message="store.file is immutable: its storageClassName is fixed when the volume is created (a StatefulSet cannot change its volume claim template); leave store.file.storageClassName as it was"

// StoreSpec selects where balances and durable state live. memory loses them when a pod
// restarts; file keeps them on a PersistentVolumeClaim per pod (the operator then runs a
// StatefulSet); redis shares them between replicas.
// +kubebuilder:validation:XValidation:rule="self.type == 'redis' ? has(self.redis) : !has(self.redis)",message="store.redis is required when store.type is redis, and only then"
// +kubebuilder:validation:XValidation:rule="self.type == 'file' || !has(self.file)",message="store.file applies only when store.type is file"
type StoreSpec struct {
	// Type is memory, file or redis.
	Type StoreType `json:"type"`
	// File sizes the volume of the file store.
	// +optional
	File *FileStoreSpec `json:"file,omitempty"`
	// Redis locates the shared Redis store.
	// +optional
	Redis *RedisStoreSpec `json:"redis,omitempty"`
}

// FileStoreSpec is the PersistentVolumeClaim of the embedded file store, mounted at
// /var/lib/ilpfleet. Fixed once the volume exists (rules on StoreSpec): a StatefulSet cannot
// change its volume claim template.
type FileStoreSpec struct {
	// Size of the volume; unset: 1Gi. Fixed at creation: to grow the volume, expand the
	// PersistentVolumeClaim data-<name>-0 instead.
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// StorageClassName of the volume; unset: the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// RedisStoreSpec locates a Redis server shared by every replica.
type RedisStoreSpec struct {
	// URLSecretRef holds the Redis URL, credentials included: redis://user:password@host:6379/0,
	// rediss://… for TLS, or Sentinels: redis://sentinel:26379/0?master_name=m&addr=sentinel2:26379
	// (docs/configuration.md). A change of the Secret rolls the pods (StoreSecretChanged): a
	// connector opens its store once.
	URLSecretRef SecretKeyRef `json:"urlSecretRef"`
	// KeyPrefix is prepended to every key, so that connectors can share a database.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	KeyPrefix string `json:"keyPrefix,omitempty"`
}

// RoutingSpec tunes CCP route broadcasting and route selection. Unset fields take the JS
// connector's defaults.
type RoutingSpec struct {
	// Broadcast sends and processes CCP route updates (CONNECTOR_ROUTE_BROADCAST_ENABLED; unset: true).
	// +optional
	Broadcast *bool `json:"broadcast,omitempty"`
	// BroadcastInterval between route updates to peers (CONNECTOR_ROUTE_BROADCAST_INTERVAL; unset: 30s).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	BroadcastInterval *metav1.Duration `json:"broadcastInterval,omitempty"`
	// CleanupInterval between sweeps of expired routes (CONNECTOR_ROUTE_CLEANUP_INTERVAL; unset: 1s).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	CleanupInterval *metav1.Duration `json:"cleanupInterval,omitempty"`
	// Expiry of a route learnt from a peer that is not refreshed (CONNECTOR_ROUTE_EXPIRY; unset: 45s).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +optional
	Expiry *metav1.Duration `json:"expiry,omitempty"`
	// DefaultRoute is where packets without a matching route go (CONNECTOR_DEFAULT_ROUTE):
	// "auto" (the first parent account), or the name of an Account. Unset: auto.
	// +kubebuilder:validation:Pattern=`^(auto|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	DefaultRoute string `json:"defaultRoute,omitempty"`
	// ReflectPayments lets a packet go back out through the account it came in on
	// (CONNECTOR_REFLECT_PAYMENTS; unset: true).
	// +optional
	ReflectPayments *bool `json:"reflectPayments,omitempty"`
	// RoutingSecretRef holds the secret CCP route updates are authenticated with
	// (CONNECTOR_ROUTING_SECRET, raw bytes); unset: a random secret per pod start.
	// +optional
	RoutingSecretRef *SecretKeyRef `json:"routingSecretRef,omitempty"`
}

// ListenersSpec are the connector-wide ports.
// +kubebuilder:validation:XValidation:rule="!has(self.settlement) || self.settlement.port != (has(self.admin) ? self.admin.port : 7780)",message="listeners.settlement and listeners.admin need different ports (admin defaults to 7780)"
type ListenersSpec struct {
	// Settlement serves the connector side of the settlement API (RFC 38) to settlement
	// engines; unset: off.
	// +optional
	Settlement *ListenerSpec `json:"settlement,omitempty"`
	// Admin serves the admin API, /metrics and the /healthz probe (CONNECTOR_ADMIN_API_PORT).
	// It is always on in Kubernetes, for the probes; unset: port 7780.
	// +optional
	Admin *ListenerSpec `json:"admin,omitempty"`
}

// ListenerSpec is one TCP port of the connector pods.
type ListenerSpec struct {
	// Port the pods listen on, and the Service's port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
}

// ServiceSpec shapes the Service in front of the peer-facing ports.
type ServiceSpec struct {
	// Type of the Service: ClusterIP (unset), NodePort or LoadBalancer.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`
	// Annotations added to the Service, e.g. for a cloud load balancer.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// NetworkPolicySpec says who, besides peers and settlement engines, may reach the pods.
type NetworkPolicySpec struct {
	// AdminFrom may reach the admin port: the admin API (it changes balances) and /metrics —
	// for example Prometheus's namespace. Empty: no pod (the kubelet's probes are not filtered
	// by NetworkPolicies on common network plugins).
	// +optional
	AdminFrom []networkingv1.NetworkPolicyPeer `json:"adminFrom,omitempty"`
}

// PodDisruptionBudgetSpec bounds voluntary disruptions; set at most one of the two fields.
// +kubebuilder:validation:XValidation:rule="!(has(self.minAvailable) && has(self.maxUnavailable))",message="set minAvailable or maxUnavailable, not both"
type PodDisruptionBudgetSpec struct {
	// MinAvailable pods during a disruption, a number or a percentage.
	// +optional
	MinAvailable *intstr.IntOrString `json:"minAvailable,omitempty"`
	// MaxUnavailable pods during a disruption, a number or a percentage; the default is 1.
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// Middleware is the name of a built-in middleware of the connector.
// +kubebuilder:validation:Enum=errorHandler;deduplicate;rateLimit;maxPacketAmount;throughput;balance;validateFulfillment;expire;stats;alert
type Middleware string

// LoggingSpec is how a connector logs (to stderr, which the container runtime collects).
type LoggingSpec struct {
	// Level is the least severe level logged; unset: info. debug adds the details of link
	// and route-exchange trouble and of expired packets: up to a line per failing packet.
	// +kubebuilder:validation:Enum=debug;info;warn;error
	// +optional
	Level string `json:"level,omitempty"`
	// Format is text (key=value) or json (one object per line, for log pipelines); unset: text.
	// +kubebuilder:validation:Enum=text;json
	// +optional
	Format string `json:"format,omitempty"`
}

// RatesSpec configures the exchange-rate backend (CONNECTOR_BACKEND, CONNECTOR_BACKEND_CONFIG and
// CONNECTOR_SPREAD).
// +kubebuilder:validation:XValidation:rule="!has(self.rates) || (has(self.backend) && self.backend == 'static')",message="rates.rates is the static backend's table: set rates.backend to static"
// +kubebuilder:validation:XValidation:rule="!has(self.ecb) || (has(self.backend) && self.backend == 'ecb')",message="rates.ecb applies only when rates.backend is ecb"
type RatesSpec struct {
	// Backend is one-to-one (rate 1, asset scales converted), static (the Rates table) or ecb
	// (the European Central Bank's daily rates, fetched by the pods and refreshed; see ECB).
	// +kubebuilder:validation:Enum=one-to-one;static;ecb
	// +optional
	Backend string `json:"backend,omitempty"`

	// Spread is the fraction kept on each conversion, a decimal string from 0 up to but below 1:
	// "0.002" is 0.2 %.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|0?[.][0-9]+)$')",message="spread is a fraction, not a percentage: a decimal from 0 up to but below 1 without '%' or exponent, e.g. \"0.002\" for 0.2 %"
	// +optional
	Spread string `json:"spread,omitempty"`

	// Rates maps asset codes to their value in a common unit, as positive decimal strings
	// (static backend). At most 1024 assets: the bound keeps the cost of checking each rate
	// within the API server's budget.
	// +kubebuilder:validation:MaxProperties=1024
	// +optional
	Rates map[string]DecimalString `json:"rates,omitempty"`

	// ECB tunes the ecb backend; unset: the ECB's own file, refreshed hourly, refused after 24h.
	// +optional
	ECB *ECBRatesSpec `json:"ecb,omitempty"`
}

// ECBRatesSpec is the ecb backend's configuration (CONNECTOR_BACKEND_CONFIG of the JS backend).
// +kubebuilder:validation:XValidation:rule="duration(has(self.maxAge) ? self.maxAge : '24h') > duration(has(self.refreshInterval) ? self.refreshInterval : '1h')",message="ecb.maxAge (default 24h) must be longer than ecb.refreshInterval (default 1h), or the rates go stale between two refreshes"
// +kubebuilder:validation:XValidation:rule="[has(self.maxAge) ? self.maxAge : '1s', has(self.refreshInterval) ? self.refreshInterval : '1s'].all(d, duration(d) >= duration('1ms'))",message="ecb.refreshInterval and ecb.maxAge must be at least 1ms"
type ECBRatesSpec struct {
	// URL of the rates file (eurofxref-daily.xml or a mirror of it, http or https); unset:
	// https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml. The pods need egress to it.
	// +kubebuilder:validation:Pattern=`^https?://[^/?#\s]+`
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	URL string `json:"url,omitempty"`

	// RefreshInterval between fetches while rates are in use; unset: 1h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +optional
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// MaxAge after which fetched rates are refused (packets that convert get T00); unset: 24h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +optional
	MaxAge *metav1.Duration `json:"maxAge,omitempty"`
}

// The pattern is an unsigned decimal (digits, optionally a point and digits) with a non-zero
// digit before the point (first branch) or after it (second): exactly the decimals above zero,
// which the runtime wants as it divides by the rate. The rule repeats it to say what to write
// instead; the pattern stays because its error names the path as spec.rates.rates.EUR (a
// rule's: spec.rates.rates[EUR]). The rule's cost on every value of the map would exceed the
// API server's budget but for MaxLength here and MaxProperties on RatesSpec.Rates.
// +kubebuilder:validation:Pattern=`^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)$`
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]*[1-9][0-9]*([.][0-9]+)?|[0-9]+[.][0-9]*[1-9][0-9]*)$')",message="a rate must be a decimal above 0 without sign or exponent, e.g. \"1.08\": the connector divides by it; to refuse conversions of an asset, leave it out of the table"

// DecimalString is a positive decimal number (an exchange rate) written as a string, never a
// float.
type DecimalString string

// ConnectorStatus reports the connector as the operator and its pods see it.
type ConnectorStatus struct {
	BaseStatus `json:",inline"`
	// Address is the ILP address in use (configured or inherited).
	// +optional
	Address string `json:"address,omitempty"`
	// The counts default to 0 in the schema: the API server fills in a zero that the
	// operator's writes leave out (omitempty), so that the ACCOUNTS and PODS columns show 0
	// rather than nothing.

	// Accounts is the number of Accounts that reference this connector.
	// +kubebuilder:default=0
	// +optional
	Accounts int32 `json:"accounts,omitempty"`
	// Replicas is the number of connector pods the workload has (the scale subresource's
	// status.replicas).
	// +kubebuilder:default=0
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// ReadyReplicas is the number of connector pods that pass their readiness probe.
	// +kubebuilder:default=0
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// Selector selects the connector pods, as a label selector string (the scale
	// subresource's label selector, which a HorizontalPodAutoscaler reads the pods' metrics by).
	// +optional
	Selector string `json:"selector,omitempty"`
	// Workload is the kind and name of the object running the pods: Deployment/<name>, or
	// StatefulSet/<name> with the file store.
	// +optional
	Workload string `json:"workload,omitempty"`
	// Image is the connector image the pods run.
	// +optional
	Image string `json:"image,omitempty"`
	// RolledOutTemplate is a hash of the pod template whose roll last completed (every
	// desired pod ran it and was available): pods replaced from that same template since —
	// deleted, crashed, evicted — are not a roll, and Progressing stays False.
	// +optional
	RolledOutTemplate string `json:"rolledOutTemplate,omitempty"`
	// SecretVersions maps the name of every Secret this connector uses (its own and its
	// Accounts') to the Secret's resourceVersion. It changes when a Secret is rotated, which
	// wakes the pods' config source to re-read it: the pods never watch Secrets themselves.
	// +optional
	SecretVersions map[string]string `json:"secretVersions,omitempty"`
	// Pods lists, for each connector pod, the configuration it has applied. Each pod writes its
	// own entry (server-side apply under the field manager ilpfleet-pod-<pod name>), so that a
	// pod that failed to apply shows here even when another pod writes ConfigApplied; such an
	// entry at the current generation makes Ready False (ConfigNotApplied) while its pod
	// exists. The operator drops the entries of pods that no longer exist.
	// +listType=map
	// +listMapKey=name
	// +optional
	Pods []ConnectorPodStatus `json:"pods,omitempty"`
}

// ConnectorPodStatus is what one connector pod reports of the configuration it runs.
type ConnectorPodStatus struct {
	// Name is the pod's name.
	Name string `json:"name"`
	// AppliedGeneration is the Connector generation the pod last tried to apply.
	// +optional
	AppliedGeneration int64 `json:"appliedGeneration,omitempty"`
	// Applied tells whether the pod runs AppliedGeneration in full. False: it keeps its
	// previous configuration, or left some objects out (see Reason and Message).
	Applied bool `json:"applied"`
	// Reason is a CamelCase word: Applied, ObjectsLeftOut, ObjectsNotFullyApplied, InvalidConfig
	// or ApplyFailed.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message says what the pod runs, or why it could not apply the configuration.
	// +optional
	Message string `json:"message,omitempty"`
	// LastTransitionTime is when Applied last changed.
	// +optional
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
}

// The name rules: the operator derives <name> (Services, the Deployment or StatefulSet),
// <name>-admin (Service) and <name>-connector (ServiceAccount, Role, RoleBinding, Lease), so
// <name>-connector alone would allow 53; but the StatefulSet of the file store labels its pods
// controller-revision-hash=<name>-<hash of up to 10 characters>, and a label value has at most
// 63 (kubernetes/kubernetes#64023). The limit holds for every store: the type may change later.
// Both rules check a new object only (the name is immutable): an object admitted before them
// must stay writable — its status, its finalizers — or it could not even be deleted.
// +kubebuilder:validation:XValidation:rule="oldSelf.hasValue() || self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, no dots): the operator names Services after the Connector",optionalOldSelf=true
// +kubebuilder:validation:XValidation:rule="oldSelf.hasValue() || size(self.metadata.name) <= 52",message="metadata.name has at most 52 characters: the operator derives <name>-connector and the StatefulSet's pod labels (<name>-<hash>) from it, which must fit 63",optionalOldSelf=true

// Connector is one ILP connector, run by the operator as pods of the ilpfleet runtime. Its name
// is a DNS-1035 label of at most 52 characters: the operator names Services after it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=ilpc;ilpconn,categories=ilp
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.address`
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.network`
// +kubebuilder:printcolumn:name="Accounts",type=integer,JSONPath=`.status.accounts`
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Workload",type=string,JSONPath=`.status.workload`,priority=1
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.status.image`,priority=1
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

// DefaultAdminPort is the admin port of a Connector without listeners.admin: the JS
// connector's CONNECTOR_ADMIN_API_PORT default.
const DefaultAdminPort int32 = 7780

// ListenerPort is one of a Connector's own listeners: admin or settlement.
// +kubebuilder:object:generate=false
type ListenerPort struct {
	Name string
	Port int32
}

// ListenerPorts are the Connector's own listeners, in that order: admin always, settlement
// when set. The operator exposes them; the pods hold them whatever the Accounts ask.
func (c *Connector) ListenerPorts() []ListenerPort {
	ports := []ListenerPort{{"admin", DefaultAdminPort}}
	l := c.Spec.Listeners
	if l == nil {
		return ports
	}
	if l.Admin != nil {
		ports[0].Port = l.Admin.Port
	}
	if l.Settlement != nil {
		ports = append(ports, ListenerPort{"settlement", l.Settlement.Port})
	}
	return ports
}
