#!/usr/bin/env bash
# Provisions everything the local single-node cluster runs, cached, and prints the binary folder:
#   - kube-apiserver and etcd through hack/envtest-assets.sh (bin/k8s/<version>-<os>-<arch>/);
#   - kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl built from the
#     published k8s.io/kubernetes module through the wrapper module in hack/cluster/tools/kubernetes,
#     crictl through hack/cluster/tools/crictl, and the cluster DNS (CoreDNS with the plugins the
#     node uses) through hack/cluster/tools/coredns, into bin/cluster/<version>-<os>-<arch>/;
#   - containerd, runc, the CNI plugins, iptables, conntrack and openssl from Debian (apt-get).
# Nothing is downloaded as a binary except Debian packages. Each step is skipped when its output
# is already there. See shared/reference/local-cluster.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.36.3}"
CRICTL_VERSION="${CRICTL_VERSION:-1.36.0}"
K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"
platform="$(go env GOOS)-$(go env GOARCH)"
out="${CLUSTER_BIN_DIR:-$root/bin/cluster/$K8S_VERSION-$platform}"
mkdir -p "$out"

log() { echo "build.sh: $*" >&2; }

# Debian packages: containerd 1.6, runc, bridge/host-local/loopback/portmap CNI plugins.
debs=(containerd runc containernetworking-plugins iptables conntrack openssl)
missing=()
for p in "${debs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing Debian packages: ${missing[*]}"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# The Debian containerd service is not used: up.sh runs its own containerd with its own socket.

# kube-apiserver and etcd are shared with envtest.
assets="$("$root/hack/envtest-assets.sh")"
for b in kube-apiserver etcd; do ln -sf "$assets/$b" "$out/$b"; done

ldflags="-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$K8S_MINOR"
build_k8s() { # name
	local name="$1"
	[[ -x "$out/$name" ]] && return
	log "building $name v$K8S_VERSION (first run only; minutes cold)"
	(cd "$root/hack/cluster/tools/kubernetes" &&
		CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" "k8s.io/kubernetes/cmd/$name")
	mv "$out/$name.tmp" "$out/$name"
}
for b in kubectl kube-scheduler kube-controller-manager kube-proxy kubelet; do build_k8s "$b"; done

if [[ ! -x "$out/crictl" ]]; then
	log "building crictl v$CRICTL_VERSION"
	(cd "$root/hack/cluster/tools/crictl" &&
		CGO_ENABLED=0 go build -trimpath -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=v$CRICTL_VERSION" \
			-o "$out/crictl.tmp" sigs.k8s.io/cri-tools/cmd/crictl)
	mv "$out/crictl.tmp" "$out/crictl"
fi

if [[ ! -x "$out/coredns" ]]; then
	log "building coredns (pinned in hack/cluster/tools/coredns/go.mod; first run only, ~2 min cold)"
	(cd "$root/hack/cluster/tools/coredns" && CGO_ENABLED=0 go build -trimpath -o "$out/coredns.tmp" .)
	mv "$out/coredns.tmp" "$out/coredns"
fi

echo "$out"
