"""The paper's gamma-W rescaling trick (not in the original CIFAR code).

Multiplying a penalized BN's gamma and beta by alpha scales its output by alpha; ReLU and
max-pool commute with a positive factor, so dividing the next conv's kernel by alpha leaves the
network's function unchanged while the L1 penalty now sees gammas alpha times smaller or larger.
"""
import math

import keras

from cifar10_prune import graph


def rescale(model, alpha, ema=None):
    """Scale every penalized gamma and beta by `alpha` and their readers' kernels by 1/alpha,
    in the raw weights and, if given, in the EMA's averages."""
    if not alpha > 0:
        raise ValueError("gamma rescaling needs alpha > 0, got %r" % (alpha,))
    shadows = ema.shadow_by_path() if ema is not None else {}
    for unit in graph.units(model):
        if unit.bn.penalty_weight <= 0:
            continue
        scaled = [(unit.bn.gamma, alpha), (unit.bn.beta, alpha)]
        scaled += [(c.conv.kernel, 1.0 / alpha) for c in unit.consumers
                   if isinstance(c.conv, keras.layers.Conv2D)]
        for var, factor in scaled:
            var.assign(var * factor)
            if var.path in shadows:
                shadows[var.path].assign(shadows[var.path] * factor)


def begin_stage(trainer, alpha, log=print):
    """Apply `alpha` at the start of a fresh stage; a resumed stage keeps what it saved."""
    current = float(trainer.gamma_rescale.numpy())
    if math.isclose(current, alpha, rel_tol=1e-6):  # float32 in the checkpoint
        return
    if current == 1.0 and trainer.step == 0:
        rescale(trainer.model, alpha, trainer.ema)
        trainer.gamma_rescale.assign(alpha)
        log("gamma-W rescaling: penalized gammas and betas x %g, next kernels x %g"
            % (alpha, 1.0 / alpha))
    else:
        log("gamma-W rescaling: the checkpoint was trained with alpha = %g; keeping it "
            "(--gamma_rescale %g applies only when a stage starts)" % (current, alpha))


def end_stage(trainer, log=print):
    """Undo the rescaling (before compression), so the next stage starts unscaled."""
    current = float(trainer.gamma_rescale.numpy())
    if current != 1.0:
        rescale(trainer.model, 1.0 / current, trainer.ema)
        trainer.gamma_rescale.assign(1.0)
        log("gamma-W rescaling undone (alpha = %g)" % current)
