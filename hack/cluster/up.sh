#!/usr/bin/env bash
# Starts a real single-node Kubernetes cluster on this machine and waits until the node is Ready:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (its own root, state
# and socket, not the Debian service), kubelet, kube-proxy, bridge CNI, cluster DNS (CoreDNS with
# its kubernetes plugin: a host process on the node address, the nameserver kubelet gives pods)
# and storage (a default StorageClass with static local PersistentVolumes under
# $CLUSTER_STATE/volumes). Binaries come from hack/cluster/build.sh; images from
# hack/cluster/image.sh. Prints the admin kubeconfig path.
# Everything stays on the machine: the node address is a /32 on a port-less bridge, pods may not
# leave their bridge, control-plane side ports bind 127.0.0.1. Stop with hack/cluster/down.sh.
# Settings and why: shared/reference/local-cluster.md ("Settings that matter").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/hack/cluster/env.sh"
pki="$CLUSTER_STATE/pki" cfg="$CLUSTER_STATE/config" logs="$CLUSTER_STATE/logs" pids="$CLUSTER_RUN/pids"

log() { echo "up.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# start name cmd...: runs cmd in its own session, logging to $logs/<name>.log.
start() {
	local name="$1"; shift
	running "$name" && return
	setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
	echo $! >"$pids/$name.pid"
}

# wait_for what seconds cmd...: polls cmd every 0.25 s; on timeout shows the logs and fails.
wait_for() {
	local what="$1" secs="$2"; shift 2
	local i
	for ((i = 0; i < secs * 4; i++)); do
		"$@" >/dev/null 2>&1 && return
		sleep 0.25
	done
	tail -n 20 "$logs"/*.log >&2 || true
	die "timed out after ${secs}s waiting for $what (logs: $logs)"
}

# write_if_changed path: writes stdin to path only when the content differs (kube-proxy exits
# when its config file is rewritten).
write_if_changed() {
	local tmp="$1.new"
	cat >"$tmp"
	if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

[[ $EUID -eq 0 ]] || die "must run as root"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl crictl coredns; do
	[[ -x "$CLUSTER_BIN/$b" ]] || die "$CLUSTER_BIN/$b missing: run hack/cluster/build.sh"
done
mkdir -p "$pki" "$cfg" "$logs" "$pids" "$CLUSTER_STATE/cni/net.d" "$CLUSTER_STATE/kubelet"

# --- host: sysctls, node bridge, pod firewall --------------------------------------------------
save_sysctls() {
	[[ -f "$CLUSTER_STATE/sysctl.saved" ]] && return
	local k
	for k in "${SYSCTLS[@]}"; do
		sysctl -n "$k" >/dev/null 2>&1 && echo "$k=$(sysctl -n "$k")"
	done >"$CLUSTER_STATE/sysctl.saved"
}
host_network() {
	modprobe br_netfilter 2>/dev/null || true
	sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
	if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
		ip link add "$NODE_BRIDGE" type bridge
		ip addr add "$NODE_IP/32" dev "$NODE_BRIDGE"
		ip link set "$NODE_BRIDGE" up
	fi
	if ! iptables -nL "$FW_CHAIN" >/dev/null 2>&1; then
		iptables -N "$FW_CHAIN"
		iptables -A "$FW_CHAIN" -s "$POD_CIDR" ! -o "$POD_BRIDGE" -j DROP -m comment --comment "ilpfleet: pods stay on their bridge"
		iptables -A "$FW_CHAIN" -d "$POD_CIDR" ! -i "$POD_BRIDGE" -j DROP -m comment --comment "ilpfleet: pods stay on their bridge"
		iptables -I FORWARD 1 -j "$FW_CHAIN"
	fi
	# The host reaches Services through kube-proxy's DNAT (nat OUTPUT runs before filter OUTPUT).
	# A Service IP and port that kube-proxy has no rule for (yet) would otherwise follow the
	# default route off the machine, where something may even answer: refuse it here.
	if ! iptables -nL "$SVC_CHAIN" >/dev/null 2>&1; then
		iptables -N "$SVC_CHAIN"
		iptables -A "$SVC_CHAIN" -d "$SERVICE_CIDR" -j REJECT -m comment --comment "ilpfleet: Service IPs stay on the machine"
		iptables -I OUTPUT 1 -j "$SVC_CHAIN"
	fi
}

# --- PKI: one CA; a certificate per component (CN/O drive RBAC) --------------------------------
cert() { # name CN O SANs ext-key-usage
	local name="$1" cn="$2" o="$3" sans="$4" eku="$5"
	[[ -f "$pki/$name.crt" ]] && return
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$pki/$name.key" \
		-subj "/CN=$cn${o:+/O=$o}" -out "$pki/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		[[ -n "$sans" ]] && echo "subjectAltName=$sans"
	} >"$pki/$name.ext"
	openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-days 365 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
	rm -f "$pki/$name.csr" "$pki/$name.ext"
}
kubeconfig() { # name cert
	write_if_changed "$cfg/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ilpfleet-local
  cluster: {server: "https://$NODE_IP:$APISERVER_PORT", certificate-authority: "$pki/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$pki/$2.crt", client-key: "$pki/$2.key"}
contexts:
- name: ilpfleet-local
  context: {cluster: ilpfleet-local, user: $1}
current-context: ilpfleet-local
EOF
}
make_pki() {
	if [[ ! -f "$pki/ca.crt" ]]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
			-keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=ilpfleet-local-ca" 2>/dev/null
	fi
	[[ -f "$pki/sa.key" ]] || { openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null && openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null; }
	cert apiserver kube-apiserver "" \
		"IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" serverAuth
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters "" clientAuth
	cert admin admin system:masters "" clientAuth
	cert controller-manager system:kube-controller-manager "" "" clientAuth
	cert scheduler system:kube-scheduler "" "" clientAuth
	cert kube-proxy system:kube-proxy "" "" clientAuth
	cert coredns system:coredns "" "" clientAuth
	cert kubelet "system:node:$NODE_NAME" system:nodes "" clientAuth
	cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME" serverAuth
	local c
	for c in admin controller-manager scheduler kube-proxy kubelet coredns; do kubeconfig "$c" "$c"; done
	cp "$cfg/admin.kubeconfig" "$KUBECONFIG_ADMIN"
}

# --- control plane -------------------------------------------------------------------------------
control_plane() {
	start etcd etcd --name "$NODE_NAME" --data-dir "$CLUSTER_STATE/etcd" --unsafe-no-fsync \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
		--initial-cluster "$NODE_NAME=http://127.0.0.1:$((ETCD_PORT + 1))" --listen-metrics-urls "http://127.0.0.1:$((ETCD_PORT + 2))"
	wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
	start kube-apiserver kube-apiserver --advertise-address "$NODE_IP" --bind-address "$NODE_IP" \
		--secure-port "$APISERVER_PORT" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=true \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key"
	wait_for kube-apiserver 90 kubectl --kubeconfig "$KUBECONFIG_ADMIN" get --raw /readyz
	start kube-controller-manager kube-controller-manager --kubeconfig "$cfg/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$cfg/controller-manager.kubeconfig" --authorization-kubeconfig "$cfg/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
		--service-cluster-ip-range "$SERVICE_CIDR" --cluster-name ilpfleet-local \
		--root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
		--cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key"
	start kube-scheduler kube-scheduler --kubeconfig "$cfg/scheduler.kubeconfig" \
		--authentication-kubeconfig "$cfg/scheduler.kubeconfig" --authorization-kubeconfig "$cfg/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false
}

# --- cluster DNS: CoreDNS with the kubernetes plugin, on the node address -----------------------
# A host process like the control plane, not a pod: it serves before any pod runs and binds only
# $CLUSTER_DNS_IP:53, which pods reach through the node's INPUT path (nothing leaves the machine).
# It answers only for the cluster's zones: with no forwarder, other names fail fast (REFUSED)
# rather than leave the machine. It reads Services, EndpointSlices, Pods and Namespaces as the
# user system:coredns (a client certificate) through the read-only ClusterRole below.
dns() {
	kubectl --kubeconfig "$KUBECONFIG_ADMIN" apply --server-side --force-conflicts -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "ilpfleet:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "ilpfleet:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "ilpfleet:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
EOF
	write_if_changed "$cfg/Corefile" <<EOF
$CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $CLUSTER_DNS_IP
    errors
    log
    ready 127.0.0.1:$DNS_READY_PORT
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $cfg/coredns.kubeconfig ilpfleet-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
}
EOF
	start coredns coredns -conf "$cfg/Corefile"
	# ready answers 200 once the kubernetes plugin has synced with the API server.
	wait_for "coredns ready" 30 curl -fsS "http://127.0.0.1:$DNS_READY_PORT/ready"
}

# --- storage: a default StorageClass and static local PersistentVolumes ---------------------------
# No provisioner runs on the node: a claim of the default class (the file store of a Connector,
# from its StatefulSet's volume claim template) binds to one of $LOCAL_PVS prepared volumes,
# directories under $CLUSTER_STATE/volumes; kubelet applies the pod's fsGroup to local volumes.
# Retain: a released volume is not reused during the node's life; down.sh removes the directories.
storage() {
	local i
	{
		cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
		for ((i = 0; i < LOCAL_PVS; i++)); do
			mkdir -p "$CLUSTER_STATE/volumes/pv-$i"
			cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: $STORAGE_CLASS-$i}
spec:
  capacity: {storage: $LOCAL_PV_SIZE}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: $STORAGE_CLASS
  volumeMode: Filesystem
  local: {path: "$CLUSTER_STATE/volumes/pv-$i"}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: ["$NODE_NAME"]}]
EOF
		done
	} | kubectl --kubeconfig "$KUBECONFIG_ADMIN" apply --server-side --force-conflicts -f - >/dev/null
}

# --- node: containerd, kubelet, kube-proxy -------------------------------------------------------
runtime_config() {
	# Written before containerd starts: containerd 1.6 misses a CNI file that appears later.
	write_if_changed "$CLUSTER_STATE/cni/net.d/10-ilpfleet.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "ilpfleet", "plugins": [
  {"type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$CLUSTER_STATE/cni/ipam"}}]}
EOF
	write_if_changed "$cfg/containerd.toml" <<EOF
version = 2
root = "$CLUSTER_STATE/containerd"
state = "$CLUSTER_RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CLUSTER_STATE/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM drops CAP_SYS_RESOURCE: without this every sandbox fails in runc create.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$SNAPSHOTTER"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CLUSTER_STATE/cni/net.d"
EOF
	write_if_changed "$cfg/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs          # PID 1 is not systemd
failCgroupV1: false             # kubelet >= 1.35 refuses cgroup v1 otherwise
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$pki/kubelet-serving.crt"
tlsPrivateKeyFile: "$pki/kubelet-serving.key"
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: ["$CLUSTER_DNS_IP"]  # CoreDNS, started by dns() below
# Images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%", nodefs.inodesFree: "2%"}
EOF
	write_if_changed "$cfg/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$cfg/kube-proxy.kubeconfig"}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}
node() {
	start containerd containerd --config "$cfg/containerd.toml"
	wait_for containerd 30 ctr --address "$CONTAINERD_SOCK" version
	"$root/hack/cluster/image.sh" >/dev/null
	start kubelet kubelet --config "$cfg/kubelet.yaml" --kubeconfig "$cfg/kubelet.kubeconfig" \
		--hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$CLUSTER_STATE/kubelet"
	start kube-proxy kube-proxy --config "$cfg/kube-proxy.yaml"
	wait_for "node $NODE_NAME Ready" 120 kubectl --kubeconfig "$KUBECONFIG_ADMIN" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
}

save_sysctls
[[ -e /var/lib/cni || -f "$CLUSTER_STATE/cni-cache.created" ]] || touch "$CLUSTER_STATE/cni-cache.created"
host_network
make_pki
runtime_config
control_plane
dns
node
storage
# kubelet and kube-proxy insert their FORWARD jumps at the top: put the pod guard back in front.
iptables -D FORWARD -j "$FW_CHAIN" && iptables -I FORWARD 1 -j "$FW_CHAIN"
log "node $NODE_NAME Ready; export KUBECONFIG=$KUBECONFIG_ADMIN"
echo "$KUBECONFIG_ADMIN"
