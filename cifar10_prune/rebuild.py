"""Turn exactly-zero gammas into a genuinely narrower model (ORIGINAL.md section 6).

A channel whose raw gamma is 0 outputs the constant beta_c whatever its input (after the ReLU,
relu(beta_c); max-pool keeps a constant). It is removed from its conv and batch norm and from
every conv that reads it; what it added to a reader's output, relu(beta_c) times the sum of the
reader's kernel window, is subtracted from the reader's batch-norm moving mean instead. That is
exact for VALID readers and in the interior of SAME ones; at SAME borders the zero padding means
the removed channel contributed less than the full window, so the fold over-corrects there by
the window taps that fall outside the image (the approximation the paper makes).

Structure comes from the Keras graph (`graph.units`); the narrower model comes from the same
builder with other widths, and layers of the two models correspond by the builder's names.
"""
import keras
import numpy as np
from keras import ops

from cifar10_prune import graph, models
from cifar10_prune.spec import ArchSpec


def kept_channels(model, units=None):
    """{unit: indices of the channels whose raw gamma is not exactly zero}; `units` are
    `graph.units(model)` when the caller already has them."""
    return {u.name: np.flatnonzero(ops.convert_to_numpy(u.bn.gamma) != 0)
            for u in (units if units is not None else graph.units(model))}


def _through(layer, constant):
    """A per-channel constant image after a channel-wise layer: activations apply, pools keep it."""
    if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
        # `call`, not `__call__`: a mixed-precision layer would round the constant to 16 bits.
        x = ops.convert_to_tensor(np.asarray(constant, np.float32)[None, None, None, :])
        return ops.convert_to_numpy(layer.call(x))[0, 0, 0]
    return constant


def compress(spec, model, averages=None, weight_decay=0.0005, absorb=True):
    """Build the model without the channels whose raw gamma is zero.

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
    values = {v.path: ops.convert_to_numpy(v) for v in model.weights}
    values.update(averages or {})
    units = graph.units(model)
    keep = kept_channels(model, units)

    in_keep, out_keep = {}, {}
    for unit in units:
        out_keep[unit.conv.name] = out_keep[unit.bn.name] = keep[unit.name]
        pruned = np.setdiff1d(np.arange(unit.bn.gamma.shape[0]), keep[unit.name])
        for consumer in unit.consumers:
            in_keep[consumer.conv.name] = keep[unit.name]
            if absorb and pruned.size and isinstance(consumer.conv, keras.layers.Conv2D):
                _fold(model, values, unit, consumer, pruned)

    widths = {name: 0 for name in spec.widths}  # units absent from the model feed nothing
    widths.update({name: int(k.size) for name, k in keep.items()})
    new_spec = ArchSpec(spec.model, widths)
    new_model = models.build_model(new_spec, weight_decay)
    present = {u.name for u in graph.units(new_model)}
    if any(w and name not in present for name, w in widths.items()):
        # A layer that now feeds only removed layers dropped out of the model (cnn4): record it.
        widths.update({name: 0 for name in widths if name not in present})
        new_spec = ArchSpec(spec.model, widths)
        new_model = models.build_model(new_spec, weight_decay)

    for layer in new_model.operations:
        for var in layer.weights:
            value = values[var.path]
            if isinstance(layer, keras.layers.Conv2D):
                if layer.name in in_keep:
                    value = value[:, :, in_keep[layer.name], :]
                if layer.name in out_keep:
                    value = value[..., out_keep[layer.name]]
            elif layer.name in out_keep:
                value = value[out_keep[layer.name]]
            var.assign(value)
    return new_spec, new_model


def _fold(model, values, unit, consumer, pruned):
    """Subtract the removed channels' constant contribution from the reader's BN moving mean."""
    constant = values[unit.bn.beta.path][pruned]
    for layer in consumer.path:
        constant = _through(layer, constant)
    kernel = values[consumer.conv.kernel.path][:, :, pruned, :]
    shift = np.einsum("hwco,c->o", kernel, constant)
    bn = graph.bn_after(model, consumer.conv)
    values[bn.moving_mean.path] = values[bn.moving_mean.path] - shift
