#!/usr/bin/env bash
# Builds or fetches the programs of the suite's Kubernetes cluster (harness/cluster.sh) once per
# version, into the cache, and links them into .tools/bin of the checkout; prints that folder.
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
#   kubelet, kube-proxy     k8s.io/kubernetes (./go.mod, one module: one dependency graph)
#   kwok                    sigs.k8s.io/kwok (./kwok/go.mod: its own module, see there)
#   coredns, kube-router, local-path-provisioner
#                           `go install MODULE@VERSION` (upstream's own go.mod; versions below)
#   pause                   build/pause/linux/pause.c of the Kubernetes release, gcc -static
#   etcd                    Debian trixie's etcd-server, extracted (a 3 s download; a Go build
#                           of etcd takes 20 s more even on a warm build cache, and minutes cold)
#   containerd, ctr, containerd-shim-runc-v2   Debian sid's containerd (2.x: the kubelet 1.34
#                           wants ≥ 2.0.6; bookworm's 1.6 and trixie's 1.7 are older), extracted;
#                           it runs on bookworm's libc, with bookworm's runc (a host package)
#   ../cni/                 Debian sid's containernetworking-plugins (bridge, host-local, portmap)
# A Go binary is rebuilt only when its version or module files change; each build logs its time.
#   harness/cluster/build.sh
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/../lib.sh"
# shellcheck source=harness/cluster/env.sh
source "$(dirname "$0")/env.sh"
here=$(cd "$(dirname "$0")" && pwd)
tools=$(cd "$here/../.." && pwd)/.tools/bin
mkdir -p "$CACHE/bin" "$tools"
export CGO_ENABLED=0
COREDNS=github.com/coredns/coredns@v1.15.0
KUBE_ROUTER=github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v2.1.0  # the one served
LOCAL_PATH=github.com/rancher/local-path-provisioner@v0.0.30  # K3s' own provisioner

# `go_binary NAME MODULE_DIR PACKAGE VERSION LDFLAGS [FILE…]`: builds PACKAGE in MODULE_DIR as
# $CACHE/bin/NAME-VERSION-KEY (KEY: a hash of go.mod, go.sum and the FILEs) unless it is there.
go_binary() {
  local name=$1 mod=$2 pkg=$3 version=$4 ldflags=$5 key out; shift 5
  key=$(cat "$mod/go.mod" "$mod/go.sum" "$@" | sha256sum | cut -c1-16)
  out=$CACHE/bin/$name-$version-$key
  if [ ! -x "$out" ]; then
    (cd "$mod" && timed "go build $name $version" \
      go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg" \
      2> >(grep -v '^go: downloading' >&2))
    mv "$out.tmp" "$out"
  fi
  ln -sfn "$out" "$tools/$name"
}

# `go_install NAME PACKAGE@VERSION`: `go install` with upstream's own go.mod, once per version.
go_install() {
  local name=$1 version=${2##*@} out
  out=$CACHE/bin/$name-$version
  if [ ! -x "$out" ]; then
    local gobin; gobin=$(mktemp -d)
    GOBIN=$gobin GOFLAGS=-mod=mod timed "go install $2" \
      go install -trimpath -ldflags "-s -w" "$2" 2> >(grep -v '^go: downloading' >&2)
    mv "$gobin/$name" "$out" && rm -rf "$gobin"
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
export GOFLAGS=-mod=mod
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  go_binary "$cmd" "$here" "k8s.io/kubernetes/cmd/$cmd" "$k8s" "$ldflags"
done
unset GOFLAGS

kwok=$(sed -n 's|^\s*sigs.k8s.io/kwok \(v[^ ]*\).*|\1|p' "$here/kwok/go.mod")
[ -n "$kwok" ] || die "no sigs.k8s.io/kwok version in $here/kwok/go.mod"
go_binary kwok "$here/kwok" sigs.k8s.io/kwok/cmd/kwok "$kwok" ""

go_install coredns "$COREDNS"
go_install kube-router "$KUBE_ROUTER"
go_install local-path-provisioner "$LOCAL_PATH"

# pause: the release's own source and flags (build/pause/Makefile), its tag = PAUSE_IMAGE's
src=$(module_dir k8s.io/kubernetes "$k8s")/build/pause
tag=$(sed -n 's/^TAG ?= //p' "$src/Makefile")
[ "registry.k8s.io/pause:$tag" = "$PAUSE_IMAGE" ] \
  || die "Kubernetes $k8s builds pause $tag, harness/cluster/env.sh names $PAUSE_IMAGE"
out=$CACHE/bin/pause-$tag
if [ ! -x "$out" ]; then
  gcc -Os -Wall -Werror -static "-DVERSION=v$tag-$k8s" -o "$out.tmp" "$src/linux/pause.c"
  mv "$out.tmp" "$out"
fi
ln -sfn "$out" "$tools/pause"

dir=$(deb_tree trixie etcd-server)
ln -sfn "$dir/usr/bin/etcd" "$tools/etcd"
dir=$(deb_tree sid containerd)
for cmd in containerd ctr containerd-shim-runc-v2; do ln -sfn "$dir/usr/bin/$cmd" "$tools/$cmd"; done
dir=$(deb_tree sid containernetworking-plugins)
ln -sfn "$dir/usr/lib/cni" "$tools/../cni"
echo "$tools"
