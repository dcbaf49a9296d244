"""What a model costs: parameters, multiply-adds, and the per-layer ISTA weight rho_l."""
import math

import keras

from cifar10_prune import graph
from cifar10_prune.layers import EmptyConv2D

# rho_l is a "memory" cost per channel, measured in units of the 32x32 input image.
_INPUT_PIXELS = 32 * 32


def param_count(model):
    """The original's "total params": every variable of the model, trainable or not
    (kernels, and per BN channel beta, moving mean, moving variance and gamma if present)."""
    return int(sum(math.prod(v.shape) for v in model.weights))


def conv_flops(model):
    """Multiply-adds of all convolutions for one image (batch norm, pooling and adds excluded)."""
    total = 0
    for layer in model.operations:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input.shape[-1] * cout
    return int(total)


def memory_cost(unit, next_kernel=None, next_filters=None):
    """rho_l = (H_out*W_out + k_h*k_w*C_in + sum over next convs of C_next*k'_h*k'_w) / 1024.

    `next_kernel` replaces the next convs' kernel size (the original's cnn4 quirk);
    `next_filters` maps a next conv's name to the C_next to count instead of its own width.
    """
    _, h, w, _ = unit.conv.output.shape
    cost = h * w
    if not isinstance(unit.conv, EmptyConv2D):  # an empty conv has no input channels
        kh, kw = unit.conv.kernel_size
        cost += kh * kw * unit.conv.input.shape[-1]
    for consumer in unit.consumers:
        kernel = next_kernel or consumer.conv.kernel_size
        filters = (next_filters or {}).get(consumer.conv.name, consumer.conv.filters)
        cost += filters * kernel[0] * kernel[1]
    return cost / _INPUT_PIXELS


def assign_penalty_weights(model, next_kernel_quirks=None, next_filters=None):
    """Set `penalty_weight` (rho_l) on every prunable batch norm of `model` from its shapes.

    `next_kernel_quirks` maps a unit name to the next-conv kernel size the original assumed;
    `next_filters` maps a conv name to the C_next the original counts for it (see
    `memory_cost`). Returns {unit name: rho_l}.
    """
    quirks = next_kernel_quirks or {}
    rho = {}
    for unit in graph.units(model):
        unit.bn.penalty_weight = memory_cost(unit, quirks.get(unit.name), next_filters)
        rho[unit.name] = unit.bn.penalty_weight
    return rho
