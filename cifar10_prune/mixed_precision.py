"""Mixed precision for `--use_fp16`: which Keras dtype policy to train with, and loss scaling.

The original's `--use_fp16` only switched its variables to tf.float16. This port instead uses
Keras' mixed-precision policies: convolutions (and the activations between layers) compute in a
16-bit type while every variable stays float32. What must stay exact stays float32: the
variables, batch-norm statistics and arithmetic (`layers.PrunableBatchNorm`'s fused kernel
computes in float32 for 16-bit inputs), the ISTA
soft-threshold (`pruning.ISTA.update_step` runs on the float32 variables with float32 gradients),
the EMA, and the logits and loss (`models.build_model` keeps the last batch norm float32).

  * CPU / TPU: "mixed_bfloat16". bfloat16 has float32's exponent range, so gradients cannot
    underflow and no loss scaling is needed.
  * GPU: "mixed_float16", whose 5-bit exponent needs loss scaling: the ISTA optimizer is wrapped
    in `keras.optimizers.LossScaleOptimizer` (see `wrap_optimizer`).

The policy is passed as an argument (`models.build_model(..., dtype_policy=...)`), never set
globally, so models built elsewhere in the same process (the compressed model, exports) stay
float32.
"""
import keras

# CPU flags (Linux /proc/cpuinfo) of the instructions oneDNN's bfloat16 convolutions run on.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

FLOAT32 = "float32"
MIXED_BFLOAT16 = "mixed_bfloat16"
MIXED_FLOAT16 = "mixed_float16"
POLICIES = (FLOAT32, MIXED_BFLOAT16, MIXED_FLOAT16)


def policy_name(use_fp16, device_types=None):
    """The dtype policy name `--use_fp16` selects.

    Args:
      use_fp16: the flag. False gives "float32".
      device_types: device types present (e.g. ["CPU", "GPU"]); None asks TensorFlow for the
        physical devices. With a GPU the policy is "mixed_float16" (float16 is what GPUs
        accelerate), otherwise "mixed_bfloat16" (CPUs with AVX512-BF16/AMX and TPUs accelerate
        bfloat16, and it needs no loss scaling).
    """
    if not use_fp16:
        return FLOAT32
    if device_types is None:
        import tensorflow as tf
        device_types = [d.device_type for d in tf.config.list_physical_devices()]
    return MIXED_FLOAT16 if "GPU" in device_types else MIXED_BFLOAT16


def dtype_policy(name):
    """The `keras.DTypePolicy` of `name` (one of POLICIES, or a policy passed through).

    Raises ValueError naming the allowed policies for anything else."""
    if isinstance(name, keras.DTypePolicy):
        name = name.name
    if name not in POLICIES:
        raise ValueError("unknown dtype policy %r; use one of %s" % (name, ", ".join(POLICIES)))
    return keras.DTypePolicy(name)


def needs_loss_scaling(policy):
    """Whether training under `policy` (a name or DTypePolicy) needs loss scaling: only float16
    compute, whose gradients underflow without it."""
    return dtype_policy(policy).compute_dtype == "float16"


def wrap_optimizer(optimizer, policy):
    """`optimizer` wrapped in a dynamic `keras.optimizers.LossScaleOptimizer` when `policy`
    computes in float16, else `optimizer` itself.

    The wrapper divides the gradients by the loss scale and then calls the inner optimizer's
    `apply`, so `pruning.ISTA.update_step` (gradient step and soft-threshold) runs unchanged on
    unscaled float32 gradients; a step with non-finite gradients is skipped (the global step,
    the inner optimizer's `iterations`, does not advance) and the scale halved. The training
    step scales the loss with `optimizer.scale_loss`, which is the identity for an unwrapped
    optimizer.
    """
    if not needs_loss_scaling(policy):
        return optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def inner_optimizer(optimizer):
    """The optimizer a LossScaleOptimizer wraps (or `optimizer` itself): what checkpoints store,
    so that checkpoints of float32 and mixed-precision runs have the same layout. (The loss
    scale itself is not saved: a resumed float16 run starts again from the initial scale.)"""
    return getattr(optimizer, "inner_optimizer", optimizer)


def describe(policy):
    """One line for train's start-up: the policy and what it computes in."""
    policy = dtype_policy(policy)
    if policy.name == FLOAT32:
        return "precision: float32 (--use_fp16=false)"
    scaling = (", dynamic loss scaling" if needs_loss_scaling(policy)
               else ", no loss scaling needed")
    return ("precision: %s (--use_fp16: convolutions in %s; variables, batch norm, ISTA, EMA, "
            "logits and loss in float32%s)" % (policy.name, policy.compute_dtype, scaling))


def _cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo, or None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_warning(policy, cpu_flags=None):
    """A warning line for train's start-up when `policy` computes in bfloat16 on a CPU without
    bfloat16 instructions, else None. Measured on such a CPU (an AVX2-only AMD EPYC, 2026-12-02):
    resnet20 in float32 ran at ~95 images/s, while under mixed_bfloat16 it had not finished its
    first step after 13 minutes of CPU time (the convolutions fall back to slow reference code).

    Args:
      policy: a policy name or DTypePolicy.
      cpu_flags: the CPU's feature flags; None reads /proc/cpuinfo (no warning where that does
        not exist: the CPU cannot be told).
    """
    if dtype_policy(policy).compute_dtype != "bfloat16":
        return None
    flags = _cpu_flags() if cpu_flags is None else set(cpu_flags)
    if flags is None or flags & set(BF16_CPU_FLAGS):
        return None
    return ("warning: this CPU has no bfloat16 instructions (none of %s in /proc/cpuinfo): "
            "--use_fp16 can run many times slower than float32 here; drop --use_fp16"
            % ", ".join(BF16_CPU_FLAGS))
