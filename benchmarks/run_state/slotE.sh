#!/usr/bin/env bash
# Issue 17's quick-start budget, third controller (lambda from the channels that must go, with
# the gradient's push measured over the last interval): q60c_seed1-3. Then issue 15's
# quick-start spread (--quick --baseline), seeds 1-3. Float32. Rerun to resume.
# (q60_seed1: first controller; q60b_seed1: second. Code: COMMIT17 in ~/env17, setup17.sh.)
cd "$(dirname "$0")"
export PYTHON=$HOME/env17/venv/bin/python
R=$HOME/env17/src/run_experiments.sh
for seed in 1 2 3; do
  $R --quick --prune_block_outputs --target_macs 0.6 --seed $seed --data_dir data \
     --train_dir q60c_seed$seed --save_checkpoint_secs 300 || exit $?
done
for seed in 1 2 3; do
  $R --quick --baseline --seed $seed --data_dir data --train_dir quick_seed$seed \
     --save_checkpoint_secs 300 || exit $?
done
