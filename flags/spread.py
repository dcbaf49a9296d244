"""Flags of `python -m cifar10_prune.spread` (new: the spread of repeated runs)."""
from absl import flags


def define_spread_flags(fv=flags.FLAGS):
    flags.DEFINE_list("train_dirs", None, "Runs of one schedule (run_experiments.sh train_dirs), "
                      "comma-separated.", flag_values=fv)
    flags.DEFINE_list("baseline_dirs", [], "Their dense baselines, in the same seed order. "
                      "Default: the ones run_experiments.sh --baseline ran with each (if all have "
                      "one).",
                      flag_values=fv)
    flags.DEFINE_string("out", "", "Also write OUT.md, OUT.json and OUT.svg (precision @ 1 against "
                        "parameters after the last stage, a point per run).", flag_values=fv)
    flags.mark_flag_as_required("train_dirs", flag_values=fv)
