#!/usr/bin/env bash
# Installs the pinned JavaScript Interledger packages that the interop tests use as foreign
# peers (test/interop/package.json and its committed package-lock.json) and prints the
# node_modules folder. Runs `npm ci` only when node_modules is missing or the lock file (or
# package.json, or node's major version) changed since the last install: a stamp file inside
# node_modules records what was installed. npm's output goes to stderr only on failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/test/interop"
mods="$dir/node_modules"
stamp="$mods/.ilpfleet-npm-deps.stamp"

for tool in node npm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "npm-deps: '$tool' not found on PATH: install Node.js >= 18 with npm (Debian: apt-get install nodejs npm)" >&2
		exit 1
	fi
done

want="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1) node-$(node -p 'process.versions.node.split(".")[0]')"

install() {
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
	local log
	log="$(mktemp)"
	# npm ci removes node_modules first, so a half-done install never leaves a valid stamp.
	if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1); then
		echo "npm-deps: npm ci failed in $dir:" >&2
		cat "$log" >&2
		rm -f "$log"
		exit 1
	fi
	rm -f "$log"
	echo "$want" >"$stamp"
}

# Tests of several packages may call this at once: serialize the installs.
if command -v flock >/dev/null 2>&1; then
	mkdir -p "$root/bin"
	exec 9>"$root/bin/.npm-deps.lock" # bin/ is git-ignored
	flock -w 600 9 || { echo "npm-deps: timed out waiting for another install" >&2; exit 1; }
fi
install
echo "$mods"
