#!/bin/sh
# docker/start.py's run mode, re-implemented: check the config, step down, exec the homeserver.
set -eu
mode=${1:-run}
[ "$mode" = run ] || { echo "only run mode is supported here, not '$mode'" >&2; exit 2; }
[ $# -gt 0 ] && shift
config=${SYNAPSE_CONFIG_PATH:-${SYNAPSE_CONFIG_DIR:-/data}/homeserver.yaml}
if [ ! -f "$config" ]; then
  echo "Config file '$config' does not exist." >&2; exit 2
fi
set -- python3 -m "${SYNAPSE_WORKER:-synapse.app.homeserver}" --config-path "$config" "$@"
echo "Starting synapse with args $*"
if [ -n "${UID:-}" ] || [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid="${UID:-991}" --regid="${GID:-991}" --clear-groups "$@"
fi
exec "$@"
