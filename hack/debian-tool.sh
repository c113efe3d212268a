#!/usr/bin/env bash
# hack/debian-tool.sh COMMAND PACKAGE — print the path of COMMAND for the tests, installing
# Debian's PACKAGE when COMMAND is missing and we are root (as in CI and on developer machines
# here). Otherwise fail with a message that says what to install. A package's service is not
# started: the tests run their own servers, or only the package's command-line tools.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 COMMAND PACKAGE" >&2
  exit 2
fi
cmd="$1" pkg="$2"

if p="$(command -v "$cmd")"; then
  echo "$p"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "$cmd: not on PATH; installing Debian's $pkg package" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "$pkg" >&2; then
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends "$pkg" >&2 || true
  fi
  if p="$(command -v "$cmd")"; then
    echo "$p"
    exit 0
  fi
fi
echo "$cmd: not found on PATH and cannot install it (needs root and apt-get); install Debian's $pkg package (apt-get install $pkg) or put $cmd on PATH" >&2
exit 1
