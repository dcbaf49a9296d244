"""What the current zeros would leave of a model's multiply-adds and parameters (`estimate`),
counted from the graph without compressing; the counts `Budget` steers by.

The cost of the narrower model: in every prunable group (`groups.find_groups`) the channels whose
gamma is exactly zero in every member go from the producing layers, the members and the group's
per-channel layers, and as input channels of its readers, as `compress` removes them.
Multiply-adds are those of the Conv2D, DepthwiseConv2D and Dense layers for one input (H_out *
W_out * k_h * k_w * C_in / groups * C_out); parameters are every variable of the model,
trainable or not, as `compress` would slice it. Reader-side removals (`readers`) and the ones
channels of exact borders are not counted, so the estimate never promises more than the groups
give. With `multiple` > 1 the pruned widths are counted rounded up to a multiple of it, as CPUs
compute channels in vector-wide blocks (oneDNN's float32 convolutions on AVX-512 in blocks of
16: a conv narrowed from 16 to 10 outputs costs what the dense one costs,
benchmarks/README.md); the widths nothing prunes (an image's 3 channels, the classes) are
counted as they are.
"""
import dataclasses
import math

import keras
import numpy as np
from keras import ops

from cifar10_prune.pruning.groups import L, analyze
from cifar10_prune.pruning.layers import EmptyConv2D


@dataclasses.dataclass(frozen=True)
class Costs:
    """Multiply-adds per input (None when a spatial size is unknown) and parameters."""
    macs: object
    params: int

    def get(self, kind):
        return getattr(self, kind)


def zero_channels(analysis, gammas):
    """[(group index, group, boolean mask of its channels zero in every member)] for the
    prunable groups, given {gamma path: values}: the channels compression removes."""
    out = []
    for index, group in enumerate(analysis.groups):
        if not group.prunable:
            continue
        zero = np.ones(group.width, bool)
        for bn, offset in group.members:
            zero &= gammas[bn.gamma.path][offset:offset + group.width] == 0
        out.append((index, group, zero))
    return out


def removed_gammas(analysis, gammas):
    """{gamma path: boolean mask} of the members' entries whose channel compression removes."""
    masks = {}
    for _, group, zero in zero_channels(analysis, gammas):
        for bn, offset in group.members:
            mask = masks.setdefault(bn.gamma.path, np.zeros(len(gammas[bn.gamma.path]), bool))
            mask[offset:offset + group.width] |= zero
    return masks


def _kept_masks(analysis, gammas):
    """(out_keep, in_keep): {layer name: boolean mask of the channels kept}, for the layers of
    the prunable groups, given {gamma path: values}."""
    out_keep, in_keep = {}, {}
    for _, group, zero in zero_channels(analysis, gammas):
        for layer, offset in group.producers + group.members + group.channelwise:
            mask = out_keep.setdefault(layer.name, np.ones(_width(layer), bool))
            mask[offset:offset + group.width] &= ~zero
        for layer, offset in group.readers:
            mask = in_keep.setdefault(layer.name, np.ones(layer.input.shape[-1], bool))
            mask[offset:offset + group.width] &= ~zero
    return out_keep, in_keep


def _width(layer):
    if isinstance(layer, L.BatchNormalization):
        return layer.moving_mean.shape[0]
    return layer.output.shape[-1]


def member_gammas(model):
    """{gamma path: raw gamma as numpy} of the member batch norms of `model`'s prunable groups."""
    return gammas_of(analyze(model))


def gammas_of(analysis):
    return {bn.gamma.path: ops.convert_to_numpy(bn.gamma)
            for group in analysis.groups if group.prunable for bn, _ in group.members}


def estimate(model, gammas=None, multiple=1):
    """The `Costs` of the model that compressing `model` would give now: without the channels
    whose gamma is exactly zero in every member of their group.

    Args:
      model: a functional Keras model.
      gammas: optional {gamma path: values} to use instead of the raw gammas (e.g. with some
        channels set to zero); paths not in it read the model's.
      multiple: count the multiply-adds with every prunable layer's input and output widths
        rounded up to a multiple of this (the blocks a CPU computes channels in, e.g. 16);
        parameters are counted exactly.
    """
    values = member_gammas(model)
    values.update(gammas or {})
    return costs(analyze(model), values, multiple)


def costs(analysis, gammas, multiple=1):
    """The `Costs` left by the channels zero in every member, given {gamma path: values} for
    every member of `analysis`'s prunable groups (multiply-adds with the pruned widths rounded
    up to `multiple`)."""
    out_keep, in_keep = _kept_masks(analysis, gammas)
    macs, params = 0, 0
    for node in analysis.nodes:
        layer = node.operation
        if not isinstance(layer, keras.layers.Layer):
            continue
        n_out = _count(out_keep, layer.name, node.outputs[0].shape[-1])
        n_in = _count(in_keep, layer.name, node.input_tensors[0].shape[-1]) \
            if node.input_tensors else 0
        if macs is not None:
            macs = _add(macs, _macs(layer, node,
                                    _padded(in_keep, layer.name, n_in, multiple),
                                    _padded(out_keep, layer.name, n_out, multiple)))
        params += _params(layer, n_in, n_out)
    return Costs(macs, params)


def _count(masks, name, default):
    mask = masks.get(name)
    return default if mask is None else int(mask.sum())


def _padded(masks, name, count, multiple):
    """`count` channels of layer `name` rounded up to `multiple` if `masks` prunes them."""
    return round_up(count, multiple) if name in masks else count


def round_up(count, multiple):
    return -(-count // multiple) * multiple


def _add(total, term):
    return None if term is None else total + term


def _macs(layer, node, n_in, n_out):
    """Multiply-adds of one call of `layer`, for one input; None when a size is unknown."""
    if isinstance(layer, EmptyConv2D) or not isinstance(layer, (L.Conv2D, L.DepthwiseConv2D,
                                                                L.Dense)):
        return 0
    spatial = node.outputs[0].shape[1:-1]
    if any(d is None for d in spatial):
        return None
    pixels = math.prod(spatial)
    if isinstance(layer, L.DepthwiseConv2D):
        return pixels * math.prod(layer.kernel_size) * n_out  # one input channel per output
    if isinstance(layer, L.Conv2D):
        return pixels * math.prod(layer.kernel_size) * n_in // layer.groups * n_out
    return pixels * n_in * n_out  # Dense on the last axis


def _params(layer, n_in, n_out):
    """Entries of `layer`'s variables once its input / output channels are n_in / n_out."""
    total = 0
    for var in layer.weights:
        shape = list(var.shape)
        if var.name == "kernel" and isinstance(layer, L.DepthwiseConv2D):
            shape[-2] = n_out // layer.depth_multiplier
        elif var.name == "kernel" and isinstance(layer, (L.Conv2D, L.Dense)):
            shape[-2], shape[-1] = n_in // getattr(layer, "groups", 1), n_out
        elif len(shape) == 1 and shape[0] == layer.output.shape[-1]:
            shape[0] = n_out  # bias, or a batch norm's per-channel vectors
        total += math.prod(shape)
    return total
