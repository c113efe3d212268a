#!/usr/bin/env bash
# hack/redis-server.sh — print the path of a redis-server binary for the tests, installing
# Debian's redis-server package when it is missing and we are root (as in CI and on developer
# machines here). Otherwise fail with a message that says what to install.
set -euo pipefail

if p="$(command -v redis-server)"; then
  echo "$p"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "redis-server: not on PATH; installing Debian's redis-server package" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The package's service is not started: the tests run their own servers.
  if ! apt-get install -y -qq --no-install-recommends redis-server >&2; then
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends redis-server >&2 || true
  fi
  if p="$(command -v redis-server)"; then
    echo "$p"
    exit 0
  fi
fi
echo "redis-server: not found on PATH and cannot install it (needs root and apt-get); install Debian's redis-server package (apt-get install redis-server) or put redis-server on PATH" >&2
exit 1
