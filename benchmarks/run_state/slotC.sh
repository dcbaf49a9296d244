#!/usr/bin/env bash
# Issue 17's quick-start budget (block outputs pruned, 60% of the dense multiply-adds), seeds 1-3,
# then issue 15's quick-start spread (--quick --baseline), seeds 1-3. Float32. Rerun to resume.
# Code: a snapshot of main (~/env17/COMMIT) in ~/env17/venv.
cd "$(dirname "$0")"
export PYTHON=$HOME/env17/venv/bin/python
R=$HOME/env17/src/run_experiments.sh
for seed in 1 2 3; do
  $R --quick --prune_block_outputs --target_macs 0.6 --seed $seed --data_dir data \
     --train_dir q60_seed$seed --save_checkpoint_secs 300 || exit $?
done
for seed in 1 2 3; do
  $R --quick --baseline --seed $seed --data_dir data --train_dir quick_seed$seed \
     --save_checkpoint_secs 300 || exit $?
done
