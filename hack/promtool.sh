#!/usr/bin/env bash
# hack/promtool.sh — print the path of promtool, which checks and unit-tests the alerting rules
# (config/prometheus/alerts.yaml) and the dashboard's queries: promtool on PATH, else
# bin/promtool, extracted once from Debian's prometheus package (apt-get download and dpkg-deb
# -x: nothing is installed and no Prometheus server is started, as installing the package would
# on a machine with systemd).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin/promtool"
if p="$(command -v promtool)"; then
  echo "$p"
  exit 0
fi
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
download() { (cd "$tmp" && apt-get download prometheus >&2); }
if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  echo "promtool: not on PATH; extracting it from Debian's prometheus package into bin/" >&2
  if ! download && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 || true
    download || true
  fi
  for deb in "$tmp"/prometheus_*.deb; do
    [ -f "$deb" ] || continue
    dpkg-deb -x "$deb" "$tmp/x"
    mkdir -p "$root/bin"
    cp "$tmp/x/usr/bin/promtool" "$bin.tmp" && mv "$bin.tmp" "$bin"
    echo "$bin"
    exit 0
  done
fi
echo "promtool: not found on PATH and cannot fetch it (needs apt-get and dpkg-deb, and Debian's package lists); install Debian's prometheus package (apt-get install prometheus) or put promtool on PATH" >&2
exit 1
