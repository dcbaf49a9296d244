#!/usr/bin/env bash
# The published recipe end to end (ORIGINAL.md section 1): three training stages with an eval
# after each, then the slim SavedModel, then a results table.
#
#   ./run_experiments.sh [--data_dir DIR] [--train_dir DIR] [--model resnet20|cnn4]
#                        [--steps_scale S] [--quick] [--l1_penalties A,B,C]
#                        [any other flag for every train/eval call]
#
# --steps_scale S multiplies every stage's max_steps (at least 1 step); --quick means
# --steps_scale 0.02 plus --recalibrate_bn 100 (short stages leave BN statistics stale);
# --l1_penalties replaces the three stages' l1_penalty (e.g. 0.0002,0.002,0 for cnn4 model B).
# Everything goes under --train_dir: stages cifar10_train_{0..3}, evals eval_{1..3},
# saved_model (slim, stage 3) and saved_model_dense (stage 0), results.md/.json, widths.svg.
# Stops at the first failing step with its exit code; rerunning resumes where it stopped.
set -uo pipefail

DATA_DIR=/tmp/cifar10_data
TRAIN_DIR=/tmp/cifar10_experiment
MODEL=resnet20
SCALE=1
EXTRA=()
PASS=()
PYTHON=${PYTHON:-python}
L1_OVERRIDE=""

while [ $# -gt 0 ]; do
  case "$1" in
    --data_dir) DATA_DIR=$2; shift 2 ;;
    --data_dir=*) DATA_DIR=${1#*=}; shift ;;
    --train_dir) TRAIN_DIR=$2; shift 2 ;;
    --train_dir=*) TRAIN_DIR=${1#*=}; shift ;;
    --model) MODEL=$2; shift 2 ;;
    --model=*) MODEL=${1#*=}; shift ;;
    --steps_scale) SCALE=$2; shift 2 ;;
    --steps_scale=*) SCALE=${1#*=}; shift ;;
    --l1_penalties) L1_OVERRIDE=$2; shift 2 ;;
    --l1_penalties=*) L1_OVERRIDE=${1#*=}; shift ;;
    --quick) SCALE=0.02; EXTRA=(--recalibrate_bn 100); shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    --*=*) PASS+=("$1"); shift ;;
    --*) if [ $# -gt 1 ] && [[ "$2" != --* ]]; then PASS+=("$1" "$2"); shift 2; else PASS+=("$1"); shift; fi ;;
    *) echo "run_experiments.sh: unexpected argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

case "$MODEL" in
  # l1_penalty, max_steps and learning_rate of stages 0 (warm-up), 1 (sparsify), 2 (fine-tune).
  resnet20) L1=(0.001 0.005 0.0); STEPS=(30000 50000 50000); LR=(0.1 0.1 0.01) ;;
  # The paper's convnet: fixed learning rate 0.01, warm-up 0.0002, then 0.001 (model A;
  # model B: --l1_penalties 0.0002,0.002,0).
  cnn4) L1=(0.0002 0.001 0.0); STEPS=(30000 50000 50000); LR=(0.01 0.01 0.01) ;;
  *) echo "run_experiments.sh: --model must be resnet20 or cnn4, got '$MODEL'" >&2; exit 2 ;;
esac
if [ -n "$L1_OVERRIDE" ]; then
  IFS=, read -r -a L1 <<< "$L1_OVERRIDE"
  if [ ${#L1[@]} -ne 3 ]; then
    echo "run_experiments.sh: --l1_penalties needs three comma-separated values, got '$L1_OVERRIDE'" >&2; exit 2
  fi
fi
if ! [[ "$SCALE" =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]]; then
  echo "run_experiments.sh: --steps_scale must be a positive number, got '$SCALE'" >&2; exit 2
fi

# Flags passed through may exist in only one of train/eval: absl's --undefok ignores them there.
NAMES=()
for arg in "${PASS[@]+"${PASS[@]}"}"; do
  if [[ "$arg" == --* ]]; then name=${arg#--}; name=${name%%=*}; NAMES+=("$name" "no$name"); fi
done
UNDEFOK=()
if [ ${#NAMES[@]} -gt 0 ]; then UNDEFOK=("--undefok=$(IFS=,; echo "${NAMES[*]}")"); fi

step() {
  echo "+ $*"
  "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "run_experiments.sh: step failed with exit code $rc: $*" >&2
    exit $rc
  fi
}

mkdir -p "$TRAIN_DIR"
BASE="$TRAIN_DIR/cifar10_train"
COMMON=(--data_dir "$DATA_DIR" "${EXTRA[@]+"${EXTRA[@]}"}" "${PASS[@]+"${PASS[@]}"}" "${UNDEFOK[@]+"${UNDEFOK[@]}"}")
for v in 0 1 2; do
  steps=$("$PYTHON" -c "import sys; print(max(1, int(round(float(sys.argv[1]) * int(sys.argv[2])))))" "$SCALE" "${STEPS[$v]}")
  step "$PYTHON" -m cifar10_prune.train --model "$MODEL" --train_dir "$BASE" --checkpoint_version $v \
    --l1_penalty "${L1[$v]}" --max_steps "$steps" --learning_rate "${LR[$v]}" "${COMMON[@]}"
  step "$PYTHON" -m cifar10_prune.eval --checkpoint_dir "$BASE" --checkpoint_version $((v + 1)) \
    --eval_dir "$TRAIN_DIR/eval_$((v + 1))" "${COMMON[@]}"
done

# The SavedModels are derived from the checkpoints, so they are rebuilt on every run.
rm -rf "$TRAIN_DIR/saved_model" "$TRAIN_DIR/saved_model_dense"
step "$PYTHON" -m cifar10_prune.export --checkpoint_dir "$BASE" --checkpoint_version 3 \
  --export_dir "$TRAIN_DIR/saved_model"
step "$PYTHON" -m cifar10_prune.export --checkpoint_dir "$BASE" --checkpoint_version 0 \
  --export_dir "$TRAIN_DIR/saved_model_dense"
step "$PYTHON" -m cifar10_prune.report --train_dir "$TRAIN_DIR" --time_saved_models
