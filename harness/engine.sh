#!/usr/bin/env bash
# The Docker Engine the real-engine suites own: Debian trixie's dockerd (Engine 26, extracted,
# never installed) on bookworm's containerd and runc, with its own data root under the cache
# and its own socket. Nothing of the system is upgraded.
#   harness/engine.sh up      start it unless it runs (idempotent); last line: the DOCKER_HOST
#   harness/engine.sh down    stop it (only ever the engine this script started)
#   harness/engine.sh status  print the DOCKER_HOST if it runs, exit 1 if not
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=harness/proc.sh
source "$(dirname "$0")/proc.sh"

ENGINE_MAJOR=26                      # trixie ships 26.1.5; volume `subpath` needs >= 26
RUN=/run/manacore-docker             # short: unix socket paths are limited to 108 bytes
SOCK=$RUN/docker.sock
LOGS=$RUN/logs                       # dockerd.log (proc.sh)
DATA=$CACHE/docker                   # the data root: kept, so built images are reused
export DOCKER_HOST=unix://$SOCK

running() { [ -S "$SOCK" ] && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# trixie's docker.io, extracted once per version; prints the folder holding dockerd.
engine_dir() {
  local version dir
  version=$(apt_version trixie docker.io)
  case $version in "$ENGINE_MAJOR".*) ;; *) die "trixie's docker.io is '$version', not $ENGINE_MAJOR.x";; esac
  dir=$(deb_tree trixie docker.io "$version")
  echo "$dir/usr/sbin"
}

up() {
  if running; then
    log "engine: reused ($(docker version --format '{{.Server.Version}}'))"
    echo "$DOCKER_HOST"; return
  fi
  # bookworm's containerd and runc beside the newer dockerd; iptables for the bridge network
  timed "host packages" host_packages containerd runc iptables
  local bin; bin=$(engine_dir)
  mkdir -p "$RUN" "$DATA"
  local hosts=(-H "$DOCKER_HOST")
  # Compose files bind the host's /var/run/docker.sock (watchtower, cadvisor); on a machine
  # without a system engine this one answers there too, so those mounts resolve to it.
  # (a socket nothing answers on is a leftover of an engine that was killed: replaced)
  if [ -S /var/run/docker.sock ] && ! DOCKER_HOST=unix:///var/run/docker.sock docker version \
      >/dev/null 2>&1; then rm -f /var/run/docker.sock; fi
  if [ ! -e /var/run/docker.sock ]; then hosts+=(-H unix:///var/run/docker.sock); fi
  mkdir -p /var/lib/docker  # cadvisor binds a Docker host's default data root (empty here)
  log "engine: starting dockerd $("$bin/dockerd" --version | cut -d' ' -f3 | tr -d ,)"
  start dockerd env PATH="$bin:$PATH" dockerd "${hosts[@]}" --data-root "$DATA" \
    --exec-root "$RUN/exec" --containerd-namespace manacore-test \
    --containerd-plugins-namespace manacore-test-plugins --log-level warn
  await "dockerd answering" 60 dockerd running
  log "engine: started ($(docker version --format '{{.Server.Version}}'), data root $DATA)"
  echo "$DOCKER_HOST"
}

down() {
  alive dockerd || { log "engine: not running"; return 0; }
  stop dockerd 30
  log "engine: stopped"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) running && echo "$DOCKER_HOST" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
