#!/usr/bin/env bash
# On a new machine, for slot J (issue 17: the freed zeros restarted):
# install the package at COMMIT22 into ~/env22/venv (outside this folder, so run_state.py
# leaves it out). The venv sees the system's TensorFlow (--system-site-packages): no second
# copy to download.
#   ./setup22.sh REPO
set -euo pipefail
cd "$(dirname "$0")"
E=$HOME/env22
if [ ! -d "$E/venv" ]; then
  rm -rf "$E/src" && mkdir -p "$E/src"
  git -C "$1" archive "$(cat COMMIT22)" | tar -x -C "$E/src"
  python -m venv --system-site-packages "$E/venv" && "$E/venv/bin/pip" install -q --no-deps -e "$E/src"
fi
