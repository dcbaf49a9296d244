"""rho_l, the paper's per-channel weight of the ISTA penalty: the memory cost of one channel of
each prunable group, or of the readers' input channel it frees reader-side, from the model's
shapes."""
import math

from cifar10_prune.pruning.groups import L, analyze
from cifar10_prune.pruning.layers import EmptyConv2D
from cifar10_prune.pruning.readers import reach


def penalties(model, reader_cost=None):
    """{gamma variable path: rho_l} for the member batch norms of every prunable group of
    `model`, for `ISTA(lr, l1_penalty=..., penalties=penalties(model))`.

    rho_l is the paper's memory cost of one channel:
    (H_out*W_out + k_h*k_w*C_in + sum over the readers of C_next*k'_h*k'_w) / (H_in*W_in of the
    model's input), so / 1024 for 32x32 images (a dense layer counts as a 1x1 conv on a 1x1
    image; a depthwise conv's channel reads one input channel, k_h*k_w). In a coupled group the
    readers are shared, so each member counts its own conv plus an equal share of the readers:
    the members' rho then add up to the cost of the whole channel counted once, and a group of
    one member gets exactly the formula above. Blocked groups get no penalty (it would shrink
    gammas for nothing), unless their channels leave readers reader-side (below).

    When the spatial size is unknown (`keras.Input((None, None, 3))`, a fully convolutional
    net), rho is the cost of the channel's weights alone, from the kernel sizes and channel
    counts: k_h*k_w*C_in + sum over the readers of C_next*k'_h*k'_w (shared as above), with
    neither the feature-map term H_out*W_out nor the division by the input's H_in*W_in. For a
    channel of a conv the two dropped terms roughly cancel (the feature map is about the input's
    size over the downsampling so far), so rho is larger than the known-size rho by the input's
    H*W at most: divide l1_penalty by about H*W of the images trained on to compare with a
    known-size run, or build the model with its input size to get the paper's rho exactly.

    A batch norm in no prunable group whose zero channels `compress` drops from conv / dense
    readers reader-side (`readers`: a pre-activation batch norm, one of a group blocked by a
    squeeze-excite Multiply) gets the same rule applied to what such a channel saves: the
    readers' input-channel cost, sum over them of C_next*k'_h*k'_w (divided by the input's
    H_in*W_in when sizes are known), with no own conv and no feature map, since the channel
    stays in the tensor. That is the paper's rho (the memory a channel frees) for this kind of
    channel; readers it reaches only through a Multiply are not counted (they drop the channel
    only when its constant there is 0, which the penalty does not make happen).

    `reader_cost(group, reader)`, if given, replaces C_next*k'_h*k'_w of a reader (the recipe
    uses it for the original code's cnn4 quirks, see `models.penalties`); `group` is None for a
    reader-side batch norm's reader.
    """
    analysis = analyze(model)
    pixels = _spatial(model.inputs[0].shape) if len(model.inputs[0].shape) == 4 else 1
    sided = _reader_side(analysis)
    members = [bn for group in analysis.groups if group.prunable
               for bn, _ in group.members] + list(sided)
    # One rule for the whole model: weights and feature maps where every size is known, weights
    # alone otherwise (mixing the two would weigh channels on different scales).
    known = pixels is not None and all(_spatial(bn.output.shape) is not None for bn in members)
    cost = reader_cost or (lambda group, reader: _reader_cost(reader))
    rho = {}
    for group in analysis.groups:
        if not group.prunable:
            continue
        readers = sum(cost(group, layer) for layer, _ in group.readers)
        for bn, _ in group.members:
            own = _input_cost(analysis.source[bn.name])
            if known:
                own += _spatial(bn.output.shape)
            rho[bn.gamma.path] = (own + readers / len(group.members)) / (pixels if known else 1)
    for bn, found in sided.items():
        rho[bn.gamma.path] = sum(cost(None, layer) for layer in found) / (pixels if known else 1)
    return rho


def _reader_side(analysis):
    """{batch norm: the readers that drop its zero channels reader-side}, for the batch norms
    with a gamma that are in no prunable group and reach a reader (not through a Multiply)."""
    grouped = {bn.name for group in analysis.groups if group.prunable for bn, _ in group.members}
    out = {}
    for node in analysis.nodes:
        bn = node.operation
        if isinstance(bn, L.BatchNormalization) and bn.scale and bn.name not in grouped:
            found, _ = reach(analysis, bn)
            if found:
                out[bn] = [layer for layer, _ in found]
    return out


def _spatial(shape):
    """H*W of an NHWC shape (1 for a vector), None when a size is not known."""
    if any(d is None for d in shape[1:-1]):
        return None
    return math.prod(shape[1:-1]) if len(shape) > 2 else 1


def _input_cost(layer):
    """k_h*k_w*C_in of the layer producing a member's channels (one input channel if depthwise,
    none for an empty conv)."""
    if isinstance(layer, EmptyConv2D):
        return 0
    if isinstance(layer, L.DepthwiseConv2D):
        return math.prod(layer.kernel_size)
    if isinstance(layer, L.Conv2D):
        return math.prod(layer.kernel_size) * layer.input.shape[-1]
    return layer.input.shape[-1]  # Dense


def _reader_cost(layer):
    if isinstance(layer, L.Conv2D):
        return layer.filters * math.prod(layer.kernel_size)
    return layer.units
