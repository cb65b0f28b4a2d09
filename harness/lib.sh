# Shared by the real-engine harness scripts (sourced, never run): cache paths, logging, and
# apt access to Debian trixie without touching the system's own apt state.
# shellcheck shell=bash

# Everything the harness builds lives here, outside the checkout, so a kept machine (and a
# fresh clone on it) reuses it: the extracted engine, the Docker data root with the built
# images, the trixie package lists, the debootstrapped base tree, Go builds.
CACHE=${MANACORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/manacore}
TRIXIE_MIRROR=${TRIXIE_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# `timed NAME CMD…`: runs CMD and logs how long it took (each stage's time, for CI logs).
timed() {
  local name=$1 start=$SECONDS; shift
  "$@"; local rc=$?
  log "$name: $((SECONDS - start)) s"
  return $rc
}

# `module_dir MODULE VERSION`: the folder of MODULE@VERSION in the Go module cache, downloaded
# first (`go list -m -f {{.Dir}}` only reads the cache: it prints an empty line for a module not
# downloaded yet, which a warm machine never shows). Dies naming the module when there is none.
module_dir() {
  local json dir
  json=$(go mod download -json "$1@$2" 2>&1) || die "go mod download $1@$2 failed: $json"
  dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $1@$2 gave no folder: $json"
  echo "$dir"
}

# Installs bookworm packages the host lacks (no upgrade of anything installed).
host_packages() {
  local missing=() pkg
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' \
    || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing host packages: ${missing[*]}"
  apt-get install -y -qq --no-upgrade "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-upgrade "${missing[@]}" >/dev/null; }
}

# apt-get/apt-cache against Debian trixie with its own sources, lists and cache, and an empty
# status file: the host's apt state (bookworm) is neither read nor written.
TRIXIE_APT=$CACHE/apt-trixie
trixie_opts() {
  echo "-o Dir::Etc::SourceList=$TRIXIE_APT/sources.list -o Dir::Etc::SourceParts=/dev/null" \
       "-o Dir::State::Lists=$TRIXIE_APT/lists -o Dir::Cache=$TRIXIE_APT/cache" \
       "-o Dir::State::status=/dev/null -o APT::Sandbox::User=root"
}
trixie_update() {
  mkdir -p "$TRIXIE_APT/lists/partial" "$TRIXIE_APT/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $TRIXIE_MIRROR trixie main" \
    > "$TRIXIE_APT/sources.list"
  # lists older than a day are refreshed (the archive drops superseded .debs)
  if [ -z "$(find "$TRIXIE_APT/lists" -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    # shellcheck disable=SC2046
    apt-get $(trixie_opts) update -qq >/dev/null
  fi
}
# Version of a trixie package (e.g. `trixie_version docker.io`).
trixie_version() {
  # shellcheck disable=SC2046
  apt-cache $(trixie_opts) show --no-all-versions "$1" | sed -n 's/^Version: //p' | head -1
}
# Downloads a trixie .deb into the current directory.
trixie_download() {
  # shellcheck disable=SC2046
  apt-get $(trixie_opts) download -qq "$@" >/dev/null
}
