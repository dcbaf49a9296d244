"""Flags of `python -m cifar10_prune.export` (new: the original has no export)."""
from absl import flags

from cifar10_prune.flags.common import define_checkpoint_source
from cifar10_prune.spec import MODELS


def define_export_flags(fv=flags.FLAGS):
    flags.DEFINE_enum("model", "resnet20", list(MODELS),
                      "Dense model to build when --is_compressed=false.", flag_values=fv)
    define_checkpoint_source(fv, checkpoint_version=1)
    flags.DEFINE_string("export_dir", None, "Where to write the SavedModel (must not exist).",
                        flag_values=fv)
    flags.mark_flag_as_required("export_dir", flag_values=fv)
