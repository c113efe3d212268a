#!/usr/bin/env bash
# make demo as root: the demo on a fresh local single-node cluster, always torn down afterwards.
#   1. builds what the node runs (hack/cluster/build.sh; cached in bin/cluster/) and bin/ilpfleet
#      (the load generator the demo pays with from this host);
#   2. brings the node up (hack/cluster/up.sh, which also builds and imports the images);
#   3. deploys the operator as `make deploy` does and waits until it is available;
#   4. runs `go run ./hack/demo --cluster`: the sample fleet as pods, a payment through the
#      Services' ClusterIPs, a live Account change with no pod restart, then how to look around;
#   5. when stdin is a terminal, waits for Enter (or Ctrl-C); otherwise (CI, pipes) goes on;
#   6. stops the node (hack/cluster/down.sh) whatever happened, and exits with the demo's code.
# Root only. Refuses to run while a local cluster is already up: it would tear down a cluster
# someone else started.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/hack/cluster/env.sh"

log() { echo "demo.sh: $*" >&2; }

if [[ $EUID -ne 0 ]]; then
	log "needs root: it runs a real single-node Kubernetes cluster on this machine (containerd, kubelet,"
	log "bridges, iptables rules, sysctls). As another user, make demo runs on a local control plane."
	exit 1
fi
refuse_if_busy "make demo"

cd "$root"
log "building bin/ilpfleet"
go build -o "$root/bin/ilpfleet" .
fresh_node
kubectl="$CLUSTER_BIN/kubectl"

log "deploying the operator: kubectl apply --server-side -k hack/cluster/overlay"
"$kubectl" --kubeconfig "$kubeconfig" apply --server-side --force-conflicts -k hack/cluster/overlay >/dev/null
"$kubectl" --kubeconfig "$kubeconfig" wait --for=condition=Established --timeout=3m \
	crd/connectors.ilp.ilpfleet.dev crd/accounts.ilp.ilpfleet.dev crd/routes.ilp.ilpfleet.dev \
	crd/settlementengines.ilp.ilpfleet.dev >/dev/null
# kubectl's discovery cache (~/.kube/cache, kept 10 min per API server address) was filled by the
# apply above, before the CRDs existed, or by an earlier node at the same address: refresh it,
# or `kubectl get ilp` (a category, which a cache miss does not refresh) says "no resource type".
"$kubectl" --kubeconfig "$kubeconfig" api-resources --api-group=ilp.ilpfleet.dev >/dev/null
"$kubectl" --kubeconfig "$kubeconfig" -n ilpfleet-system wait --for=condition=Available --timeout=3m \
	deploy/ilpfleet-controller-manager >/dev/null
log "the operator is available; $SECONDS s so far"

go run ./hack/demo --cluster --kubeconfig "$kubeconfig" --kubectl "$kubectl" --binary "$root/bin/ilpfleet"

if [[ -t 0 ]]; then
	# read fails at end of input (Ctrl-D): clean up then too.
	read -r -p "press Enter to stop and clean up " _ || true
else
	log "stdin is not a terminal: cleaning up right away"
fi
