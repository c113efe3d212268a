#!/usr/bin/env bash
# Fails when a generated file differs from what `make generate manifests` produces now.
# Works on the working tree, not on git state, so it also catches uncommitted stale files.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
generated=(api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml docs/user-guide.md)
snapshot="$(mktemp -d)"
trap 'rm -rf "$snapshot"' EXIT
for p in "${generated[@]}"; do
	mkdir -p "$snapshot/$(dirname "$p")"
	cp -r "$p" "$snapshot/$p"
done
make --no-print-directory -s generate manifests
stale=0
for p in "${generated[@]}"; do
	if ! diff -ru "$snapshot/$p" "$p"; then stale=1; fi
done
if [[ $stale == 1 ]]; then
	echo "generated files were stale (shown above); they are regenerated now: commit them" >&2
	exit 1
fi
echo "generated files are up to date"
