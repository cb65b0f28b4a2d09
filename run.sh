#!/usr/bin/env bash
# The main job: set up, validate the estate for every stack, print its reports and render every
# export into out/ (override with OUT=dir).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
M=.venv/bin/manacore
OUT=${OUT:-out}
$M validate
$M ports --stack macmini
$M budget --stack macmini
$M budget --stack k3s
$M render compose --stack macmini --out "$OUT/macmini/compose"
$M render tunnel --stack macmini --out "$OUT/macmini/tunnel"
$M render helm --stack k3s --out "$OUT/k3s/helm"
$M render tunnel --stack k3s --out "$OUT/k3s/tunnel"
$M migrate --stack macmini --out "$OUT/migration"
$M graph --stack macmini --out "$OUT/macmini/graph.mmd"
$M graph --stack k3s --out "$OUT/k3s/graph.mmd"
echo "exports written to $OUT/"
