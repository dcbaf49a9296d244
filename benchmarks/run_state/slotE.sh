#!/usr/bin/env bash
# Issue 15's quick-start spread (--quick --baseline), seeds 1-3. Float32. Rerun to resume.
# (This slot first ran issue 17's q60c_seed1-3, third controller, with the same code: COMMIT17
# in ~/env17, setup17.sh.)
cd "$(dirname "$0")"
export PYTHON=$HOME/env17/venv/bin/python
R=$HOME/env17/src/run_experiments.sh
for seed in 1 2 3; do
  $R --quick --baseline --seed $seed --data_dir data --train_dir quick_seed$seed \
     --save_checkpoint_secs 300 || exit $?
done
