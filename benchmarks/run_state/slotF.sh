#!/usr/bin/env bash
# Issue 17's 10%-scale target: block outputs pruned, 50% of the dense multiply-adds, with the
# dense baseline trained the same steps. Seed 1, float32. Rerun to resume.
cd "$(dirname "$0")"
export PYTHON=$HOME/env17/venv/bin/python
$HOME/env17/src/run_experiments.sh --steps_scale 0.1 --prune_block_outputs --target_macs 0.5 \
   --baseline --seed 1 --data_dir data --train_dir s10_b50_seed1 --save_checkpoint_secs 300
