#!/usr/bin/env bash
# On a new machine, for slot H (issue 17: the budget watched every 10 steps between its checks):
# install the package at COMMIT20 into ~/env20/venv (outside this folder, so run_state.py
# leaves it out). The venv sees the system's TensorFlow (--system-site-packages): no second
# copy to download.
#   ./setup20.sh REPO
set -euo pipefail
cd "$(dirname "$0")"
E=$HOME/env20
if [ ! -d "$E/venv" ]; then
  rm -rf "$E/src" && mkdir -p "$E/src"
  git -C "$1" archive "$(cat COMMIT20)" | tar -x -C "$E/src"
  python -m venv --system-site-packages "$E/venv" && "$E/venv/bin/pip" install -q --no-deps -e "$E/src"
fi
