"""Flags of `python -m cifar10_prune.train` (the original cifar10_train.py)."""
from absl import flags

from cifar10_prune.distribute import STRATEGIES
from cifar10_prune.flags.common import define_common, define_seed


def define_train_flags(fv=flags.FLAGS):
    define_common(fv)
    flags.DEFINE_string("train_dir", "/tmp/cifar10_train",
                        "Base directory of the stages; stage v writes train_dir + '_' + v.",
                        flag_values=fv)
    flags.DEFINE_integer("max_steps", 100000, "Global step at which the stage stops.",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("log_frequency", 100, "How often to log results to the console.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("checkpoint_version", 0, "Stage to train.", lower_bound=0,
                         flag_values=fv)
    flags.DEFINE_float("l1_penalty", 0.005, "Lambda of the L1 (ISTA) penalty on BN gammas.",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_float("learning_rate", 0.1, "Initial learning rate.", lower_bound=0.0,
                       flag_values=fv)
    flags.DEFINE_boolean("squeeze_model", True,
                         "At the end of the stage remove the channels whose gamma is zero and "
                         "write the compressed model as stage v+1.", flag_values=fv)
    flags.DEFINE_boolean("absorb_pruned_constants", True,
                         "When compressing, fold each pruned channel's constant output into the "
                         "next batch norm's moving mean (the paper's method). false reproduces "
                         "the original code, whose absorption never ran: the channels are "
                         "dropped and their constants lost.", flag_values=fv)
    flags.DEFINE_boolean("log_device_placement", False, "Whether to log device placement.",
                         flag_values=fv)
    flags.DEFINE_string("checkpoint_dir", "/tmp/cifar10_train_0",
                        "Unused, as in the original (stages are read from train_dir).",
                        flag_values=fv)
    flags.DEFINE_integer("base_stride", 192, "Unused, as in the original.", flag_values=fv)
    flags.DEFINE_float("gamma_rescale", 1.0,
                       "gamma-W rescaling alpha of the paper (not in the original CIFAR code): "
                       "at the start of the stage multiply penalized gammas and betas by alpha "
                       "and the next conv's kernel by 1/alpha; undone before compression. "
                       "1.0 = off.", flag_values=fv)
    flags.register_validator("gamma_rescale", lambda v: v > 0,
                             message="--gamma_rescale must be > 0 (1.0 = off)", flag_values=fv)
    define_seed(fv, "weight initialization, data order and augmentation: the same seed on the "
                "same machine repeats a stage")
    flags.DEFINE_integer("save_checkpoint_secs", 600,
                         "Also save a checkpoint this often (the original's default).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("distribution_strategy", "default", list(STRATEGIES),
                      "tf.distribute strategy (not in the original): default = one device; "
                      "mirrored = all local GPUs (or --cpu_replicas logical CPUs); multi_worker "
                      "= the cluster in $TF_CONFIG; tpu = a TPU (--tpu). --batch_size stays the "
                      "global batch.", flag_values=fv)
    flags.DEFINE_integer("cpu_replicas", 0,
                         "With --distribution_strategy mirrored: split the CPU into this many "
                         "logical devices, one replica each (to try distribution without GPUs).",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_boolean("prune_block_outputs", False,
                         "resnet20 (not in the original): also penalize and prune the residual "
                         "stream, the stem's, the blocks' last and the shortcuts' batch norms "
                         "(they get a gamma), coupled through the adds. Recorded in the stage's "
                         "architecture.json; later stages and eval build what it says.",
                         flag_values=fv)
    flags.DEFINE_boolean("coupled_threshold", False,
                         "With --prune_block_outputs (not in the original): soft-threshold a "
                         "residual-stream channel's gammas in all its batch norms as one vector "
                         "(the group lasso's proximal step, their rho summed), so they reach "
                         "zero together; by default each gamma is thresholded on its own, as "
                         "the original does.", flag_values=fv)
    for kind, what in (("macs", "conv multiply-adds"), ("params", "parameters")):
        flags.DEFINE_float("target_" + kind, None,
                           "Budget of this stage (not in the original): adapt lambda (from "
                           "--l1_penalty up) until the current zeros leave at most this fraction "
                           "of the dense model's %s, then hold those zeros (see "
                           "--budget_meet_by). Unset: lambda stays --l1_penalty." % what,
                           flag_values=fv)
        flags.register_validator(
            "target_" + kind, lambda v: v is None or 0 < v <= 1,
            message="--target_%s must be a fraction of the dense model in (0, 1], e.g. 0.5"
            % kind, flag_values=fv)
    flags.DEFINE_float("budget_meet_by", 0.5,
                       "With --target_macs / --target_params: the fraction of --max_steps by "
                       "which the budget should be met (lambda is raised to meet it then). From "
                       "the step it is met, the fewest zero channels that meet it are held at "
                       "zero and the other gammas train free of the penalty to --max_steps.",
                       flag_values=fv)
    flags.DEFINE_integer("budget_channel_multiple", 1,
                         "With --target_macs: count multiply-adds with the pruned widths rounded "
                         "up to a multiple of this, as the CPU computes them (16: oneDNN's "
                         "float32 convolutions on AVX-512), so the budget is of the time the "
                         "slim model takes, not of its plain count. 1: the plain count.",
                         lower_bound=1, flag_values=fv)
    flags.register_validator("budget_meet_by", lambda v: 0 < v <= 1,
                             message="--budget_meet_by must be a fraction of the stage's steps "
                             "in (0, 1], e.g. 0.5", flag_values=fv)
    flags.register_multi_flags_validator(
        ["target_macs", "target_params", "l1_penalty"],
        lambda v: (v["target_macs"] is None and v["target_params"] is None) or v["l1_penalty"] > 0,
        message="--target_macs/--target_params adapt lambda from --l1_penalty, which is 0: give "
        "the sparsifying stage an l1_penalty > 0 (e.g. 0.005) to start from", flag_values=fv)
    flags.DEFINE_string("tpu", "", "With --distribution_strategy tpu: the TPU's name or address "
                        "('' = local, or from the environment).", flag_values=fv)
