#!/usr/bin/env bash
# Stops the local cluster started by hack/cluster/up.sh and leaves nothing behind: processes,
# sandboxes and their network namespaces, mounts, bridges, iptables chains and rules, empty
# kubepods cgroups, the sysctls it changed (restored) and its state. Safe to run twice.
# Order (shared/reference/local-cluster.md): kubelet, sandboxes (CNI DEL), containerd, leftover
# shims, mounts, kube-proxy --cleanup, bridges, cgroups; the control plane and CoreDNS stop with
# containerd. The local PersistentVolumes are directories under $CLUSTER_STATE, removed with it.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/hack/cluster/env.sh"
pids="$CLUSTER_RUN/pids"

log() { echo "down.sh: $*" >&2; }

# stop names...: SIGTERM the processes from their pid files together, wait up to 10 s for all of
# them, then SIGKILL what is left.
stop() {
	local name pid i alive=()
	for name in "$@"; do
		[[ -f "$pids/$name.pid" ]] || continue
		pid="$(cat "$pids/$name.pid")"
		kill -TERM "$pid" 2>/dev/null && alive+=("$name:$pid")
		rm -f "$pids/$name.pid"
	done
	for ((i = 0; i < 100 && ${#alive[@]}; i++)); do
		local left=()
		for e in "${alive[@]}"; do kill -0 "${e#*:}" 2>/dev/null && left+=("$e"); done
		alive=("${left[@]}")
		((${#alive[@]})) && sleep 0.1
	done
	for e in "${alive[@]}"; do
		log "${e%%:*} did not stop within 10 s; killing it"
		kill -KILL "${e#*:}" 2>/dev/null
	done
}

stop kubelet
if [[ -S "$CONTAINERD_SOCK" ]]; then
	crictl --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 20s rmp -af >/dev/null 2>&1 || log "crictl rmp failed"
fi
# The rest stops together: each takes 1-3 s to exit on SIGTERM, and nothing needs them now.
stop containerd kube-proxy coredns kube-scheduler kube-controller-manager kube-apiserver etcd
# Shims outlive containerd; end only those bound to this cluster's socket or state dir.
for pid in $(pgrep -f containerd-shim-runc-v2 || true); do
	if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -e "$CONTAINERD_SOCK" -e "$CLUSTER_RUN"; then
		kill -KILL "$pid" 2>/dev/null
	fi
done
# Unmount everything under the cluster's directories, deepest first.
for dir in "$CLUSTER_RUN" "$CLUSTER_STATE"; do
	awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r |
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
done
[[ -x "$CLUSTER_BIN/kube-proxy" ]] && kube-proxy --cleanup >/dev/null 2>&1

# iptables: our guard chains, and the KUBE-* chains kubelet creates that kube-proxy --cleanup keeps.
iptables -D FORWARD -j "$FW_CHAIN" 2>/dev/null
iptables -F "$FW_CHAIN" 2>/dev/null && iptables -X "$FW_CHAIN" 2>/dev/null
iptables -D OUTPUT -j "$SVC_CHAIN" 2>/dev/null
iptables -F "$SVC_CHAIN" 2>/dev/null && iptables -X "$SVC_CHAIN" 2>/dev/null
for ipt in iptables ip6tables; do
	for table in filter nat mangle; do
		chains="$($ipt -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ {print $2}')"
		[[ -z "$chains" ]] && continue
		# Drop the rules that jump into them, then flush and delete the chains.
		$ipt -t "$table" -S | grep -E -- "-j (KUBE-|CNI-)" | grep -v '^-N' | while read -r rule; do
			eval "$ipt -t $table ${rule/-A /-D }" 2>/dev/null
		done
		for c in $chains; do $ipt -t "$table" -F "$c" 2>/dev/null; done
		for c in $chains; do $ipt -t "$table" -X "$c" 2>/dev/null; done
	done
done

for br in "$POD_BRIDGE" "$NODE_BRIDGE"; do ip link del "$br" 2>/dev/null; done
# Leftover pod veths (normally removed by CNI DEL) have a peer in a namespace that is gone.
# Empty kubepods cgroups, deepest first.
for hier in /sys/fs/cgroup/*/; do
	[[ -d "$hier/kubepods" ]] && find "$hier/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done
if [[ -f "$CLUSTER_STATE/sysctl.saved" ]]; then
	while IFS= read -r kv; do sysctl -qw "$kv" 2>/dev/null || log "could not restore $kv"; done <"$CLUSTER_STATE/sysctl.saved"
fi
# libcni's result cache is fixed at /var/lib/cni: remove our entries and, when up.sh created
# them, the directories.
rm -f /var/lib/cni/results/ilpfleet-* 2>/dev/null
if [[ -f "$CLUSTER_STATE/cni-cache.created" ]]; then
	rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
fi
rm -rf "$CLUSTER_STATE" "$CLUSTER_RUN"
log "stopped"
