#!/usr/bin/env bash
# Issue 17's speed, with the zeros not held restarted: the quick start with block outputs pruned
# to 50% of the dense multiply-adds counted in blocks of 16 channels: q50x16r_seed1 (slot I ran
# it without the restart: q50x16_seed1). Float32. Rerun to resume.
# (Code: COMMIT22 in ~/env22, setup_env.sh 22.)
cd "$(dirname "$0")"
# Stage 0 and its compression were copied from q60k_seed1 (same flags and seed; stage 0 trains
# without a budget), to save its 800 steps.
export PYTHON=$HOME/env22/venv/bin/python
R=$HOME/env22/src/run_experiments.sh
for seed in 1; do
  $R --quick --prune_block_outputs --target_macs 0.5 --budget_channel_multiple 16 \
     --budget_meet_by 0.5 --seed $seed --data_dir data --train_dir q50x16r_seed$seed \
     --save_checkpoint_secs 300 || exit $?
done
