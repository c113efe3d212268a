package controllers

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config/kube"
)

// Names and defaults of what the operator builds for a Connector.
const (
	// defaultFileStoreSize sizes the file store's volume when spec.store.file.size is unset.
	defaultFileStoreSize = "1Gi"
	containerName        = "connector"
	dataVolume           = "data"
	componentConnector   = "connector"
	componentEngine      = "settlement-engine"
	labelComponent       = "app.kubernetes.io/component"
	labelService         = "ilp.ilpfleet.dev/service"
)

// connectorSAName is the name of a Connector's ServiceAccount, Role and RoleBinding.
func connectorSAName(c *ilpv1.Connector) string { return c.Name + "-connector" }

// adminServiceName is the ClusterIP Service of the settlement and admin ports.
func adminServiceName(c *ilpv1.Connector) string { return c.Name + "-admin" }

// selectorLabels select a Connector's pods; they never change, as a workload's selector is immutable.
func selectorLabels(c *ilpv1.Connector) map[string]string {
	return map[string]string{labelComponent: componentConnector, ilpv1.LabelConnector: c.Name}
}

// connectorLabels go on every object the operator owns for a Connector. They deliberately do
// not copy the Connector's own labels: a GitOps tool that tracks by label would otherwise
// claim the generated objects.
func connectorLabels(c *ilpv1.Connector) map[string]string {
	l := selectorLabels(c)
	l["app.kubernetes.io/name"] = "ilpfleet"
	l[LabelManagedBy] = ManagedBy
	return l
}

func replicasOf(c *ilpv1.Connector) int32 {
	if c.Spec.Replicas != nil {
		return *c.Spec.Replicas
	}
	return 1
}

func storeType(c *ilpv1.Connector) ilpv1.StoreType {
	if c.Spec.Store == nil || c.Spec.Store.Type == "" {
		return ilpv1.StoreMemory
	}
	return c.Spec.Store.Type
}

// connectorPorts are the connector-wide container ports (Connector.ListenerPorts).
func connectorPorts(c *ilpv1.Connector) []corev1.ContainerPort {
	var ports []corev1.ContainerPort
	for _, p := range c.ListenerPorts() {
		ports = append(ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.Port, Protocol: corev1.ProtocolTCP})
	}
	return ports
}

// peerServicePorts are the ports of the peer-facing Service: one per distinct port an Account
// listens on (BTP listeners and child servers, ILP-over-HTTP incoming), named btp-<port> or
// http-<port>. Account ports are not container ports, so that an Account change never touches
// the pod template. An Account port that is one of the Connector's own (admin, settlement) is
// left out: the pods refuse that Account, and the port must not become reachable by peers
// through it. Two Accounts on one port make one Service port (the pods refuse the younger
// Account); should they be of both kinds, it is named btp-<port>, whatever their ages, so that
// the name does not depend on the order the cache lists them in.
//
// Each port carries the appProtocol of what it serves (listenAppProtocol), for a service mesh
// or load balancer that reads the protocol from it rather than from the name: Istio takes a
// port named http-* as plain HTTP, which an http.incoming port with tls is not. Of two
// Accounts on one port, the appProtocol is that of the Account whose kind names the port and,
// of two of that kind, the first in the order of the values (kubernetes.io/ws before
// kubernetes.io/wss, http before https), for the same reason as the name.
func peerServicePorts(c *ilpv1.Connector, accounts []ilpv1.Account) []corev1.ServicePort {
	own := map[int32]bool{}
	for _, p := range connectorPorts(c) {
		own[p.ContainerPort] = true
	}
	var listen []accountPort
	for i := range accounts {
		if kind, port, ok := accounts[i].Spec.Link.ListenPort(); ok && !own[port] {
			listen = append(listen, accountPort{kind, port, listenAppProtocol(accounts[i].Spec.Link)})
		}
	}
	slices.SortFunc(listen, func(a, b accountPort) int {
		return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(a.kind, b.kind), cmp.Compare(a.appProtocol, b.appProtocol))
	})
	listen = slices.CompactFunc(listen, func(a, b accountPort) bool { return a.port == b.port })
	var ports []corev1.ServicePort
	for _, p := range listen {
		sp := servicePort(p.kind+"-"+strconv.Itoa(int(p.port)), p.port, intstr.FromInt32(p.port))
		sp.AppProtocol = ptr.To(p.appProtocol)
		ports = append(ports, sp)
	}
	return ports
}

