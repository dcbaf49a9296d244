#!/usr/bin/env bash
# Issue 17's 10%-scale target counted in blocks of 16 channels (block outputs, 50% of the dense
# multiply-adds in blocks, freed zeros restarted), seed 1. Stage 0 (no budget; the same seed,
# flags and code path) is a copy of s10_b50_seed1's, which finished it at step 3,000; the dense
# baseline of the schedule is s10_b50_seed1/baseline (slot F).
cd "$(dirname "$0")"
export PYTHON=$HOME/env23/venv/bin/python
$HOME/env23/src/run_experiments.sh --steps_scale 0.1 --prune_block_outputs --target_macs 0.5 \
   --budget_channel_multiple 16 --budget_meet_by 0.5 --seed 1 --data_dir data \
   --train_dir s10_x16_seed1 --save_checkpoint_secs 300
