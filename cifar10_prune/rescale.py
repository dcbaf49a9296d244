"""The paper's gamma-W rescaling trick (not in the original CIFAR code).

Multiplying a penalized BN's gamma and beta by alpha scales its output by alpha; ReLU and
max-pool commute with a positive factor, so dividing the next conv's kernel by alpha leaves the
network's function unchanged while the L1 penalty now sees gammas alpha times smaller or larger.
"""
import math

import numpy as np

from cifar10_prune import pruning


def rescale(model, alpha, penalties, ema=None):
    """Scale every gamma that `penalties` ({gamma path: rho_l}) names, and its beta, by
    `alpha`, and the kernels of the layers reading those channels by 1/alpha, in the raw weights
    and, if given, in the EMA's averages."""
    if not alpha > 0:
        raise ValueError("gamma rescaling needs alpha > 0, got %r" % (alpha,))
    shadows = ema.shadow_by_path() if ema is not None else {}
    for group in pruning.find_groups(model):
        members = [bn for bn, _ in group.members if bn.scale and bn.gamma.path in penalties]
        if not members:
            continue
        if len(members) < len(group.members) or group.channelwise:
            # A depthwise conv or a batch norm on the way would not pass the factor through.
            raise ValueError("gamma rescaling handles groups of batch norms read by convs only; "
                             "%s is not one" % group.name)
        scaled = [(var, alpha) for bn in members for var in (bn.gamma, bn.beta)]
        for reader, offset in group.readers:
            # Only the reader's input channels that are this group's (a Concatenate may give
            # it others).
            factor = np.ones(reader.kernel.shape[-2:], np.float32)
            factor[offset:offset + group.width] = 1.0 / alpha
            scaled.append((reader.kernel, factor))
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
        rescale(trainer.model, alpha, trainer.penalties, trainer.ema)
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
        rescale(trainer.model, 1.0 / current, trainer.penalties, trainer.ema)
        trainer.gamma_rescale.assign(1.0)
        log("gamma-W rescaling undone (alpha = %g)" % current)
