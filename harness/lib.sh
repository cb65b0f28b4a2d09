# Shared by the real-engine harness scripts (sourced, never run): cache paths, logging, and
# apt access to Debian trixie without touching the system's own apt state.
# shellcheck shell=bash

# Everything the harness builds lives here, outside the checkout, so a kept machine (and a
# fresh clone on it) reuses it: the extracted Debian packages, the Docker data root with the built
# images, the trixie package lists, the debootstrapped base tree, Go builds.
CACHE=${MANACORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/manacore}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
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

# apt-get/apt-cache against Debian SUITE (trixie, sid) with its own sources, lists and cache, and
# an empty status file: the host's apt state (bookworm) is neither read nor written.
apt_opts() {
  local dir=$CACHE/apt-$1
  echo "-o Dir::Etc::SourceList=$dir/sources.list -o Dir::Etc::SourceParts=/dev/null" \
       "-o Dir::State::Lists=$dir/lists -o Dir::Cache=$dir/cache" \
       "-o Dir::State::status=/dev/null -o APT::Sandbox::User=root"
}
apt_update() {
  local dir=$CACHE/apt-$1
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  # sid's Release is at times served past its Valid-Until: the signature is still checked
  local options="signed-by=/usr/share/keyrings/debian-archive-keyring.gpg"
  [ "$1" != sid ] || options+=" check-valid-until=no"
  local suite="[$options] $DEBIAN_MIRROR $1 main"
  printf 'deb %s\ndeb-src %s\n' "$suite" "$suite" >"$dir/sources.list"
  # lists older than a day are refreshed (the archive drops superseded .debs)
  if [ -z "$(find "$dir/lists" -name '*Sources*' -mmin -1440 2>/dev/null | head -1)" ]; then
    # shellcheck disable=SC2046
    apt-get $(apt_opts "$1") update -qq >/dev/null || die "apt-get update of Debian $1 failed"
  fi
}
# `apt_version SUITE PACKAGE`: the version of PACKAGE in Debian SUITE (its lists updated first).
apt_version() {
  apt_update "$1"
  # shellcheck disable=SC2046
  apt-cache $(apt_opts "$1") show --no-all-versions "$2" 2>/dev/null \
    | sed -n 's/^Version: //p' | head -1
}
# `deb_tree SUITE PACKAGE [VERSION]`: PACKAGE's .deb from Debian SUITE (its current version unless
# given) extracted, never installed, once per version into the cache; prints that folder.
deb_tree() {
  local suite=$1 pkg=$2 version=${3:-} dir tmp
  [ -n "$version" ] || version=$(apt_version "$suite" "$pkg")
  [ -n "$version" ] || die "Debian $suite has no package $pkg"
  dir=$CACHE/deb/${pkg}_${version//:/_}  # no ':' (epochs): the folder may go on PATH
  if [ ! -d "$dir" ]; then
    apt_update "$suite"
    tmp=$(mktemp -d)
    # shellcheck disable=SC2046
    (cd "$tmp" && apt-get $(apt_opts "$suite") download -qq "$pkg=$version" >/dev/null) \
      || die "cannot download $pkg $version from Debian $suite"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp" && dpkg-deb -x "$tmp"/*.deb "$dir.tmp" \
      && mv "$dir.tmp" "$dir"
    rm -rf "$tmp"
    log "extracted $pkg $version (Debian $suite)"
  fi
  echo "$dir"
}
