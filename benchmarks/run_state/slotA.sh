#!/usr/bin/env bash
# Full-length pruned run, float32, seed 1 (issue 15). Rerun to resume.
cd "$(dirname "$0")"
PYTHON=$PWD/venv/bin/python ./src/run_experiments.sh --seed 1 --data_dir data --train_dir full --save_checkpoint_secs 300
