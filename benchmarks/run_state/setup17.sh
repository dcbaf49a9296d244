#!/usr/bin/env bash
# On a new machine, for slots C-F (issue 17's budget runs and the quick-start spread): install
# the package at COMMIT17 into ~/env17/venv (outside this folder, so run_state.py leaves it out).
#   ./setup17.sh REPO
set -euo pipefail
cd "$(dirname "$0")"
E=$HOME/env17
if [ ! -d "$E/venv" ]; then
  rm -rf "$E/src" && mkdir -p "$E/src"
  git -C "$1" archive "$(cat COMMIT17)" | tar -x -C "$E/src"
  python -m venv "$E/venv" && "$E/venv/bin/pip" install -q -e "$E/src"
fi
