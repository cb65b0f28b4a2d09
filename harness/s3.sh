#!/usr/bin/env bash
# The S3 server the backup tests keep their restic repository in: versitygw (Versity's S3
# gateway, Apache-2.0, maintained; its posix backend serves a folder as buckets), built from the
# Go module proxy (harness/s3: a wrapper module pinning the release) once per module set into
# the cache. It listens on loopback; containers reach the host only through their bridge's
# gateway, so while the suite's Docker engine has its default bridge (docker0) at `up`, the
# server also listens on that address (the `containers=` line), and while the suite's cluster
# has its nodes' bridge, on this host's address there (the `nodes=` line: pods reach the host
# as their node). `up` restarts a running server whose addresses changed (the data stays).
#   harness/s3.sh up      start it unless it runs (idempotent); last line: the endpoint URL
#   harness/s3.sh down    stop the server this script started; delete its data
#   harness/s3.sh status  print the endpoint if it runs, exit 1 if not
#   harness/s3.sh build   build versitygw unless the cache has it; print the binary (the
#                         harness's MinIO image is versitygw too: harness/images/minio)
# Credentials are fixed test values (the `access_key=`, `secret_key=` lines).
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=harness/proc.sh
source "$(dirname "$0")/proc.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

RUN=/run/manacore-s3                 # pidfile, logs/, listen (the addresses of this run)
LOGS=$RUN/logs
DATA=${MANACORE_S3_DATA:-$CACHE/s3-data}  # the buckets (deleted by `down`)
PORT=19000
ENDPOINT=http://127.0.0.1:$PORT
ACCESS_KEY=manacore-test
SECRET_KEY=manacore-test-secret-key

# versitygw built once per module set; prints the binary.
binary() {
  local mod=$HERE/s3 version key out
  version=$(sed -n 's|^require github.com/versity/versitygw \(v[^ ]*\)$|\1|p' "$mod/go.mod")
  [ -n "$version" ] || die "no versitygw version in $mod/go.mod"
  key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)
  out=$CACHE/bin/versitygw-$version-$key
  if [ ! -x "$out" ]; then
    mkdir -p "$CACHE/bin"
    (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed "go build versitygw $version" \
      go build -trimpath -ldflags "-s -w" -o "$out.tmp" github.com/versity/versitygw/cmd/versitygw) \
      || die "go build of versitygw failed (module $mod)"
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

answers() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$ENDPOINT/")" != 000 ]; }

report() {
  echo "access_key=$ACCESS_KEY"
  echo "secret_key=$SECRET_KEY"
  sed -n 's|^\(.*\)$|containers=http://\1|p' "$RUN/listen.extra" 2>/dev/null || true
  sed -n 's|^\(.*\)$|nodes=http://\1|p' "$RUN/listen.nodes" 2>/dev/null || true
  echo "$ENDPOINT"
}

# the IPv4 address of a network device; nothing when there is no such device
address() { { ip -4 -o addr show dev "$1" 2>/dev/null || true; } | awk '{print $4}' | cut -d/ -f1 | head -1; }

up() {
  local gateway nodes bridge
  gateway=$(address docker0)
  # the cluster's facts in a shell of their own (they name RUN, DATA … too)
  # shellcheck disable=SC2016  # expanded by that shell
  bridge=$(bash -c 'source "$1" && echo "$BRIDGE"' _ "$HERE/cluster/env.sh")
  nodes=$(address "$bridge")
  if alive versitygw && answers; then
    if [ "${gateway:+$gateway:$PORT}" = "$(cat "$RUN/listen.extra" 2>/dev/null)" ] &&
       [ "${nodes:+$nodes:$PORT}" = "$(cat "$RUN/listen.nodes" 2>/dev/null)" ]; then
      log "s3: reused"; report; return
    fi
    log "s3: restarted to listen on the bridges there now"
    stop versitygw
  fi
  local bin; bin=$(binary)
  mkdir -p "$RUN" "$LOGS" "$DATA"
  local listen=(--port "127.0.0.1:$PORT")
  : >"$RUN/listen.extra"
  : >"$RUN/listen.nodes"
  if [ -n "$gateway" ]; then listen+=(--port "$gateway:$PORT"); echo "$gateway:$PORT" >"$RUN/listen.extra"; fi
  if [ -n "$nodes" ]; then listen+=(--port "$nodes:$PORT"); echo "$nodes:$PORT" >"$RUN/listen.nodes"; fi
  start versitygw "$bin" --access "$ACCESS_KEY" --secret "$SECRET_KEY" "${listen[@]}" posix "$DATA"
  await "versitygw answering" 30 versitygw answers
  log "s3: versitygw on ${listen[*]//--port /}"
  report
}

down() {
  alive versitygw || { log "s3: not running"; rm -rf "$DATA"; return 0; }
  stop versitygw
  rm -rf "$DATA" "$RUN/listen.extra" "$RUN/listen.nodes"
  log "s3: stopped, data deleted"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) alive versitygw && answers && report ;;
  build) binary ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
