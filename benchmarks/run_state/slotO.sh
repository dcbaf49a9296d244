#!/usr/bin/env bash
# Issue 15, item 3 (after slot B): the paper's other network, cnn4, at 10% scale, seed 1,
# float32: model A (l1 0.0002, 0.001, 0) with its dense baseline, then model B (l1 0.0002,
# 0.002, 0; its dense baseline is A's: l1 0 makes them the same). Both stage 0s have the same
# flags and seed, so B's repeats A's: a check that a seed repeats a stage on one machine.
# Rerun to resume.
cd "$(dirname "$0")"
export PYTHON=$HOME/env24/venv/bin/python
$HOME/env24/src/run_experiments.sh --model cnn4 --steps_scale 0.1 --baseline --seed 1 \
   --data_dir data --train_dir cnn4a_s10_seed1 --save_checkpoint_secs 300 || exit $?
$HOME/env24/src/run_experiments.sh --model cnn4 --steps_scale 0.1 --l1_penalties 0.0002,0.002,0 \
   --seed 1 --data_dir data --train_dir cnn4b_s10_seed1 --save_checkpoint_secs 300
