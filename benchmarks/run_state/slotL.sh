#!/usr/bin/env bash
# Issue 17's 10%-scale target with --coupled_threshold (the residual stream's channels
# thresholded as one across their batch norms): block outputs, 50% of the dense multiply-adds,
# seed 1. The dense baseline of the same schedule and seed is s10_b50_seed1/baseline (slot F).
cd "$(dirname "$0")"
export PYTHON=$HOME/env23/venv/bin/python
$HOME/env23/src/run_experiments.sh --steps_scale 0.1 --prune_block_outputs --coupled_threshold \
   --target_macs 0.5 --budget_meet_by 0.5 --seed 1 --data_dir data --train_dir s10_g50_seed1 \
   --save_checkpoint_secs 300
