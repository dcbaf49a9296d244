#!/usr/bin/env bash
# On a new machine, for slot I (issue 17: the budget counted in blocks of 16 channels):
# install the package at COMMIT21 into ~/env21/venv (outside this folder, so run_state.py
# leaves it out). The venv sees the system's TensorFlow (--system-site-packages): no second
# copy to download.
#   ./setup21.sh REPO
set -euo pipefail
cd "$(dirname "$0")"
E=$HOME/env21
if [ ! -d "$E/venv" ]; then
  rm -rf "$E/src" && mkdir -p "$E/src"
  git -C "$1" archive "$(cat COMMIT21)" | tar -x -C "$E/src"
  python -m venv --system-site-packages "$E/venv" && "$E/venv/bin/pip" install -q --no-deps -e "$E/src"
fi
