#!/usr/bin/env bash
# The tests: set up, lint, run the whole suite; each stage's time is printed (the real-engine
# harness's own stages, e.g. cold builds, are in pytest's "real-engine benchmarks" section).
set -euo pipefail
cd "$(dirname "$0")"
stage() {
  local name=$1 start=$SECONDS rc=0; shift
  "$@" || rc=$?
  echo "test.sh: $name: $((SECONDS - start)) s$([ $rc -eq 0 ] || echo ", failed ($rc)")" >&2
  return $rc
}
stage setup bash scripts/setup.sh
stage ruff .venv/bin/ruff check .
stage pytest .venv/bin/python -m pytest "$@"
