#!/usr/bin/env bash
# Issue 15's spread: the 10%-scale recipe and its dense baseline (plain: the paper's pattern, no
# budget), seeds 1-3, float32. Rerun to resume.
cd "$(dirname "$0")"
export PYTHON=$HOME/env24/venv/bin/python
for seed in 1 2 3; do
  # A finished seed (baseline evaluated, report written) is not evaluated again.
  [ -f s10_seed$seed/results.json ] && [ -d s10_seed$seed/baseline/eval_3 ] && continue
  $HOME/env24/src/run_experiments.sh --steps_scale 0.1 --baseline --seed $seed --data_dir data \
     --train_dir s10_seed$seed --save_checkpoint_secs 300 || exit $?
done
