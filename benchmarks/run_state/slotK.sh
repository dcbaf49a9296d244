#!/usr/bin/env bash
# Issue 17: the quick-start 60% budget with --coupled_threshold (the residual stream's channels
# soft-thresholded as one group-lasso vector across their batch norms), seed 1; compare with
# q60w_seed1 (each gamma thresholded alone) and the seeded dense baseline quick_seed1.
cd "$(dirname "$0")"
export PYTHON=$HOME/env23/venv/bin/python
R=$HOME/env23/src/run_experiments.sh
for seed in 1; do
  $R --quick --prune_block_outputs --coupled_threshold --target_macs 0.6 --budget_meet_by 0.5 \
     --seed $seed --data_dir data --train_dir q60g_seed$seed --save_checkpoint_secs 300 || exit $?
done
