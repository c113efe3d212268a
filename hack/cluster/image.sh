#!/usr/bin/env bash
# Builds the ilpfleet image and the sandbox (pause) image without a Docker engine and imports
# both into the local cluster's containerd (namespace k8s.io):
#   localhost/ilpfleet:dev  — a static `CGO_ENABLED=0 go build` of the repository root
#   localhost/pause:ilpfleet — hack/cluster/pause, the sandbox image up.sh configures
# Each is a one-layer `docker save` archive written by hack/cluster/imagetar into
# bin/cluster/images/. With --no-import (or when the cluster's containerd is not running) the
# archives are only written.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$root/hack/cluster/env.sh"
import=1
[[ "${1:-}" == "--no-import" ]] && import=0

images="$root/bin/cluster/images"
mkdir -p "$images"
cd "$root"

gobuild() { # out package
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/ilpfleet/ilpfleet/internal/version.Version=dev" -o "$1" "$2"
}
gobuild "$images/ilpfleet" .
gobuild "$images/pause" ./hack/cluster/pause
go run ./hack/cluster/imagetar --binary "$images/ilpfleet" --ref "$ILPFLEET_IMAGE" --out "$images/ilpfleet.tar" connector # CMD, as in the Dockerfile
go run ./hack/cluster/imagetar --binary "$images/pause" --ref "$PAUSE_IMAGE" --out "$images/pause.tar"

if ((import)); then
	if [[ ! -S "$CONTAINERD_SOCK" ]]; then
		echo "image.sh: $CONTAINERD_SOCK not found (cluster not up); archives left in $images" >&2
		exit 0
	fi
	for t in pause ilpfleet; do
		ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --snapshotter "$SNAPSHOTTER" "$images/$t.tar" >&2
	done
fi
echo "$images"
