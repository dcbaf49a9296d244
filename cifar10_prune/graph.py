"""Reading structure off a functional Keras model's graph.

Pruning, the ISTA weights and gamma rescaling all need to know, for a prunable batch norm, which
conv produced its channels and which convs read them. That is found by walking the model's
graph (each layer's inbound and outbound nodes), never by matching layer names.
"""
import dataclasses

import keras

from cifar10_prune.layers import EmptyConv2D, PrunableBatchNorm

# Layers that act on each channel separately, so a channel keeps its identity through them.
CHANNELWISE = (keras.layers.ReLU, keras.layers.Activation, keras.layers.MaxPooling2D,
               keras.layers.AveragePooling2D)
CONVS = (keras.layers.Conv2D, EmptyConv2D)


class GraphError(ValueError):
    """The model has a shape this package cannot prune."""


@dataclasses.dataclass
class Consumer:
    """A conv that reads a prunable layer's channels, through the channel-wise `path`."""
    conv: keras.layers.Layer
    path: list


@dataclasses.dataclass
class Unit:
    """A prunable layer: conv -> PrunableBatchNorm, and the convs that read its channels."""
    name: str
    conv: keras.layers.Layer  # a Conv2D, or an EmptyConv2D when its inputs were all pruned
    bn: PrunableBatchNorm
    consumers: list


def _inbound_layers(layer):
    # A layer of these models is called exactly once, so its first inbound node is its call.
    return [node.operation for node in layer._inbound_nodes[0].parent_nodes]


def _outbound_layers(model, layer):
    members = set(id(op) for op in model.operations)
    return [node.operation for node in layer._outbound_nodes if id(node.operation) in members]


def consumers(model, layer):
    """The convs reading `layer`'s output channels, each with the channel-wise path to it."""
    found = []
    stack = [(layer, [])]
    while stack:
        current, path = stack.pop()
        for nxt in _outbound_layers(model, current):
            if isinstance(nxt, CONVS):
                found.append(Consumer(nxt, path))
            elif isinstance(nxt, CHANNELWISE):
                stack.append((nxt, path + [nxt]))
            else:
                raise GraphError("the channels of %s reach %s (%s), which cannot drop channels; "
                                 "only a conv may read a prunable layer"
                                 % (layer.name, nxt.name, type(nxt).__name__))
    return found


def source_bn(layer):
    """The batch norm whose channels are `layer`'s input, through channel-wise layers, or None."""
    parents = _inbound_layers(layer)
    while len(parents) == 1 and isinstance(parents[0], CHANNELWISE):
        parents = _inbound_layers(parents[0])
    if len(parents) == 1 and isinstance(parents[0], keras.layers.BatchNormalization):
        return parents[0]
    return None


def units(model):
    """Every prunable layer of `model`, in graph order."""
    found = []
    for layer in model.operations:
        if isinstance(layer, PrunableBatchNorm) and layer.prunable:
            (conv,) = _inbound_layers(layer)
            if not isinstance(conv, CONVS):
                raise GraphError("prunable batch norm %s must follow a conv, not %s"
                                 % (layer.name, type(conv).__name__))
            found.append(Unit(layer.unit, conv, layer, consumers(model, layer)))
    return found


def bn_after(model, conv):
    """The batch norm that normalizes `conv`'s output."""
    after = _outbound_layers(model, conv)
    if len(after) != 1 or not isinstance(after[0], keras.layers.BatchNormalization):
        raise GraphError("%s must be followed by exactly one batch norm to absorb pruned "
                         "channels; it feeds %s" % (conv.name, [l.name for l in after]))
    return after[0]
