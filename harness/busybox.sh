#!/usr/bin/env bash
# Prints the path of a BusyBox built the way the official `busybox` image builds it
# (docker-library/busybox Dockerfile.builder: upstream's source, `make defconfig`), static here,
# once per version into the cache. Debian's own busybox leaves out applet options that defconfig has
# (nc's -z, NC_110_COMPAT, among them), so the helpers and init containers of the exports would
# not behave here as they do with the real image. The source is the upstream tarball Debian
# sid ships as busybox's .orig.tar (unpatched; sid has the release the exports pin).
#   harness/busybox.sh
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/lib.sh"
version=$(apt_version sid busybox)
[ -n "$version" ] || die "Debian sid has no busybox source"
upstream=${version#*:}; upstream=${upstream%%-*}
out=$CACHE/busybox/$upstream/busybox
if [ ! -x "$out" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # shellcheck disable=SC2046
  (cd "$work" && apt-get $(apt_opts sid) source --download-only -qq "busybox=$version" \
    >/dev/null) || die "cannot download the busybox $version source"
  # the tarball, not its upstream signature (.orig.tar.bz2.asc, which sid ships beside it)
  orig=$(find "$work" -maxdepth 1 -name "busybox_$upstream.orig.tar.*" ! -name '*.asc' | head -1)
  [ -n "$orig" ] || die "busybox $version: no .orig.tar in the source package"
  tar -C "$work" -xf "$orig"
  src=$work/busybox-$upstream
  make -C "$src" -s defconfig >/dev/null
  # static (the official glibc build links libc dynamically and copies libnss into the image;
  # a static glibc resolves names through files and DNS all the same); tc does not build against
  # current kernel headers (its CBQ qdisc is gone from them): upstream patches it (no-cbq.patch),
  # here it is left out
  sed -i -e 's/^# CONFIG_STATIC is not set$/CONFIG_STATIC=y/' -e 's/^CONFIG_TC=y$/# CONFIG_TC is not set/' \
    "$src/.config"
  timed "build busybox $upstream" make -C "$src" -s -j"$(nproc)" busybox >/dev/null 2>&1 \
    || make -C "$src" -s busybox  # again, to show why
  "$src/busybox" nc --help 2>&1 | grep -q -- '-z' || die "busybox $upstream: nc has no -z"
  mkdir -p "$(dirname "$out")" && cp "$src/busybox" "$out.tmp" && mv "$out.tmp" "$out"
fi
echo "$out"
