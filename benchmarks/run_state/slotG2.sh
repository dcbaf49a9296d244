#!/usr/bin/env bash
# Issue 17's quick-start budget, held once met (--budget_meet_by 0.5: met by step 1,000 of the
# sparsifying stage's 2,000; the fewest zero channels that meet it are held, the rest train on):
# q60k_seed1-3. Float32. Rerun to resume. (Code: COMMIT19 in ~/env19, setup_env.sh 19. slotG.sh ran
# seed 1 with COMMIT18, which held every zero: q60h_seed1.)
cd "$(dirname "$0")"
export PYTHON=$HOME/env19/venv/bin/python
R=$HOME/env19/src/run_experiments.sh
for seed in 1; do  # seeds 2-3 go to the finer-check version (slot H)
  $R --quick --prune_block_outputs --target_macs 0.6 --budget_meet_by 0.5 --seed $seed \
     --data_dir data --train_dir q60k_seed$seed --save_checkpoint_secs 300 || exit $?
done
