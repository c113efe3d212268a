#!/usr/bin/env bash
# hack/promtool.sh — print the path of promtool, which checks and unit-tests the alerting rules
# (config/prometheus/alerts.yaml): Debian's prometheus package, installed when missing and run
# as root (see debian-tool.sh). Its server is not started.
exec "$(dirname "$0")/debian-tool.sh" promtool prometheus
