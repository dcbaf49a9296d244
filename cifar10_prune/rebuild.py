"""Turn exactly-zero gammas of a recipe model into a genuinely narrower one (docs/original.md
section 6).

The recipe's networks are users of the library API: which channels go, and what their constants
add to the layers that read them, is `pruning.plan` (the same analysis and folding as
`pruning.compress` for any functional model). What differs is how the narrower model is made: the
recipe's one builder, `models.build_model`, with other widths, so a layer may keep no channel at
all (its reader becomes an `EmptyConv2D`; for cnn4, the layers that then feed nothing drop out),
and the result is again an `ArchSpec` that a stage directory records.

A channel whose raw gamma is 0 outputs the constant beta_c whatever its input (after the ReLU,
relu(beta_c); max-pool keeps a constant); what it added to a reader's output is subtracted from
the reader's batch-norm moving mean. That is exact for VALID readers and in the interior of SAME
ones; at SAME borders it over-corrects by the window taps that fall outside the image (the
approximation the paper makes, kept here so that the recipe's networks stay its builder's; the
library's `pruning.compress` adds ones channels that make the borders exact, `pruning.borders`).
"""
import numpy as np

from cifar10_prune import models, pruning
from cifar10_prune.spec import ArchSpec


def kept_channels(model):
    """{unit: indices of the channels whose raw gamma is not exactly zero}, for every prunable
    layer of a recipe model."""
    found = pruning.plan(model, absorb=False, allow_empty=True)
    return {group.unit: np.setdiff1d(np.arange(group.width), found.removed[group.unit])
            for group in found.analysis.groups if group.prunable}


def narrow(spec, model, averages=None, weight_decay=0.0005, absorb=True):
    """The recipe's narrower model, built by `models.build_model` without the channels whose raw
    gamma is zero (the library's `pruning.compress` returns only a model; this also returns
    the `ArchSpec` a stage directory records).

    Args:
      spec: the `ArchSpec` `model` was built from.
      model: the trained model; its raw gammas decide which channels go.
      averages: {variable path: value} to take the kept weights from (the EMA's averages, as the
        original does); variables not in it keep their raw value (e.g. BN moving statistics).
      weight_decay: passed to the builder for the new model.
      absorb: fold each removed channel's constant into its readers' BN moving means (the
        paper's method). False reproduces the original code's arithmetic, whose absorption ops
        never ran: the channels are dropped and their constants lost.

    Returns:
      (new_spec, new_model), the narrower model holding the folded weights.
    """
    found = pruning.plan(model, averages, absorb=absorb, allow_empty=True)
    if found.new_bias:  # every reader of these networks is followed by a batch norm
        raise ValueError("cannot fold into %s: the recipe's convs have no bias"
                         % ", ".join(found.new_bias))
    widths = {name: 0 for name in spec.widths}  # units absent from the model feed nothing
    widths.update({g.unit: g.width - found.removed[g.unit].size
                   for g in found.analysis.groups if g.prunable})
    for unit in spec.stage_units:
        if widths[unit] == 0:
            raise ValueError("every channel of the residual-stream stage %s has gamma 0 in all "
                             "its batch norms: the classifier would read nothing. Lower "
                             "--l1_penalty (or the budget's target) and train the stage again "
                             "from an earlier checkpoint" % unit)
    new_spec = ArchSpec(spec.model, widths, spec.block_outputs)
    new_model = models.build_model(new_spec, weight_decay)
    built = models.spec_of(new_model)
    if built != new_spec:
        # A layer that now feeds only removed layers dropped out of the model (cnn4): record it.
        new_spec = built
        new_model = models.build_model(new_spec, weight_decay)
    pruning.copy_weights(found, model, new_model)
    return new_spec, new_model