// accountPort is a port an Account's link listens on, the kind of link (btp or http) and the
// appProtocol of the port.
type accountPort struct {
	kind        string
	port        int32
	appProtocol string
}

// The appProtocol values of the peer ports: Kubernetes' own for WebSocket (KEP-3726), the
// IANA service names for HTTP.
const (
	appProtocolWS    = "kubernetes.io/ws"
	appProtocolWSS   = "kubernetes.io/wss"
	appProtocolHTTP  = "http"
	appProtocolHTTPS = "https"
)

// listenAppProtocol is the appProtocol of the port a listening link serves: BTP is WebSocket,
// kubernetes.io/wss with tls in the pod, kubernetes.io/ws without; ILP-over-HTTP is https with
// tls, http without. A plain ILP-over-HTTP port also accepts HTTP/2 with prior knowledge
// (h2c), but it is http rather than kubernetes.io/h2c: HTTP/1.1 is what the peers send and
// what the port must accept, while h2c would have a mesh or gateway speak HTTP/2 to the pods
// whatever the peer spoke (Istio's sidecar takes http as plain HTTP/1.1; Gateway API
// implementations take kubernetes.io/h2c as HTTP/2 with prior knowledge to the backend).
// Empty for a link that does not listen.
func listenAppProtocol(l ilpv1.AccountLink) string {
	switch {
	case l.BTPListener != nil:
		return tlsOr(l.BTPListener.TLS, appProtocolWSS, appProtocolWS)
	case l.BTPChildServer != nil:
		return tlsOr(l.BTPChildServer.TLS, appProtocolWSS, appProtocolWS)
	case l.HTTP != nil && l.HTTP.Incoming != nil:
		return tlsOr(l.HTTP.Incoming.TLS, appProtocolHTTPS, appProtocolHTTP)
	}
	return ""
}

func tlsOr(tls *ilpv1.ServerTLS, withTLS, plain string) string {
	if tls != nil {
		return withTLS
	}
	return plain
}

// adminServicePorts are the admin (and /metrics) port and, when set, the settlement port.
func adminServicePorts(c *ilpv1.Connector) []corev1.ServicePort {
	var ports []corev1.ServicePort
	for _, p := range connectorPorts(c) {
		if p.Name == "admin" || p.Name == "settlement" {
			ports = append(ports, servicePort(p.Name, p.ContainerPort, intstr.FromString(p.Name)))
		}
	}
	return ports
}

func servicePort(name string, port int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: target, Protocol: corev1.ProtocolTCP}
}

// connectorArgs is the connector command of a Connector's pods.
func connectorArgs(c *ilpv1.Connector) []string {
	args := []string{"connector", "--source=kubernetes", "--connector=" + c.Name}
	if l := c.Spec.Logging; l != nil {
		if l.Level != "" {
			args = append(args, "--log-level="+l.Level)
		}
		if l.Format != "" {
			args = append(args, "--log-format="+l.Format)
		}
	}
	return args
}

// privilegedPorts is where the ports a process needs privilege to bind end, by default
// (net.ipv4.ip_unprivileged_port_start is 1024): the pods run as a non-root user without
// capabilities.
const privilegedPorts = 1024

// lowestPrivilegedPort is the lowest port below privilegedPorts that the Connector's pods
// bind — a listener of its own or the link of one of its Accounts — or 0 when there is none.
// Every Account counts, even one the pods leave out: its port is then not bound, and a lower
// sysctl than needed grants nothing beyond the pod's own network namespace.
func lowestPrivilegedPort(c *ilpv1.Connector, accounts []ilpv1.Account) int32 {
	var low int32
	take := func(p int32) {
		if p > 0 && p < privilegedPorts && (low == 0 || p < low) {
			low = p
		}
	}
	for _, p := range c.ListenerPorts() {
		take(p.Port)
	}
	for i := range accounts {
		if _, p, ok := accounts[i].Spec.Link.ListenPort(); ok {
			take(p)
		}
	}
	return low
}

