#!/usr/bin/env bash
# The published recipe end to end (docs/original.md section 1): three training stages with an eval
# after each, then the slim SavedModel, then a results table and charts.
#
#   ./run_experiments.sh [--data_dir DIR] [--train_dir DIR] [--model resnet20|cnn4]
#                        [--steps_scale S] [--quick] [--l1_penalties A,B,C] [--baseline]
#                        [--target_macs F] [any other flag for every train/eval call]
#
# --steps_scale S multiplies every stage's max_steps (at least 1 step).
# --quick: a short resnet20 schedule that prunes (800 + 2000 + 1200 steps, l1 0.001, 0.008, 0;
#   BN statistics re-estimated from 100 batches): 500,000 images per run; README, Quick start, says how long.
# --l1_penalties replaces the three stages' l1_penalty (e.g. 0.0002,0.002,0 for cnn4 model B;
#   0,0,0 trains the dense baseline of a schedule).
# --target_macs F: a budget for the sparsifying stage (stage 2 of 3) of the pruned run: lambda
#   is raised from its l1_penalty until the zeros leave at most F of the dense conv multiply-adds,
#   then those zeros are held to the stage's end (README, "Beyond the paper"); --budget_meet_by B
#   (passed to every call) aims to meet it by that fraction of the stage. With
#   --prune_block_outputs (passed to every call) resnet20's residual stream is pruned too.
# --baseline also trains the dense baseline (the same schedule and flags with l1_penalty 0)
#   into TRAIN_DIR/baseline, exports it as saved_model_dense and compares it in the report.
# Everything goes under --train_dir: stages cifar10_train_{0..3}, evals eval_{1..3},
# saved_model (slim, stage 3), saved_model_dense (baseline) or saved_model_stage0 (dense
# architecture with stage-0 weights, for timing only), results.md/.json and SVG charts.
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
QUICK=0
BASELINE=0
TARGET_MACS=""

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
    --quick) QUICK=1; EXTRA=(--recalibrate_bn 100); shift ;;
    --baseline) BASELINE=1; shift ;;
    --target_macs) TARGET_MACS=$2; shift 2 ;;
    --target_macs=*) TARGET_MACS=${1#*=}; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    --*=*) PASS+=("$1"); shift ;;
    # As --name=value: absl leaves the value of a flag it skips (--undefok) as a stray argument.
    --*) if [ $# -gt 1 ] && [[ "$2" != --* ]]; then PASS+=("$1=$2"); shift 2; else PASS+=("$1"); shift; fi ;;
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
if [ $QUICK -eq 1 ]; then
  if [ "$MODEL" != resnet20 ]; then
    echo "run_experiments.sh: --quick is a resnet20 schedule; use --steps_scale for cnn4" >&2; exit 2
  fi
  # Calibrated in docs/quick_start.md: a stronger lambda makes gammas reach zero within a
  # 2,000-step sparsification stage (0.005 needs ~2,000 steps just to shrink them to zero).
  L1=(0.001 0.008 0.0); STEPS=(800 2000 1200); LR=(0.1 0.1 0.01)
fi
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

COMMON=(--data_dir "$DATA_DIR" "${EXTRA[@]+"${EXTRA[@]}"}" "${PASS[@]+"${PASS[@]}"}" "${UNDEFOK[@]+"${UNDEFOK[@]}"}")

# recipe NAME DIR L1_0 L1_1 L1_2 [TARGET_MACS]: the three stages and their evals under DIR.
recipe() {
  local name=$1 dir=$2 base=$2/cifar10_train
  local l1=("$3" "$4" "$5") target=${6:-}
  mkdir -p "$dir"
  for v in 0 1 2; do
    steps=$("$PYTHON" -c "import sys; print(max(1, int(round(float(sys.argv[1]) * int(sys.argv[2])))))" "$SCALE" "${STEPS[$v]}")
    budget=()
    if [ $v -eq 1 ] && [ -n "$target" ]; then budget=(--target_macs "$target"); fi
    echo "run_experiments.sh: $name, stage $((v + 1)) of 3 (--checkpoint_version $v: l1_penalty ${l1[$v]}${budget[*]:+ raised until $target of the dense multiply-adds}, $steps steps, learning rate ${LR[$v]})"
    step "$PYTHON" -m cifar10_prune.train --model "$MODEL" --train_dir "$base" --checkpoint_version $v \
      --l1_penalty "${l1[$v]}" --max_steps "$steps" --learning_rate "${LR[$v]}" \
      "${budget[@]+"${budget[@]}"}" "${COMMON[@]}"
    # --checkpoint_iter 0: the compressed end of stage v, also when a rerun finds stage v+1
    # trained since (its newest checkpoint is then a later one).
    step "$PYTHON" -m cifar10_prune.eval --checkpoint_dir "$base" --checkpoint_version $((v + 1)) \
      --checkpoint_iter 0 --eval_dir "$dir/eval_$((v + 1))" "${COMMON[@]}"
  done
}

export_once() {  # export_once CHECKPOINT_DIR VERSION EXPORT_DIR: derived data, rebuilt every run
  rm -rf "$3"
  step "$PYTHON" -m cifar10_prune.export --checkpoint_dir "$1" --checkpoint_version "$2" \
    --export_dir "$3"
}

START=$SECONDS
NAME=$MODEL
if [ $BASELINE -eq 1 ]; then NAME="$MODEL pruned run (1 of 2)"; fi
recipe "$NAME" "$TRAIN_DIR" "${L1[@]}" "$TARGET_MACS"
export_once "$TRAIN_DIR/cifar10_train" 3 "$TRAIN_DIR/saved_model"
echo "run_experiments.sh: the three stages took $(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s"
REPORT=(--train_dir "$TRAIN_DIR" --time_saved_models)
rm -rf "$TRAIN_DIR/saved_model_stage0" "$TRAIN_DIR/saved_model_dense"
if [ $BASELINE -eq 1 ]; then
  START=$SECONDS
  recipe "$MODEL dense baseline (2 of 2)" "$TRAIN_DIR/baseline" 0 0 0
  echo "run_experiments.sh: the dense baseline took $(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s"
  export_once "$TRAIN_DIR/baseline/cifar10_train" 3 "$TRAIN_DIR/saved_model_dense"
  REPORT+=(--baseline_dir "$TRAIN_DIR/baseline")
else
  # Without a baseline only the dense architecture is worth timing: stage 0's weights are a
  # partly trained model, not a baseline, and the name says so.
  export_once "$TRAIN_DIR/cifar10_train" 0 "$TRAIN_DIR/saved_model_stage0"
fi
step "$PYTHON" -m cifar10_prune.report "${REPORT[@]}"
