"""Flags of `python -m cifar10_prune.eval` (the original cifar10_eval.py)."""
from absl import flags

from cifar10_prune.flags.common import define_checkpoint_source, define_common, define_seed


def define_eval_flags(fv=flags.FLAGS):
    define_common(fv)
    define_checkpoint_source(fv, checkpoint_version=1)
    flags.DEFINE_string("eval_dir", "/tmp/cifar10_eval", "Directory where to write event logs.",
                        flag_values=fv)
    flags.DEFINE_enum("eval_data", "test", ["test", "train_eval"],
                      "Either 'test' or 'train_eval'.", flag_values=fv)
    flags.DEFINE_integer("num_examples", 10000, "Number of examples to run.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_boolean("run_once", True, "Whether to run eval only once.", flag_values=fv)
    flags.DEFINE_integer("eval_interval_secs", 300, "How often to run the eval.", lower_bound=0,
                         flag_values=fv)
    define_seed(fv, "the training batches --recalibrate_bn draws: the same seed re-estimates the "
                "same statistics, so an eval repeats to the digit")
