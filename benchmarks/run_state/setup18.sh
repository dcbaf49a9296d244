#!/usr/bin/env bash
# On a new machine, for slot G (issue 17's held budget, --budget_meet_by): install the package
# at COMMIT18 into ~/env18/venv (outside this folder, so run_state.py leaves it out). The venv
# sees the system's TensorFlow (--system-site-packages): no second copy to download.
#   ./setup18.sh REPO
set -euo pipefail
cd "$(dirname "$0")"
E=$HOME/env18
if [ ! -d "$E/venv" ]; then
  rm -rf "$E/src" && mkdir -p "$E/src"
  git -C "$1" archive "$(cat COMMIT18)" | tar -x -C "$E/src"
  python -m venv --system-site-packages "$E/venv" && "$E/venv/bin/pip" install -q --no-deps -e "$E/src"
fi
