"""Flags of `python -m cifar10_prune.report` (new: run_experiments.sh's results table)."""
from absl import flags


def define_report_flags(fv=flags.FLAGS):
    flags.DEFINE_string("train_dir", None, "Directory run_experiments.sh wrote.", flag_values=fv)
    flags.DEFINE_boolean("time_saved_models", False,
                         "Also time saved_model_dense against saved_model (batch 125).",
                         flag_values=fv)
    flags.mark_flag_as_required("train_dir", flag_values=fv)