// unprivilegedPortStart lets the pods bind ports from lowPort on without privilege: the pod
// sysctl net.ipv4.ip_unprivileged_port_start, namespaced to the pod's network, which the
// kubelet allows by default and the Pod Security baseline and restricted profiles admit (both
// since their first version). None when lowPort is 0: the template of a Connector without a
// low port stays as it was.
func unprivilegedPortStart(lowPort int32) []corev1.Sysctl {
	if lowPort <= 0 {
		return nil
	}
	return []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: strconv.Itoa(int(lowPort))}}
}

// connectorPodTemplate is the pod template of a Connector's workload. It depends only on the
// inputs that cannot be hot-reloaded (restartInputs) and on lowPort, the lowest port below
// 1024 its pods bind (0: none; lowestPrivilegedPort), itself one of those inputs: everything
// else reaches the pods through their Kubernetes config source.
func connectorPodTemplate(c *ilpv1.Connector, image string, in restartInputs, lowPort int32) corev1.PodTemplateSpec {
	ctr := corev1.Container{
		Name:  containerName,
		Image: image,
		Args:  connectorArgs(c),
		Env:   connectorEnv(c),
		Ports: connectorPorts(c),
		// Readiness only: the admin endpoint comes up with the first valid config, and a pod
		// whose config is invalid must stay up, not ready, and say why in ConfigApplied rather
		// than be restarted in a loop by a liveness probe.
		ReadinessProbe:  healthProbe(),
		SecurityContext: restrictedContainer(),
		VolumeMounts:    []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
	}
	if c.Spec.Resources != nil {
		ctr.Resources = *c.Spec.Resources
	}
	if storeType(c) == ilpv1.StoreFile {
		ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: dataVolume, MountPath: ilpv1.FileStoreMountPath})
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metaLabels(connectorLabels(c), map[string]string{ilpv1.AnnotationRestartInputs: in.String()}),
		Spec: corev1.PodSpec{
			ServiceAccountName:            connectorSAName(c),
			Containers:                    []corev1.Container{ctr},
			Volumes:                       []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			NodeSelector:                  c.Spec.NodeSelector,
			Tolerations:                   c.Spec.Tolerations,
			Affinity:                      c.Spec.Affinity,
			TopologySpreadConstraints:     c.Spec.TopologySpreadConstraints,
			SecurityContext:               &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), FSGroup: ptr.To(int64(65532)), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}, Sysctls: unprivilegedPortStart(lowPort)},
			TerminationGracePeriodSeconds: ptr.To(gracePeriod(c)),
		},
	}
}

// deploymentStrategy is how the Connector's Deployment replaces its pods. The default rolling
// update (maxSurge 25 %, maxUnavailable 25 %) starts a new pod before the old one is gone: no
// pause, which suits sync ILP-over-HTTP, answered by either pod. But a link only one pod can
// serve (onePodLink: a BTP connection, the replies of http mode async) would have two pods at
// once for the seconds of the old one's drain (up to the max hold time + 5 s): the new pod's
// btpClient connection makes the peer drop the old pod's, and the replies to the packets the
// old pod still drains are lost — money the peer counts as paid that we never see. With such
// an Account and one replica (or none), the Deployment therefore uses Recreate, whose new pod
// starts only once the old one has stopped: a pause of the seconds of a restart, which a
// single replica has anyway. Not a rolling update with maxSurge 0 (maxUnavailable 1): the
// Deployment controller sizes a rolling update by the sum of its ReplicaSets' spec.replicas
// (NewRSNewReplicas in k8s.io/kubernetes pkg/controller/deployment/util, 1.36), not by the
// pods that still exist, so once it has scaled the old ReplicaSet to 0 it scales the new one
// up while the old pod, terminating, still drains. Recreate instead waits until no pod of an
// old ReplicaSet is left in a non-terminal phase, terminating ones included (oldPodsRunning).
// With several replicas such an Account is refused anyway (replicasProblem), and Recreate
// would stop every replica at once.
//
// The strategy is not in the pod template: changing it rolls no pod, and raises the
// Deployment's generation without counting as a rollout (deploymentGenerations). It is written
// out in full (the API server's defaults for RollingUpdate), so that the Deployment as stored
// compares equal and an unchanged reconcile writes nothing.
func deploymentStrategy(c *ilpv1.Connector, accounts []ilpv1.Account) appsv1.DeploymentStrategy {
	if replicasOf(c) <= 1 && slices.ContainsFunc(accounts, func(a ilpv1.Account) bool { return onePodLink(a.Spec.Link) }) {
		return appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	}
	return rollingUpdate()
}

