"""Which channels of a model are constant in inference mode, and their values.

A batch norm with gamma exactly zero outputs beta for that channel, whatever its input; the
layers after it map that constant channel by channel (activations), keep it (pooling, dropout,
padding inside the map, a reshape that only adds size-1 axes), sum it (`Add`: constant when every
addend is), place it (`Concatenate`) or multiply it (`Multiply`: 0 times anything finite is 0,
which is what makes a squeeze-excite block's zero channels constant). Everything else makes a
channel "not known to be constant" (NaN). `compression` folds these values into the readers of
removed channels; `readers` removes the channels a reader sees as constants.
"""
import numpy as np
from keras import ops

from cifar10_prune.pruning.groups import CHANNELWISE, L, keeps_channels, selected

ACTIVATIONS = (L.ReLU, L.LeakyReLU, L.ELU, L.Activation)


def constants(model, analysis, values):
    """{id(tensor): per-channel value of its constant channels in inference mode (NaN where a
    channel is not known to be constant)}, for every tensor of `model`'s graph; `values` is
    {variable path: value} (raw weights or their averages), while the raw gammas decide which
    channels are zero, as in `compression.plan`."""
    out = {}
    for tensor in model.inputs:
        out[id(tensor)] = np.full(tensor.shape[-1], np.nan)
    for node in analysis.nodes:
        inputs = [out[id(t)] for t in node.input_tensors]
        out[id(node.outputs[0])] = _through(node, inputs, values)
    return out


def _through(node, inputs, values):
    """The constants of `node`'s output from its inputs' constants `inputs`."""
    layer, tensor = node.operation, node.outputs[0]
    width, last = tensor.shape[-1], len(tensor.shape) - 1
    if isinstance(layer, L.BatchNormalization) and len(inputs) == 1 and \
            layer.axis in (-1, last, [last]):
        return bn_constant(layer, inputs[0], values)
    if isinstance(layer, L.Add):
        return np.sum(inputs, axis=0)
    if isinstance(layer, L.Concatenate) and layer.axis in (-1, last):
        return np.concatenate(inputs)
    if selected(node) is not None:
        return inputs[0][selected(node)]  # a reader-side selection of an earlier compression
    if isinstance(layer, L.Multiply) and all(len(x) == width for x in inputs):
        # Exactly 0 times a finite value (a gate, a feature) is 0 everywhere: constant.
        zero = np.any([x == 0 for x in inputs], axis=0)
        return np.where(zero, 0.0, np.prod(inputs, axis=0))
    if isinstance(layer, CHANNELWISE) and not keeps_channels(layer):
        return np.full(width, np.nan)  # a softmax over the channels, a channels-first pooling
    if isinstance(layer, ACTIVATIONS):
        return _activation(node, inputs[0])
    if isinstance(layer, CHANNELWISE) or adds_unit_axes(node):
        return inputs[0]  # pooling, dropout, padding, (C,) -> (1, 1, C): a constant stays
    return np.full(width, np.nan)


def _activation(node, x):
    """The activation of `node` applied to the constants `x` (NaN stays NaN)."""
    rank = len(node.input_tensors[0].shape)
    value = np.nan_to_num(x).astype("float32").reshape((1,) * (rank - 1) + x.shape)
    # `call`, not `__call__`: a mixed-precision layer would round the constant to 16 bits.
    value = ops.convert_to_numpy(node.operation.call(ops.convert_to_tensor(value)))
    value = value.reshape(-1).astype(float)
    value[np.isnan(x)] = np.nan
    return value


def adds_unit_axes(node):
    """Whether `node` is a `Reshape` that keeps the channels last and only adds or drops axes of
    size 1 (the (C,) -> (1, 1, C) of a squeeze-excite block)."""
    if not isinstance(node.operation, L.Reshape):
        return False
    before, after = node.input_tensors[0].shape[1:], node.outputs[0].shape[1:]
    return (before[-1] == after[-1] and all(d == 1 for d in before[:-1])
            and all(d == 1 for d in after[:-1]))


def bn_constant(bn, x, values):
    """What batch norm `bn` outputs in inference mode for the input constants `x`: beta where
    the raw gamma is exactly zero (whatever x is), the affine map of x elsewhere."""
    def get(var, default):
        return values[var.path].astype(float) if var is not None else default
    gamma = get(bn.gamma, 1.0)
    beta = get(bn.beta, 0.0)
    mean, variance = get(bn.moving_mean, 0.0), get(bn.moving_variance, 1.0)
    y = gamma * (x - mean) / np.sqrt(variance + bn.epsilon) + beta
    if bn.gamma is not None:
        y = np.where(ops.convert_to_numpy(bn.gamma) == 0, beta, y)
    return y
