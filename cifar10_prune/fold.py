"""Batch norms folded into the convs before them, for serving.

At inference a batch norm is a fixed per-channel affine map,
``y = scale * (x - moving_mean) + beta`` with ``scale = gamma / sqrt(moving_variance + eps)``
(gamma = 1 for a batch norm without one). After a conv ``x = W * in`` this is the conv with
kernel ``W[..., o] * scale[o]`` and bias ``beta[o] - moving_mean[o] * scale[o]``. The folded
network is built by the same builder (`models.build_model(spec, folded=True)`: every conv has
a bias, no batch norm follows it) and receives the folded weights, so the served graph is
conv + bias (+ ReLU), which TensorFlow's CPU (oneDNN) kernels run as one fused op, instead of a
conv followed by the five element-wise ops of an unfused batch norm.
"""
import keras
import numpy as np

from cifar10_prune import models, pruning
from cifar10_prune.pruning import EmptyConv2D

_CONVS = (keras.layers.Conv2D, EmptyConv2D)


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)


def folded_weights(conv, bn):
    """(kernel, bias) of `conv` followed by batch norm `bn` at inference, as float32 NumPy.

    `conv` is a Conv2D without bias, or an EmptyConv2D (no kernel: kernel is None, and the
    bias alone is the constant the pair outputs). Computed in float64, so the folded model
    differs from the unfolded one by float32 rounding only.
    """
    mean = _numpy(bn.moving_mean)
    variance = _numpy(bn.moving_variance)
    gamma = _numpy(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = _numpy(bn.beta) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    bias = beta - mean * scale
    if isinstance(conv, EmptyConv2D):
        return None, bias.astype(np.float32)
    if conv.use_bias:  # not in these models, but cheap to get right
        bias = bias + _numpy(conv.bias) * scale
    # The kernel's last axis is the output channel, which is what the batch norm scales.
    kernel = _numpy(conv.kernel) * scale
    return kernel.astype(np.float32), bias.astype(np.float32)


def fold_batch_norms(model, spec=None):
    """A new functional model computing `model(x, training=False)` with every batch norm folded
    into the conv before it.

    Args:
      model: a model built by `models.build_model` (any widths, including layers pruned to 0),
        holding the weights to serve.
      spec: its `ArchSpec`; read off the model's graph when None.

    Raises ValueError if a conv is not followed by exactly one batch norm, or if the two models
    do not line up layer for layer (they come from the same builder, so they should).
    """
    spec = spec or models.spec_of(model)
    folded = models.build_model(spec, weight_decay=0.0, folded=True)
    # Compared as sets: an empty conv hangs off the images, so the topological order may differ.
    kept = {layer.name for layer in model.layers
            if not isinstance(layer, keras.layers.BatchNormalization)}
    if kept != {layer.name for layer in folded.layers}:
        raise ValueError("model %r does not match the folded form of %s: layers only in the "
                         "model %s, only in the folded form %s"
                         % (model.name, spec, sorted(kept - {l.name for l in folded.layers}),
                            sorted({l.name for l in folded.layers} - kept)))
    readers = pruning.analyze(model).consumers
    folded_bns = 0
    for target in folded.layers:
        if not isinstance(target, _CONVS):
            if target.weights:
                raise ValueError("%s (%s) has weights the folding does not handle"
                                 % (target.name, type(target).__name__))
            continue
        conv = model.get_layer(target.name)
        after = readers[conv.name]
        if len(after) != 1 or not isinstance(after[0], keras.layers.BatchNormalization):
            raise ValueError("cannot fold %s: it must be followed by exactly one batch norm; it "
                             "feeds %s" % (conv.name, [layer.name for layer in after]))
        bn = after[0]
        kernel, bias = folded_weights(conv, bn)
        target.set_weights([bias] if kernel is None else [kernel, bias])
        folded_bns += 1
    every_bn = sum(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)
    if folded_bns != every_bn:  # a batch norm not right after a conv would be lost
        raise ValueError("folded %d batch norms of %s's %d" % (folded_bns, model.name, every_bn))
    return folded
