#!/usr/bin/env bash
# The main job: set up, validate the estate for every stack and print its reports.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
M=.venv/bin/manacore
$M validate
$M ports --stack macmini
$M budget --stack macmini
$M budget --stack k3s
