#!/usr/bin/env bash
# The Pulumi toolchain of the real-engine suites, built from the Go module proxy once per module
# set into the cache and put into the checkout's .tools/bin (hard links where it can):
#   pulumi                       the CLI and engine                  (harness/toolchain/pulumi)
#   pulumi-language-python       the Python language host            (harness/toolchain/language-python)
#   pulumi-language-python-exec  its exec script, from the sdk/v3 module at the Python SDK's version
#   pulumi-resource-kubernetes   the kubernetes provider plugin      (harness/toolchain/kubernetes)
# What the proxy refuses (the current language host, the docker and random providers) is asked
# for on every run and reported with the proxy's answer, so the day it is served shows in the log.
#   harness/toolchain.sh    build or reuse; one line per binary with its version;
#                           last line: the folder to put first on PATH
set -euo pipefail
# shellcheck source=harness/lib.sh
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=$ROOT/.tools/bin
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
export GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$BIN" "$CACHE/bin"

# The version a wrapper module requires of MODULE (its go.mod's require line).
required() { sed -n "s|^[[:space:]]*\(require \)\{0,1\}$2 \(v[^ ]*\).*|\2|p" "$1/go.mod" | head -1; }

# `build NAME MODULE_DIR PACKAGE VERSION [LDFLAGS]`: go build once per (version, go.mod, go.sum,
# sources) into the cache, and put it into .tools/bin/NAME.
build() {
  local name=$1 mod=$HERE/toolchain/$2 pkg=$3 version=$4 ldflags=${5:-} key out
  key=$(find "$mod" -maxdepth 1 -name 'go.*' -o -name '*.go' -o -name '*.json' | LC_ALL=C sort \
    | xargs cat | sha256sum | cut -c1-16)
  out=$CACHE/bin/$name-$version-$key
  if [ ! -x "$out" ]; then
    (cd "$mod" && timed "go build $name $version" \
      go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") \
      || die "go build of $name failed (module $mod)"
    mv "$out.tmp" "$out"
  fi
  # a file, not a symlink: the language host looks for its exec script next to its own path
  rm -f "$BIN/$name" && { ln "$out" "$BIN/$name" 2>/dev/null || cp "$out" "$BIN/$name"; }
  BUILT+=("$(printf '%-28s %s  (%s)' "$name" "$version" "${out#"$CACHE"/}")")
}
BUILT=()

# --- pulumi: the CLI; its version must be >= the Python SDK's
cli=$(required "$HERE/toolchain/pulumi" github.com/pulumi/pulumi/pkg/v3)
build pulumi pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$cli" \
  "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$cli"

# --- the Python language host. Since v3.80 it is its own module
# (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3), which the proxy refuses
# at every version (403 "This module version is not available"); before that it was a package of
# sdk/v3, and v3.68.0 is the newest such release the proxy serves. The engine falls back to the
# calls it knows (GetRequiredPlugins for GetRequiredPackages, no Handshake); the host runs the
# exec script of the installed SDK's own version (below) with the python first on PATH.
host=$(required "$HERE/toolchain/language-python" github.com/pulumi/pulumi/sdk/v3)
build pulumi-language-python language-python \
  github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python "$host" \
  "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$host"

# --- the exec script the host runs programs with, at the installed Python SDK's version
sdk=v$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("pulumi"))')
exec_script=$(module_dir github.com/pulumi/pulumi/sdk/v3 "$sdk")/python/cmd/pulumi-language-python-exec
[ -f "$exec_script" ] || die "no pulumi-language-python-exec in github.com/pulumi/pulumi/sdk/v3@$sdk"
install -m 0755 "$exec_script" "$BIN/pulumi-language-python-exec"

# --- the kubernetes provider at the release its wrapper pins (= the pinned Python SDK's)
k8s_mod=$HERE/toolchain/kubernetes
k8s=$(sed -n 's|^// release: \([^ ]*\) = commit .*|\1|p' "$k8s_mod/go.mod")
[ -n "$k8s" ] || die "no '// release: X = commit Y' line in $k8s_mod/go.mod"
k8s_sdk=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("pulumi-kubernetes"))')
[ "$k8s" = "$k8s_sdk" ] || die "the kubernetes provider is $k8s but the Python SDK is $k8s_sdk:" \
  "pin pulumi-kubernetes==$k8s in pyproject.toml or move harness/toolchain/kubernetes"
# upstream's `go generate` step: the schema with its version set, the mapping re-serialized
k8s_src=$(module_dir github.com/pulumi/pulumi-kubernetes/provider/v4 \
  "$(required "$k8s_mod" github.com/pulumi/pulumi-kubernetes/provider/v4)")
"$PYTHON" - "$k8s_src/cmd/pulumi-resource-kubernetes" "$k8s_mod" "$k8s" <<'EOF'
import json, pathlib, sys
src, dst, version = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
schema = json.loads((src / "schema.json").read_text())
schema["version"] = version
for name, data in (("schema-embed.json", schema),
                   ("terraform-mapping-embed.json",
                    json.loads((src / "terraform-mapping.json").read_text()))):
    text = json.dumps(data, separators=(",", ":"))
    if not (dst / name).is_file() or (dst / name).read_text() != text:
        (dst / name).write_text(text)
EOF
build pulumi-resource-kubernetes kubernetes manacore.dev/harness/toolchain/kubernetes "$k8s" \
  "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$k8s"

# --- what the proxy refuses: the current language host, the docker and random providers (and
# the upstream module docker bridges); a run of this script asks again and prints the answer
for module in github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3 \
              github.com/pulumi/pulumi-docker/provider/v5 \
              github.com/terraform-providers/terraform-provider-docker \
              github.com/pulumi/pulumi-random/provider/v4; do
  answer=$(go list -m -versions "$module" 2>&1 | sed 's/^[[:space:]]*//' | tr '\n' ' ') || true
  log "not built: $module: ${answer:-served, but no version listed}"
done

printf '%s\n' "${BUILT[@]}"
printf '%-28s %s  (github.com/pulumi/pulumi/sdk/v3@%s)\n' pulumi-language-python-exec "$sdk" "$sdk"
"$BIN/pulumi" version
echo "$BIN"
