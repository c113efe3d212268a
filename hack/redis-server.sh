#!/usr/bin/env bash
# hack/redis-server.sh — print the path of a redis-server binary for the tests (Debian's
# redis-server package, installed when missing and run as root; see debian-tool.sh).
exec "$(dirname "$0")/debian-tool.sh" redis-server redis-server
