#!/usr/bin/env bash
# On a new machine, for slots F and G2 (issue 17: the budget held once met, --budget_meet_by):
# install the package at COMMIT19 into ~/env19/venv (outside this folder, so run_state.py
# leaves it out). The venv sees the system's TensorFlow (--system-site-packages): no second
# copy to download.
#   ./setup18.sh REPO
set -euo pipefail
cd "$(dirname "$0")"
E=$HOME/env19
if [ ! -d "$E/venv" ]; then
  rm -rf "$E/src" && mkdir -p "$E/src"
  git -C "$1" archive "$(cat COMMIT19)" | tar -x -C "$E/src"
  python -m venv --system-site-packages "$E/venv" && "$E/venv/bin/pip" install -q --no-deps -e "$E/src"
fi
