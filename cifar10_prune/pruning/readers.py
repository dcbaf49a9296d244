"""Reader-side pruning: a channel that is constant where a conv or dense layer reads it leaves
that reader, and stays for every other layer.

A group (`groups`) removes a channel everywhere, which needs a batch norm right after the conv
that makes it. A batch norm that follows no conv (the pre-activation batch norms of ResNetV2
after an `Add`, of DenseNet after a `Concatenate`) or whose group is blocked (by a
squeeze-excite `Multiply`, a model output) still makes a channel whose gamma is exactly 0 a
constant in inference mode: beta, then mapped by the activations and pooling on the way
(`constants`). Each `Conv2D` / `Dense` reading that constant can drop the input channel, its
constant folded into the reader as a group's is (bias, the next batch norm's moving mean, or a
ones channel at zero-padded borders, `borders`), while the tensor keeps the channel for the
layers that still use it (the batch norm itself, an `Add`, the next `Concatenate`). So what it
saves is the readers' input-channel weights: k_h*k_w*filters per conv reader, units per dense
reader. In a prunable group it also drops a channel that is zero in the last member only (a
depthwise conv's batch norm) from the readers behind it.

A channel multiplied by a squeeze-excite gate is constant only where it is 0 after its
activation (ReLU of a beta <= 0, hard-swish of a beta <= -3, swish of a beta of exactly 0):
a nonzero constant times a gate that varies with the image is not constant, and the gate's own
conv, the depthwise conv and the expanding conv keep the channel (they are not readers of it).

In the new model a reader reads the channels it keeps through `keras.ops.take` on the channel
axis (a plain Keras op: a `.keras` file of it loads without this package), one per tensor and
set of kept channels (`Selector`).
"""
import numpy as np
from keras import ops

from cifar10_prune.pruning.constants import adds_unit_axes
from cifar10_prune.pruning.groups import (CHANNELWISE, READERS, L, keeps_channels,
                                          reads_channels)


def removals(analysis, constants, in_mask):
    """{reader name: boolean mask over the channels of the tensor it reads, True for the constant
    channels it drops on top of those its groups remove (`in_mask`, {layer name: kept input
    channels})}: every plain conv / dense reader loses each channel that `constants` ({id(tensor):
    values, NaN where not constant}) knows as constant at its input; one channel stays when all
    of them would go (a layer without input channels cannot be built)."""
    out = {}
    for node in analysis.nodes:
        layer = node.operation
        if not (isinstance(layer, READERS) and reads_channels(layer)):
            continue
        constant = constants[id(node.input_tensors[0])]
        keep = in_mask.get(layer.name, np.ones(len(constant), bool))
        drop = keep & np.isfinite(constant)
        if drop.any() and not (keep & ~drop).any():
            drop[np.flatnonzero(drop)[0]] = False
        if drop.any():
            out[layer.name] = drop
    return out


def reach(analysis, bn):
    """The readers from which a channel of batch norm `bn` with gamma 0 goes reader-side:
    (readers, gated), where `readers` read it through layers that keep a constant constant
    (activations, pooling, padding, dropout, concatenations, batch norms) and `gated` through a
    `Multiply` as well (they lose it only where its constant is 0 there); lists of
    (reader, multiply) with multiply None for `readers`. The walk stops at an `Add` (a sum is
    constant only if every addend is; `explain` and `penalties` do not guess that) and at
    any other layer."""
    nodes = {node.operation.name: node for node in analysis.nodes}
    found, todo, seen = [], [(bn, None)], set()
    while todo:
        layer, multiply = todo.pop(0)
        for after in analysis.consumers.get(layer.name, []):
            if isinstance(after, READERS) and reads_channels(after):
                if after.name not in seen:
                    found.append((after, multiply))
                    seen.add(after.name)
            elif isinstance(after, L.Multiply):
                todo.append((after, multiply or after))
            elif _keeps_constants(after, nodes[after.name]):
                todo.append((after, multiply))
    return [r for r in found if r[1] is None], [r for r in found if r[1] is not None]


def _keeps_constants(layer, node):
    last = len(node.outputs[0].shape) - 1
    if isinstance(layer, CHANNELWISE):
        return keeps_channels(layer)
    if isinstance(layer, L.Concatenate):
        return layer.axis in (-1, last)
    if isinstance(layer, L.BatchNormalization):
        return layer.axis in (-1, last, [last])
    return adds_unit_axes(node)


def clause(analysis, bn, in_group):
    """What `explain` says of `bn`'s channels reader-side ("" when they reach no reader);
    `in_group`: `bn` is a member of a prunable group (which removes a channel zero in all its
    members everywhere already)."""
    if not bn.scale:
        return ""  # no gamma, never a zero channel
    readers, gated = reach(analysis, bn)
    if not readers and not gated:
        return ""
    zero = int(np.sum(ops.convert_to_numpy(bn.gamma) == 0))
    which = ("a channel zero here but not in every member" if in_group
             else "a channel with gamma exactly 0")
    parts = []
    if readers:
        parts.append("%s leaves the input of %s (constant folded in; the tensor keeps it for "
                     "its other layers)" % (which, ", ".join(r.name for r, _ in readers)))
    for multiply in dict.fromkeys(m for _, m in gated):
        names = ", ".join(r.name for r, m in gated if m is multiply)
        parts.append("%s %s only where its constant is 0 after the activation (Multiply '%s' "
                     "scales it by a gate that varies with the image, so another constant does "
                     "not stay constant)" % ("it leaves" if readers else which + " leaves",
                                             names, multiply.name))
    return "reader-side: %s; %d of %d gammas are 0 now" % (
        "; ".join(parts), zero, bn.moving_mean.shape[0])


class Selector:
    """The step of `compress`'s `clone_model` call function that gives each reader named in
    `kept` ({reader name: indices of the channels it keeps, among those of the tensor it reads in
    the new model}) only those channels, through `keras.ops.take` on the channel axis; `name`
    makes a new op name from a stem (`borders.Adder.name`: unique in the new model)."""

    def __init__(self, kept, name):
        self.kept = kept
        self.name = name
        self.cache = {}

    def __call__(self, layer, args):
        """`args` of the call of `layer` with its input narrowed to the channels it keeps."""
        kept = self.kept.get(layer.name)
        if kept is None:
            return args
        x = args[0]
        key = (id(x), tuple(int(i) for i in kept))
        if key not in self.cache:
            selected = ops.take(x, np.asarray(kept, "int32"), axis=-1)
            # ops.take names its op "take": a second compression would clash with the first's.
            operation = selected._keras_history.operation
            operation.name = self.name(x._keras_history.operation.name + "_kept")
            self.cache[key] = selected
        return (self.cache[key],) + tuple(args[1:])
