#!/usr/bin/env bash
# On a new machine: make this runs directory able to resume (see benchmarks/run_state.py).
#   ./setup.sh REPO DATA    REPO: a cifar10-prune clone; DATA: a folder with cifar-10-batches-bin
# Installs the package at the commit the runs started from (COMMIT) into venv/, so later commits
# never change a running job, and links the data.
set -euo pipefail
cd "$(dirname "$0")"
REPO=$1 DATA=$2
if [ ! -d venv ]; then
  rm -rf src && mkdir src
  git -C "$REPO" archive "$(cat COMMIT)" | tar -x -C src
  python -m venv venv && ./venv/bin/pip install -q -e ./src
fi
[ -e data ] || ln -s "$DATA" data
