#!/usr/bin/env bash
# Starts a private Docker engine for shiplog's end-to-end tests and benchmarks, on a machine with no
# registry access. Usage: eval "$(scripts/dockerd-up.sh [DIR])" -> exports DOCKER_HOST for that engine.
# - installs docker.io and busybox-static from Debian when missing (needs root);
# - starts dockerd with its own data-root, exec-root, socket and pid file under DIR (default
#   /tmp/shiplog-dockerd), no iptables or bridge, the vfs storage driver; extra dockerd flags can be
#   given in DOCKERD_EXTRA_ARGS (e.g. --config-file);
# - imports shiplog-test/busybox (busybox-static only) for containers that log, and with
#   SHIPLOG_NODE_IMAGE=1 also shiplog-test/node (this machine's node + npm) as a plugin image base.
# Stop it with scripts/dockerd-down.sh [DIR].
set -euo pipefail
D=${1:-/tmp/shiplog-dockerd}
need() { command -v "$1" >/dev/null 2>&1; }
if ! need dockerd || [ ! -x /bin/busybox ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static) >&2
fi
mkdir -p "$D"
export DOCKER_HOST="unix://$D/docker.sock"
if ! docker version >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs \
    --data-root "$D/root" --exec-root "$D/exec" -H "$DOCKER_HOST" --pidfile "$D/docker.pid" \
    ${DOCKERD_EXTRA_ARGS:-} >"$D/dockerd.log" 2>&1 &
  # Up to 5 minutes: at start dockerd removes the network sandboxes of containers it could not clean
  # up before it last stopped, ~60 ms each; a full benchmark run can leave a thousand of them.
  for _ in $(seq 1 600); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
  docker version >/dev/null 2>&1 || { echo "dockerd did not start; see $D/dockerd.log" >&2; tail -20 "$D/dockerd.log" >&2; exit 1; }
fi
if ! docker image inspect shiplog-test/busybox >/dev/null 2>&1; then
  t=$(mktemp -d); mkdir -p "$t/bin" "$t/tmp"; cp /bin/busybox "$t/bin/"
  for c in sh echo seq sleep cat yes head awk printf wc tr date dd true false env touch ls rm mkdir kill test; do ln -s busybox "$t/bin/$c"; done
  tar -C "$t" -c . | docker import - shiplog-test/busybox >/dev/null; rm -rf "$t"
fi
if [ "${SHIPLOG_NODE_IMAGE:-0}" = 1 ] && ! docker image inspect shiplog-test/node >/dev/null 2>&1; then
  t=$(mktemp -d); node=$(readlink -f "$(command -v node)")
  mkdir -p "$t/usr/local/bin" "$t/tmp" "$t/etc"; cp "$node" "$t/usr/local/bin/node"
  ldd "$node" | awk '$3 ~ /^\//{print $3} $1 ~ /^\//{print $1}' | while read -r lib; do
    mkdir -p "$t$(dirname "$lib")"; cp -L "$lib" "$t$lib"; done
  npmdir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  mkdir -p "$t/usr/local/lib/node_modules"; cp -r "$npmdir" "$t/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$t/usr/local/bin/npm"
  cp /bin/busybox "$t/usr/local/bin/busybox"; ln -s /usr/local/bin/busybox "$t/usr/local/bin/sh"
  mkdir -p "$t/bin" "$t/usr/bin"; ln -s /usr/local/bin/busybox "$t/bin/sh"; ln -s /usr/local/bin/busybox "$t/usr/bin/env"
  tar -C "$t" -c . | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - shiplog-test/node >/dev/null; rm -rf "$t"
fi
echo "export DOCKER_HOST=$DOCKER_HOST"
