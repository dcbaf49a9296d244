"""Flags of `python -m cifar10_prune.report` (new: run_experiments.sh's results table)."""
from absl import flags


def define_report_flags(fv=flags.FLAGS):
    flags.DEFINE_string("train_dir", None, "Directory run_experiments.sh wrote.", flag_values=fv)
    flags.DEFINE_boolean("time_saved_models", False,
                         "Also time the SavedModels in train_dir against each other (batch 125).",
                         flag_values=fv)
    flags.DEFINE_string("baseline_dir", None,
                        "A dense baseline run (run_experiments.sh --l1_penalties 0,0,0, same "
                        "schedule) to compare with.", flag_values=fv)
    flags.mark_flag_as_required("train_dir", flag_values=fv)
