#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver and etcd) from the Go module proxy into
# bin/k8s/<version>-<os>-<arch>/ and prints that folder. Does nothing when both binaries are
# already there. No binary is downloaded: both are compiled from published Go modules through
# wrapper modules (see shared/reference/k8s-operator.md §6): etcd through hack/tools/etcd,
# kube-apiserver through hack/cluster/tools/kubernetes, the module that also builds the rest of
# the local cluster's Kubernetes binaries (one list of k8s.io replacements to keep, not two).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.36.3}"
K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"
out="${ENVTEST_ASSETS_DIR:-$root/bin/k8s/$K8S_VERSION-$(go env GOOS)-$(go env GOARCH)}"
mkdir -p "$out"

build() { # name module-dir (under hack/) package [ldflags]
	local name="$1" dir="$2" pkg="$3" ldflags="${4:-}"
	if [[ -x "$out/$name" ]]; then return; fi
	echo "building $name (first run only; several minutes cold)" >&2
	(cd "$root/hack/$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" "$pkg")
	mv "$out/$name.tmp" "$out/$name"
}

build etcd tools/etcd go.etcd.io/etcd/server/v3
build kube-apiserver cluster/tools/kubernetes k8s.io/kubernetes/cmd/kube-apiserver \
	"-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$K8S_MINOR"

echo "$out"
