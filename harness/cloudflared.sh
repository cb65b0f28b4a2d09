#!/usr/bin/env bash
# Prints the path of cloudflared built from the Go module proxy (harness/cloudflared: a wrapper
# module pinning the release the catalogue's image uses), building it once per module set.
#   harness/cloudflared.sh
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/lib.sh"
mod=$(cd "$(dirname "$0")/cloudflared" && pwd)
release=$(sed -n 's|^// release: \([^ ]*\) = commit .*|\1|p' "$mod/go.mod")
[ -n "$release" ] || die "no '// release: X = commit Y' line in $mod/go.mod"
key=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)
out=$CACHE/bin/cloudflared-$release-$key
if [ ! -x "$out" ]; then
  mkdir -p "$CACHE/bin"
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed "go build cloudflared $release" \
    go build -trimpath -ldflags "-s -w -X main.Version=$release" -o "$out.tmp" \
    github.com/cloudflare/cloudflared/cmd/cloudflared)
  mv "$out.tmp" "$out"
fi
echo "$out"
