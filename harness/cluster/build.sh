#!/usr/bin/env bash
# Builds the programs of the suite's Kubernetes cluster (harness/cluster.sh) once per version,
# into the cache, and links them into .tools/bin of the checkout; prints that folder.
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  k8s.io/kubernetes (./go.mod)
#   pvsim  the volume provisioner of this module (./pvsim)
#   kwok   sigs.k8s.io/kwok (./kwok/go.mod: its own module, see there)
#   etcd   Debian trixie's etcd-server, extracted (a 3 s download; a Go build of etcd takes 20 s
#          more even on a warm build cache, and minutes cold)
# A binary is rebuilt only when its module's go.mod or go.sum (or pvsim's source) changes; each
# build logs its time.
#   harness/cluster/build.sh
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
tools=$(cd "$here/../.." && pwd)/.tools/bin
mkdir -p "$CACHE/bin" "$tools"

# `go_binary NAME MODULE_DIR PACKAGE VERSION LDFLAGS [FILE…]`: builds PACKAGE in MODULE_DIR as
# $CACHE/bin/NAME-VERSION-KEY (KEY: a hash of go.mod, go.sum and the FILEs) unless it is there.
go_binary() {
  local name=$1 mod=$2 pkg=$3 version=$4 ldflags=$5 key out; shift 5
  key=$(cat "$mod/go.mod" "$mod/go.sum" "$@" | sha256sum | cut -c1-16)
  out=$CACHE/bin/$name-$version-$key
  if [ ! -x "$out" ]; then
    (cd "$mod" && CGO_ENABLED=0 timed "go build $name $version" \
      go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
    mv "$out.tmp" "$out"
  fi
  ln -sfn "$out" "$tools/$name"
}

# The Kubernetes release is the one go.mod requires; the version variables make `--version` and
# the API server's /version report it (as the release's own build does).
k8s=$(sed -n 's|^\s*k8s.io/kubernetes \(v1\.[0-9]*\.[0-9]*\).*|\1|p' "$here/go.mod")
[ -n "$k8s" ] || die "no k8s.io/kubernetes version in $here/go.mod"
minor=$(echo "$k8s" | cut -d. -f2)
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  go_binary "$cmd" "$here" "k8s.io/kubernetes/cmd/$cmd" "$k8s" "$ldflags"
done
go_binary pvsim "$here" ./pvsim "$k8s" "" "$here/pvsim/main.go"

kwok=$(sed -n 's|^\s*sigs.k8s.io/kwok \(v[^ ]*\).*|\1|p' "$here/kwok/go.mod")
[ -n "$kwok" ] || die "no sigs.k8s.io/kwok version in $here/kwok/go.mod"
go_binary kwok "$here/kwok" sigs.k8s.io/kwok/cmd/kwok "$kwok" ""

# etcd: extracted once per trixie version (Kubernetes 1.34 supports etcd 3.5 and 3.6)
trixie_update
etcd=$(trixie_version etcd-server)
dir=$CACHE/engine/etcd-server_$etcd
if [ ! -x "$dir/usr/bin/etcd" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && timed "download etcd-server $etcd" trixie_download "etcd-server=$etcd") \
    || die "cannot download etcd-server $etcd"
  mkdir -p "$dir.tmp" && dpkg-deb -x "$tmp"/etcd-server_*.deb "$dir.tmp" && rm -rf "$dir" \
    && mv "$dir.tmp" "$dir"
  rm -rf "$tmp"
fi
ln -sfn "$dir/usr/bin/etcd" "$tools/etcd"
echo "$tools"
