#!/usr/bin/env bash
# make e2e: runs test/e2e on a fresh local single-node cluster and always tears it down.
#   1. builds what the node runs (hack/cluster/build.sh; cached in bin/cluster/);
#   2. brings the node up (hack/cluster/up.sh, which also builds and imports the images);
#   3. runs `go test -tags e2e -count=1 ./test/e2e/ -v` with KUBECONFIG, KUBECTL and
#      E2E_CLUSTER_DNS pointing at it (the test deploys the operator as `make deploy` does);
#   4. stops the node (hack/cluster/down.sh) whatever happened, and exits with the test's code.
# Root only. Refuses to run while a local cluster is already up or another cluster script runs,
# so that the test always starts from a fresh node and never tears down a cluster someone else
# started.
# E2E_TEST_FLAGS adds go test flags (e.g. -run); E2E_KEEP=1 keeps the test namespace (the node
# still goes down).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/hack/cluster/env.sh"

log() { echo "e2e.sh: $*" >&2; }

if [[ $EUID -ne 0 ]]; then
	log "make e2e needs root: it runs a real single-node Kubernetes cluster on this machine (containerd,"
	log "kubelet, bridges, iptables rules, sysctls). Run it as root, or run test/e2e yourself against a"
	log "cluster you have: KUBECONFIG=… go test -tags e2e -count=1 ./test/e2e/ -v"
	exit 1
fi
refuse_if_busy "make e2e"

fresh_node

cd "$root"
rc=0
# shellcheck disable=SC2086 # E2E_TEST_FLAGS is a list of flags
KUBECONFIG="$kubeconfig" KUBECTL="$CLUSTER_BIN/kubectl" E2E_CLUSTER_DNS="$CLUSTER_DNS_IP:53" \
	go test -tags e2e -count=1 -timeout 20m ${E2E_TEST_FLAGS:-} ./test/e2e/ -v || rc=$?
exit "$rc"