// rollingUpdate is the Deployment strategy the API server defaults to, written out in full.
func rollingUpdate() appsv1.DeploymentStrategy {
	quarter := intstr.FromString("25%")
	return appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &quarter, MaxSurge: ptr.To(quarter)}}
}

// connectorEnv tells the in-pod config source where it runs (downward API) and, when the
// container has a memory limit, gives the Go runtime a soft limit at 90 % of it: the connector
// runs with GOGC 400 (docs/operations.md), which lets its heap grow to five times what is live,
// and GOMEMLIMIT makes the collector work harder as the heap nears the limit rather than let
// the kernel kill the pod. The other 10 % is for what the Go heap does not count (stacks,
// the runtime's own memory). spec.env follows (admission refuses the names above in it).
func connectorEnv(c *ilpv1.Connector) []corev1.EnvVar {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	env := []corev1.EnvVar{field("POD_NAMESPACE", "metadata.namespace"), field("POD_NAME", "metadata.name")}
	if c.Spec.Resources != nil {
		if limit, ok := c.Spec.Resources.Limits[corev1.ResourceMemory]; ok && limit.Value() > 0 {
			env = append(env, corev1.EnvVar{Name: "GOMEMLIMIT", Value: strconv.FormatInt(limit.Value()/10*9, 10)})
		}
	}
	return append(env, c.Spec.Env...)
}

func healthProbe() *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("admin")}},
		PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
	}
}

func restrictedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// fileStoreClaim is the volume claim template of the file store's StatefulSet.
func fileStoreClaim(c *ilpv1.Connector) (corev1.PersistentVolumeClaim, error) {
	size := resource.MustParse(defaultFileStoreSize)
	var class *string
	if f := c.Spec.Store.File; f != nil {
		if f.Size != nil {
			size = *f.Size
		}
		class = f.StorageClassName
	}
	if size.Sign() <= 0 {
		return corev1.PersistentVolumeClaim{}, fmt.Errorf("store.file.size %s is not positive", size.String())
	}
	return corev1.PersistentVolumeClaim{
		ObjectMeta: metaLabels(connectorLabels(c), nil),
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}, nil
}

// connectorRules are what a connector pod may do: read its own Connector (by name, which
// allows list/watch only with a metadata.name field selector) and report its status; read the
// Accounts, Routes and SettlementEngines of its namespace (RBAC has no label selectors, so the
// runtime filters them by connectorRef); report the status (balance, connected, ConfigApplied)
// of its own Accounts only, and the ConfigApplied of its own Routes only, by name; read exactly
// the Secrets it uses, by name; emit Events; hold its status Lease.
func connectorRules(c *ilpv1.Connector, accounts, routes, secrets []string) []rbacv1.PolicyRule {
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{ilpv1.GroupVersion.Group}, Resources: []string{"connectors"}, ResourceNames: []string{c.Name}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{ilpv1.GroupVersion.Group}, Resources: []string{"connectors/status"}, ResourceNames: []string{c.Name}, Verbs: []string{"get", "patch", "update"}},
		{APIGroups: []string{ilpv1.GroupVersion.Group}, Resources: []string{"accounts", "routes", "settlementengines"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		// The Lease whose holder writes status when the Connector has several pods
		// (kube.LeaseName). RBAC cannot name an object on create, hence two rules.
		{APIGroups: []string{coordinationv1.GroupName}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{coordinationv1.GroupName}, Resources: []string{"leases"}, ResourceNames: []string{kube.LeaseName(c.Name)}, Verbs: []string{"get", "update"}},
	}
	// Never a rule with an empty resourceNames: it grants every object of the kind, so that
	// one Connector's pods could rewrite another's balances or conditions, or read its Secrets.
	if len(accounts) > 0 {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{ilpv1.GroupVersion.Group}, Resources: []string{"accounts/status"}, ResourceNames: accounts, Verbs: []string{"get", "patch", "update"}})
	}
	if len(routes) > 0 {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{ilpv1.GroupVersion.Group}, Resources: []string{"routes/status"}, ResourceNames: routes, Verbs: []string{"get", "patch", "update"}})
	}
	if len(secrets) > 0 {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: secrets, Verbs: []string{"get", "watch"}})
	}
	return rules
}

