#!/usr/bin/env bash
# Full-length dense baseline, float32, seed 1 (issue 15). Rerun to resume.
cd "$(dirname "$0")"
PYTHON=$PWD/venv/bin/python ./src/run_experiments.sh --seed 1 --l1_penalties 0,0,0 --data_dir data --train_dir full_dense --save_checkpoint_secs 300
