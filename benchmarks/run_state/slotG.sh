#!/usr/bin/env bash
# Issue 17's quick-start budget with the zeros held once met (--budget_meet_by 0.5: met by
# step 1,000 of the sparsifying stage's 2,000, the rest trains the channels that stay): q60h_seed1-3.
# Float32. Rerun to resume. (Code: COMMIT18; finished.)
cd "$(dirname "$0")"
export PYTHON=$HOME/env18/venv/bin/python
R=$HOME/env18/src/run_experiments.sh
for seed in 1 2 3; do
  $R --quick --prune_block_outputs --target_macs 0.6 --budget_meet_by 0.5 --seed $seed \
     --data_dir data --train_dir q60h_seed$seed --save_checkpoint_secs 300 || exit $?
done
