# Shared settings of the local cluster scripts (sourced, not run). Every address stays on the
# machine: the node address is a /32 on a port-less bridge that up.sh creates, pods live on their
# own bridge and may not leave it (see shared/reference/local-cluster.md). Override any value
# through the environment.
: "${K8S_VERSION:=1.36.3}"
: "${CLUSTER_STATE:=/var/lib/ilpfleet-cluster}"     # etcd, containerd root, kubelet, PKI, logs
: "${CLUSTER_RUN:=/run/ilpfleet-cluster}"           # sockets, pid files, containerd state
: "${CLUSTER_BIN:=$root/bin/cluster/$K8S_VERSION-$(go env GOOS)-$(go env GOARCH)}"
: "${NODE_NAME:=ilpfleet-node}"
: "${NODE_BRIDGE:=ilpnode0}"                          # holds only the node address
: "${NODE_IP:=10.199.0.1}"
: "${POD_BRIDGE:=ilpcni0}"
: "${POD_CIDR:=10.244.0.0/24}"
: "${SERVICE_CIDR:=10.96.0.0/16}"
: "${KUBERNETES_SERVICE_IP:=10.96.0.1}"
: "${APISERVER_PORT:=6443}"
: "${ETCD_PORT:=12379}"                               # not 2379: envtest or a host etcd may use it
: "${ILPFLEET_IMAGE:=localhost/ilpfleet:dev}"
: "${PAUSE_IMAGE:=localhost/pause:ilpfleet}"
: "${SNAPSHOTTER:=overlayfs}"                       # native where overlayfs is missing
: "${FW_CHAIN:=ILPFLEET-PODS}"                        # our FORWARD guard chain
CONTAINERD_SOCK="$CLUSTER_RUN/containerd.sock"
KUBECONFIG_ADMIN="$CLUSTER_STATE/admin.kubeconfig"
# Sysctls the node changes (kubelet, kube-proxy, and ours); up.sh saves them, down.sh restores.
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
	net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max
	net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)
PATH="$CLUSTER_BIN:$PATH"
