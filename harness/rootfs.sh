#!/usr/bin/env bash
# Prints the path of a tarball of Debian trixie (minbase) with the given extra packages
# installed (NAME/sid: from sid), building it once: debootstrap for the base, then
# `apt-get install` in a chroot,
# and PyPI requirements (after `--`) into /opt/venv (which sees the Debian Python packages).
# Cached by content (suite + package list); containers themselves never reach the archive.
#   harness/rootfs.sh [PACKAGE…] [-- PIP_REQUIREMENT…]
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/lib.sh"

ROOTFS=$CACHE/rootfs
mkdir -p "$ROOTFS"
base=$ROOTFS/trixie-minbase.tar

if [ ! -s "$base" ]; then
  host_packages debootstrap
  tree=$(mktemp -d "$ROOTFS/tree.XXXX")
  log "debootstrap trixie minbase (once per machine)"
  timed "debootstrap" debootstrap --variant=minbase trixie "$tree" "$DEBIAN_MIRROR" >/dev/null
  rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/*
  tar -C "$tree" -cf "$base.tmp" . && mv "$base.tmp" "$base"
  rm -rf "$tree"
fi
[ $# -eq 0 ] && { echo "$base"; exit 0; }

packages=() pip=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; pip=("$@"); break; fi
  packages+=("$1"); shift
done
key=$(printf '%s\n' "${packages[@]}" ${pip[@]:+-- "${pip[@]}"} | sort | sha256sum | cut -c1-16)
out=$ROOTFS/trixie-$key.tar
if [ ! -s "$out" ]; then
  tree=$(mktemp -d "$ROOTFS/tree.XXXX")
  trap 'umount "$tree/proc" 2>/dev/null || true; rm -rf "$tree"' EXIT
  tar -C "$tree" -xf "$base"
  cp /etc/resolv.conf "$tree/etc/resolv.conf"
  echo "deb $DEBIAN_MIRROR trixie main" > "$tree/etc/apt/sources.list"
  # a package written NAME/sid comes from sid (a newer release of a Go server, which runs on
  # trixie's libc); everything else stays trixie's
  case " ${packages[*]} " in
    */sid\ *)
      # (the mirror serves sid's Release with a past Valid-Until: the signature is still checked)
      echo "deb [check-valid-until=no] $DEBIAN_MIRROR sid main" >> "$tree/etc/apt/sources.list"
      echo 'APT::Default-Release "trixie";' > "$tree/etc/apt/apt.conf.d/99default-release" ;;
  esac
  # no service starts inside the chroot; PostgreSQL creates no default cluster (the image's
  # entrypoint initialises PGDATA, as the official image does)
  printf '#!/bin/sh\nexit 101\n' > "$tree/usr/sbin/policy-rc.d"; chmod +x "$tree/usr/sbin/policy-rc.d"
  mkdir -p "$tree/etc/postgresql-common/createcluster.d"
  echo "create_main_cluster = false" > "$tree/etc/postgresql-common/createcluster.d/no-main.conf"
  mount -t proc proc "$tree/proc"
  log "installing into trixie: ${packages[*]}"
  timed "apt-get install ${packages[*]}" chroot "$tree" sh -c \
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${packages[*]} >/dev/null"
  if [ ${#pip[@]} -gt 0 ]; then
    # wheels fetched by the host's pip (which reaches PyPI here) for the tree's Python, then
    # installed offline in the chroot
    pyver=$(chroot "$tree" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    timed "pip download ${pip[*]}" python3 -m pip download -q --only-binary=:all: \
      --python-version "$pyver" --implementation cp --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64 \
      -d "$tree/tmp/wheels" "${pip[@]}"
    timed "pip install ${pip[*]}" chroot "$tree" sh -c "python3 -m venv --system-site-packages \
      /opt/venv && PIP_FIND_LINKS= /opt/venv/bin/pip install -q --no-index --find-links /tmp/wheels \
      $(printf "'%s' " "${pip[@]}")"
    rm -rf "$tree/tmp/wheels"
  fi
  umount "$tree/proc"
  rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/* "$tree/usr/sbin/policy-rc.d"
  : > "$tree/etc/resolv.conf"
  tar -C "$tree" -cf "$out.tmp" . && mv "$out.tmp" "$out"
fi
echo "$out"
