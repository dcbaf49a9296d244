#!/usr/bin/env bash
# Issue 17's 10%-scale target: block outputs pruned, 50% of the dense multiply-adds, met by half
# of the sparsifying stage and held after it, with the dense baseline trained the same steps.
# Seed 1, float32. Rerun to resume. (Code: COMMIT19 in ~/env19, setup_env.sh 19.)
cd "$(dirname "$0")"
export PYTHON=$HOME/env19/venv/bin/python
$HOME/env19/src/run_experiments.sh --steps_scale 0.1 --prune_block_outputs --target_macs 0.5 \
   --budget_meet_by 0.5 --baseline --seed 1 --data_dir data --train_dir s10_b50_seed1 \
   --save_checkpoint_secs 300
