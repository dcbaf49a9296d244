"""Flags shared by train, eval and export (the original's cifar10.py flags, plus model choice)."""
from absl import flags

from cifar10_prune.spec import MODELS


def define_common(fv=flags.FLAGS):
    """batch_size, data_dir, use_fp16, weight_decay (original) and model, dataset_source,
    recalibrate_bn (this port)."""
    flags.DEFINE_integer("batch_size", 125, "Number of images to process in a batch.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("data_dir", "/tmp/cifar10_data", "Path to the CIFAR-10 data directory.",
                        flag_values=fv)
    flags.DEFINE_boolean("use_fp16", False, "Train with mixed precision: bfloat16 compute on "
                         "CPU/TPU, float16 with loss scaling on GPU; variables, batch norm, ISTA, "
                         "EMA and loss stay float32 (the original switched variables to fp16). "
                         "eval and export always run in float32.", flag_values=fv)
    flags.DEFINE_float("weight_decay", 0.0005, "Weight decay of resnet20's conv kernels.",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_enum("model", "resnet20", list(MODELS),
                      "Network to train (the original selects it by editing code).",
                      flag_values=fv)
    flags.DEFINE_enum("dataset_source", "binary", ["binary", "tfds"],
                      "binary: the original cifar-10-batches-bin files under data_dir; "
                      "tfds: tfds.load('cifar10', data_dir=data_dir).", flag_values=fv)
    flags.DEFINE_integer("recalibrate_bn", 0,
                         "Re-estimate every batch norm's moving mean/variance from this many "
                         "training batches (not in the original; 0 = off).",
                         lower_bound=0, flag_values=fv)


def define_checkpoint_source(fv, checkpoint_version):
    """checkpoint_dir / checkpoint_version / checkpoint_iter / is_compressed, as in eval."""
    flags.DEFINE_string("checkpoint_dir", "/tmp/cifar10_train",
                        "Base directory of the training stages; version N is read from "
                        "checkpoint_dir_N.", flag_values=fv)
    flags.DEFINE_integer("checkpoint_version", checkpoint_version,
                         "Stage to read (checkpoint_dir + '_' + version).", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_integer("checkpoint_iter", -1, "Global step of the checkpoint to read; -1 = latest.",
                         lower_bound=-1, flag_values=fv)
    flags.DEFINE_boolean("is_compressed", True,
                         "Build the model from the stage's architecture.json (true) or as the "
                         "dense --model (false).", flag_values=fv)


def define_seed(fv, purpose):
    """--seed (not in the original); `purpose` says what it seeds in this command."""
    flags.DEFINE_integer("seed", None, "Seed of %s (not in the original). Unset: every run draws "
                         "its own, as the original." % purpose, lower_bound=0, flag_values=fv)
