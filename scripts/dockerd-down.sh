#!/usr/bin/env bash
# Stops the private engine started by dockerd-up.sh (same DIR), by its own pid file, and waits for it.
D=${1:-/tmp/shiplog-dockerd}
[ -f "$D/docker.pid" ] || exit 0
pid=$(cat "$D/docker.pid")
kill "$pid" 2>/dev/null || exit 0
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
