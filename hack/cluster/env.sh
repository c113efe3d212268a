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
: "${SVC_CHAIN:=ILPFLEET-SERVICES}"                   # our OUTPUT guard chain (Service IPs)
: "${CLUSTER_DOMAIN:=cluster.local}"
: "${CLUSTER_DNS_IP:=$NODE_IP}"                       # CoreDNS serves on the node address, port 53
: "${DNS_READY_PORT:=18181}"                          # CoreDNS's ready endpoint, on 127.0.0.1
: "${LOCAL_PVS:=16}"                                  # static local PersistentVolumes up.sh creates
: "${LOCAL_PV_SIZE:=5Gi}"
: "${STORAGE_CLASS:=ilpfleet-local}"                  # the default StorageClass (no provisioner)
CONTAINERD_SOCK="$CLUSTER_RUN/containerd.sock"
KUBECONFIG_ADMIN="$CLUSTER_STATE/admin.kubeconfig"
# Sysctls the node changes (kubelet, kube-proxy, and ours); up.sh saves them, down.sh restores.
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
	net.ipv4.conf.all.route_localnet net.netfilter.nf_conntrack_max
	net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)
PATH="$CLUSTER_BIN:$PATH"

# running NAME: the node's process NAME (pid file in $CLUSTER_RUN/pids) is alive.
running() {
	local f="$CLUSTER_RUN/pids/$1.pid"
	[[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# refuse_if_busy NAME exits with a message when a local cluster is up, or when another script of
# the node is still building or starting it (before its pid files exist): two builds race on the
# same files, and two nodes cannot share the machine. The caller's own command substitutions are
# children of its shell and look like it; they are left out. Used by e2e.sh and demo.sh, which
# start from a fresh node and tear it down afterwards.
refuse_if_busy() {
	local name="$1" pid ppid others=()
	if running kube-apiserver; then
		echo "$name: a local cluster is already running (make cluster-up, make e2e, make demo?): stop it with" >&2
		echo "$name: make cluster-down first; $name starts from a fresh node and tears it down afterwards" >&2
		exit 1
	fi
	for pid in $(pgrep -f '^(/[^ ]*/)?bash [^ ]*hack/cluster/(e2e|up|build|demo)\.sh' || true); do
		ppid="$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ' || true)"
		[[ $pid == "$$" || -z $ppid || $ppid == "$$" ]] || others+=("$pid")
	done
	if ((${#others[@]})); then
		echo "$name: another hack/cluster script is running (pids ${others[*]}: make e2e, make cluster-up or" >&2
		echo "$name: make demo?); wait for it to end: only one local cluster can run on this machine" >&2
		exit 1
	fi
}

# down_on_exit: from now on, whatever ends the calling script (its end, an error, Ctrl-C or
# TERM), hack/cluster/down.sh stops the node and the script exits with its own code. Used by
# fresh_node, once there is something to tear down.
down_on_exit() {
	trap _down_now EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# fresh_node builds the node's binaries (cached in bin/cluster/), then arms down_on_exit (only
# then: a failed build has started nothing to tear down) and brings the node up; kubeconfig is
# set to its admin kubeconfig. Call it plainly, not in $(…): the trap must be the caller's.
fresh_node() {
	local name
	name="$(basename "$0")"
	echo "$name: building the node's binaries (cached in bin/cluster/; the first time takes minutes)" >&2
	"$root/hack/cluster/build.sh" >/dev/null
	down_on_exit
	echo "$name: bringing the node up" >&2
	kubeconfig="$("$root/hack/cluster/up.sh")"
}

_down_now() {
	local rc=$? name
	name="$(basename "$0")"
	trap - EXIT INT TERM
	echo "$name: stopping the node and removing everything it created" >&2
	"$root/hack/cluster/down.sh" || echo "$name: hack/cluster/down.sh failed: check for leftovers" >&2
	echo "$name: done in $SECONDS s; exit code $rc" >&2
	exit "$rc"
}