// accountNames are the names of accounts, sorted: a stable Role whatever order the cache lists them in.
func accountNames(accounts []ilpv1.Account) []string {
	names := make([]string, len(accounts))
	for i := range accounts {
		names[i] = accounts[i].Name
	}
	slices.Sort(names)
	return names
}

// routeNames are the names of the routes of the Connector named connector, sorted, as
// accountNames. Filtered here rather than by the field index: the index is the cache's, and
// the namespace's Routes are few.
func routeNames(connector string, routes []ilpv1.Route) []string {
	var names []string
	for i := range routes {
		if routes[i].Spec.ConnectorRef == connector {
			names = append(names, routes[i].Name)
		}
	}
	slices.Sort(names)
	return names
}

// connectorPDB is the budget of a multi-replica Connector; unhealthy pods may always be
// evicted, so that a broken rollout never blocks a node drain.
func connectorPDB(c *ilpv1.Connector, pdb *policyv1.PodDisruptionBudget) {
	pdb.Labels = mergeLabels(pdb.Labels, connectorLabels(c))
	pdb.Spec.Selector = &metav1.LabelSelector{MatchLabels: selectorLabels(c)}
	pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable = nil, ptr.To(intstr.FromInt32(1))
	if s := c.Spec.PodDisruptionBudget; s != nil && (s.MinAvailable != nil || s.MaxUnavailable != nil) {
		pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable = s.MinAvailable, s.MaxUnavailable
	}
	pdb.Spec.UnhealthyPodEvictionPolicy = ptr.To(policyv1.AlwaysAllow)
}

// connectorNetworkPolicy admits peers to the peer ports from anywhere, the settlement engines
// that the Connector's Accounts name to the settlement port, and spec.networkPolicy.adminFrom
// to the admin port; nothing else reaches the pods.
func connectorNetworkPolicy(c *ilpv1.Connector, accounts []ilpv1.Account, np *networkingv1.NetworkPolicy) {
	np.Labels = mergeLabels(np.Labels, connectorLabels(c))
	np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: selectorLabels(c)}
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	np.Spec.Ingress = nil
	var peer []networkingv1.NetworkPolicyPort
	for _, sp := range peerServicePorts(c, accounts) {
		peer = append(peer, policyPort(sp.TargetPort))
	}
	if len(peer) > 0 {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{Ports: peer})
	}
	engines := engineNames(accounts)
	for _, p := range connectorPorts(c) {
		from := c.Spec.NetworkPolicy.AdminFrom
		switch {
		case p.Name == "settlement" && len(engines) > 0:
			from = []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: ilpv1.LabelSettlementEngine, Operator: metav1.LabelSelectorOpIn, Values: engines}}}}}
		case p.Name != "admin" || len(from) == 0:
			continue // a port nobody may reach needs no rule
		}
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: from, Ports: []networkingv1.NetworkPolicyPort{policyPort(intstr.FromInt32(p.ContainerPort))}})
	}
}

// engineNames are the SettlementEngines the Accounts name, sorted, once each.
func engineNames(accounts []ilpv1.Account) []string {
	var names []string
	for i := range accounts {
		if n := accounts[i].Spec.SettlementEngineRef; n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func policyPort(port intstr.IntOrString) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: &port}
}

func metaLabels(labels, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Labels: labels, Annotations: annotations}
}

// mergeLabels sets want's labels on have, keeping labels others (users, tools) added.
func mergeLabels(have, want map[string]string) map[string]string {
	if have == nil {
		have = make(map[string]string, len(want))
	}
	for k, v := range want {
		have[k] = v
	}
	return have
}
