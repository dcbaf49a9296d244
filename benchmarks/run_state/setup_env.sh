#!/usr/bin/env bash
# On a new machine, for the slots that name a COMMIT<N> file (19: F, G2; 20: H;
# 21: I; 22: J; 23: K, L, M; 24: N): install the package at that commit into ~/env<N>/venv (outside
# this folder, so run_state.py leaves it out). The venv sees the system's TensorFlow
# (--system-site-packages): no second copy to download.
#   ./setup_env.sh N REPO
set -euo pipefail
cd "$(dirname "$0")"
E=$HOME/env$1
if [ ! -d "$E/venv" ]; then
  rm -rf "$E/src" && mkdir -p "$E/src"
  git -C "$2" archive "$(cat "COMMIT$1")" | tar -x -C "$E/src"
  python -m venv --system-site-packages "$E/venv" && "$E/venv/bin/pip" install -q --no-deps -e "$E/src"
fi
