"""Which channels of any functional Keras model can be pruned, and which must go together.

A channel can be pruned when the batch norm right after its conv has gamma exactly 0: in
inference the batch norm then outputs the constant beta for it, whatever the conv computed. So
the channel is removed from the conv and the batch norm, and the layers that read it (convs and
dense layers) lose that input channel; their output loses a constant, which `compress`
folds back in. This module finds, from the graph alone (never from layer names), the *groups* of
channels that must be removed together:

- conv/dense -> batch norm -> (activations, pooling, dropout, ...) -> readers: a group of its own.
- `Add` couples the groups it sums, channel c with channel c: a sum channel is constant only if
  every addend is, so a channel goes only when its gamma is zero in every member batch norm, and
  everything reading the sum reads the group.
- `Concatenate` (on the channel axis) puts each input's channels at an offset of its output;
  a reader of the concatenation reads each group at its offset.
- `DepthwiseConv2D` keeps channel c from its input's channel c, so the depthwise conv and the
  batch norm after it join the group of their input: a channel goes when it is zero in the
  producing batch norm and in the depthwise conv's batch norm. (Requiring both keeps the rule
  "zero in every member" and keeps it exact: with only the first zero, the depthwise conv of a
  constant is not constant at SAME borders.)

A group is *blocked* (never pruned) when its channels reach something that cannot drop a channel:
a model output, `Flatten`, `Reshape`, `Multiply`, a softmax over channels, an `Add` with channels
of no group, a batch norm without gamma among its members, and so on. A layer type this module
does not know (e.g. `Lambda`, custom layers) in a channel path is an error, since nothing says
whether it keeps channels apart. `explain(model)` (module `explanation`) says, for every batch
norm, which of these decisions was taken and because of which layer. A batch norm in no group,
or in a blocked group, can still drop its zero channels from the convs reading them (`readers`).
"""
import collections
import dataclasses
import re

import keras
import numpy as np

from cifar10_prune.pruning.layers import EmptyConv2D

L = keras.layers

# Keep channel c as channel c, act on each channel on its own, and keep a constant channel
# constant (activations map it, pooling and dropout at inference keep it; ZeroPadding2D and
# Cropping2D only change the border, as SAME padding does).
CHANNELWISE = (L.ReLU, L.LeakyReLU, L.ELU, L.Activation, L.MaxPooling2D, L.AveragePooling2D,
               L.GlobalAveragePooling2D, L.GlobalMaxPooling2D, L.Dropout, L.SpatialDropout2D,
               L.ZeroPadding2D, L.Cropping2D, L.UpSampling2D, L.Identity)
# Layers that read every input channel through a kernel slice: they can lose input channels.
READERS = (L.Conv2D, L.Dense)
# Layers whose output channels a batch norm after them can prune: the readers, and the conv left
# when every input channel of a conv was pruned (a narrowed recipe model; it reads nothing).
PRODUCERS = READERS + (EmptyConv2D,)
# Layers this module knows and that cannot lose a channel: they block the groups they read.
BLOCKERS = (L.Flatten, L.Reshape, L.Permute, L.Multiply, L.Subtract, L.Average, L.Maximum,
            L.Minimum, L.Dot, L.Softmax, L.LayerNormalization, L.UnitNormalization,
            L.GroupNormalization, L.SeparableConv2D, L.Conv2DTranspose, L.PReLU)
# Activations that mix channels (Activation layers with them are blockers, not channel-wise).
_CROSS_CHANNEL = ("softmax", "log_softmax")


@dataclasses.dataclass(eq=False)
class Group:
    """Channels that are pruned together; channel c of the group is channel `offset + c` of
    each layer listed with `(layer, offset)`.

    Attributes:
      width: number of channels.
      members: batch norms whose gammas decide: channel c is removable when its gamma is exactly
        zero in all of them.
      producers: convs / dense layers whose output channels these are (they lose output channels).
      channelwise: other layers on the channels' path with per-channel weights (depthwise convs,
        batch norms that follow no conv); they lose those channels too.
      readers: convs / dense layers reading the channels (they lose input channels).
      couplings: why the group has several members, e.g. "Add 'add_1'".
      blockers: why the group cannot be pruned (empty when it can).
    """
    width: int
    members: list = dataclasses.field(default_factory=list)
    producers: list = dataclasses.field(default_factory=list)
    channelwise: list = dataclasses.field(default_factory=list)
    readers: list = dataclasses.field(default_factory=list)
    couplings: list = dataclasses.field(default_factory=list)
    blockers: list = dataclasses.field(default_factory=list)
    _parent: "Group" = dataclasses.field(default=None, repr=False)

    @property
    def name(self):
        return self.members[0][0].name

    @property
    def unit(self):
        """The name of the (first) layer producing the channels: what an `ArchSpec` width, the
        training log and `rebuild` call the group."""
        return self.producers[0][0].name

    @property
    def prunable(self):
        return not self.blockers

    def _root(self):
        group = self
        while group._parent is not None:
            group = group._parent
        return group


@dataclasses.dataclass
class Analysis:
    """What `analyze` found: the groups, the graph's nodes in order, and a note per batch norm
    that is in no group (why it is not prunable)."""
    groups: list
    nodes: list
    notes: dict
    source: dict  # layer name -> the layer whose output it reads (first input), None for inputs
    consumers: dict  # layer name -> the layers reading its output


def nodes_in_order(model):
    """The call nodes of functional `model`, inputs first (each layer called exactly once)."""
    if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth") or \
            isinstance(model, keras.Sequential):
        raise ValueError("%r is not a functional Keras model; build it as keras.Model(inputs, "
                         "outputs)" % getattr(model, "name", model))
    nodes = [node for depth in sorted(model._nodes_by_depth, reverse=True)
             for node in model._nodes_by_depth[depth] if not node.is_input]
    for node in nodes:
        if isinstance(node.operation, keras.Model):
            # Its layers are not nodes of this graph: their batch norms would be left out unseen
            # and its weights, copied by name, could land in the wrong inner layer.
            raise ValueError("model %s calls the model %s as a layer; nested models are not "
                             "supported: call the inner model's layers in the outer model "
                             "instead (or prune the inner model on its own)"
                             % (model.name, node.operation.name))
    calls = collections.Counter(id(node.operation) for node in nodes)
    for node in nodes:
        if calls[id(node.operation)] > 1:
            raise ValueError("layer %s (%s) is called %d times in model %s; shared layers are not "
                             "supported" % (node.operation.name, type(node.operation).__name__,
                                            calls[id(node.operation)], model.name))
    return nodes


def _describe(layer):
    if not isinstance(layer, keras.layers.Layer):
        # A keras op called on a KerasTensor (x * 2.0, keras.ops.relu(x)) is a graph node too;
        # its class (Multiply, Relu) reads like a layer class, so say what it is.
        op = re.sub(r"(?<!^)(?=[A-Z])", "_", type(layer).__name__).lower()
        named = "" if layer.name == op else "named %s; " % layer.name
        return ("the keras op '%s' (%san op applied to a tensor, e.g. keras.ops.%s%s)"
                % (op, named, op, " or x * 2.0" if op == "multiply" else ""))
    return "%s '%s'" % (type(layer).__name__, layer.name)


class _Walker:
    """Forward pass over the graph carrying, per tensor, its channels as segments
    [(group or None, width)] in channel order (None: channels of no group)."""

    def __init__(self, model):
        self.model = model
        self.nodes = nodes_in_order(model)
        self.groups = []
        self.notes = {}
        self.segments = {}
        self.producer = {}  # id(tensor) -> the layer whose output it is
        self.readers = collections.defaultdict(list)  # id(tensor) -> consuming layers
        for node in self.nodes:
            for tensor in node.input_tensors:
                self.readers[id(tensor)].append(node.operation)
            for tensor in node.outputs:
                self.producer[id(tensor)] = node.operation

    def run(self):
        for tensor in self.model.inputs:
            self.segments[id(tensor)] = [(None, tensor.shape[-1])]
        for node in self.nodes:
            inputs = [self._segments(t) for t in node.input_tensors]
            out = self._visit(node.operation, node, inputs)
            for tensor in node.outputs:
                self.segments[id(tensor)] = out
        for tensor in self.model.outputs:
            for group, _ in self._segments(tensor):
                if group is not None:
                    self._block(group, "its channels are a model output (%s)"
                                % self.producer[id(tensor)].name)
        roots = []
        for group in self.groups:
            if group._parent is None:
                roots.append(group)
        source = {n.operation.name: self.producer.get(id(n.input_tensors[0]))
                  for n in self.nodes if n.input_tensors}
        consumers = {n.operation.name: self.readers[id(n.outputs[0])] for n in self.nodes}
        return Analysis(roots, self.nodes, self.notes, source, consumers)

    def _segments(self, tensor):
        return [(g._root() if g is not None else None, w) for g, w in self.segments[id(tensor)]]

    @staticmethod
    def _block(group, reason):
        if reason not in group.blockers:
            group.blockers.append(reason)

    def _with_groups(self, inputs):
        return [g for segs in inputs for g, _ in segs if g is not None]

    def _visit(self, layer, node, inputs):
        groups = self._with_groups(inputs)
        width = node.outputs[0].shape[-1]
        if isinstance(layer, L.BatchNormalization):
            return self._batch_norm(layer, node, inputs[0])
        if isinstance(layer, READERS) and reads_channels(layer):
            for position, (group, w) in _positions(inputs[0]):
                if group is not None:
                    group.readers.append((layer, position))
            return [(None, width)]
        if isinstance(layer, L.DepthwiseConv2D) and layer.depth_multiplier == 1 and \
                layer.data_format == "channels_last":
            for position, (group, _) in _positions(inputs[0]):
                if group is not None:
                    group.channelwise.append((layer, position))
            return inputs[0]
        if not groups:
            return [(None, width)]  # no prunable channels come in: nothing to decide here
        if isinstance(layer, L.Add):
            return self._add(layer, inputs)
        if isinstance(layer, L.Concatenate) and layer.axis in (-1, len(node.outputs[0].shape) - 1):
            return [segment for segs in inputs for segment in segs]
        if isinstance(layer, CHANNELWISE) and keeps_channels(layer):
            return inputs[0]
        if isinstance(layer, BLOCKERS + READERS + (L.Activation, L.Concatenate,
                                                   L.DepthwiseConv2D)) or is_selection(layer):
            for group in groups:
                self._block(group, "its channels reach %s, which cannot drop a channel"
                            % _describe(layer))
            return [(None, width)]
        raise ValueError("cannot prune through %s: channels of %s reach it and its effect on "
                         "channels is unknown (use built-in layers on channel paths, e.g. "
                         "keras.layers.ReLU rather than keras.ops.relu)"
                         % (_describe(layer), groups[0].name))

    def _batch_norm(self, bn, node, segments):
        (tensor,) = node.input_tensors
        source = self.producer.get(id(tensor))
        width = bn.moving_mean.shape[0]
        last = bn.axis in (-1, len(tensor.shape) - 1) or bn.axis == [len(tensor.shape) - 1]
        only_reader = len(self.readers[id(tensor)]) == 1
        if isinstance(source, PRODUCERS) and reads_channels(source) and last and only_reader:
            group = Group(width, members=[(bn, 0)], producers=[(source, 0)])
            if not bn.scale:
                self._block(group, "%s has no gamma (scale=False)" % bn.name)
            self.groups.append(group)
            return [(group, width)]
        if not last:
            for position, (group, _) in _positions(segments):
                if group is not None:
                    self._block(group, "%s normalizes another axis than the channels" % bn.name)
            self.notes[bn.name] = "normalizes another axis than the channels"
            return [(None, width)]
        if isinstance(source, L.DepthwiseConv2D) and only_reader and \
                any(g is not None for g, _ in segments):
            for position, (group, _) in _positions(segments):
                if group is not None:
                    group.members.append((bn, position))
                    group.couplings.append("%s after depthwise %s keeps its input's channels"
                                           % (bn.name, source.name))
                    if not bn.scale:
                        self._block(group, "%s has no gamma (scale=False)" % bn.name)
            return segments
        # Not after a conv: a per-channel affine map on the channels it gets (sliced with them).
        if source is None:
            self.notes[bn.name] = "follows the model input, not a conv"
        elif not isinstance(source, READERS + (L.DepthwiseConv2D,)):
            self.notes[bn.name] = "follows %s, not a conv" % _describe(source)
        elif not only_reader:
            self.notes[bn.name] = "the output of %s is also read by %s" % (
                source.name, ", ".join(l.name for l in self.readers[id(tensor)] if l is not bn))
        elif isinstance(source, L.DepthwiseConv2D):
            self.notes[bn.name] = ("follows depthwise %s, whose input channels are in no group"
                                   % source.name)
        else:
            self.notes[bn.name] = "%s is not a plain channels-last conv" % _describe(source)
        for position, (group, _) in _positions(segments):
            if group is not None:
                group.channelwise.append((bn, position))
        return segments

    def _add(self, layer, inputs):
        bounds = [[w for _, w in segs] for segs in inputs]
        if any(b != bounds[0] for b in bounds):
            for group in self._with_groups(inputs):
                self._block(group, "%s sums channels from groups that do not line up"
                            % _describe(layer))
            return [(None, sum(bounds[0]))]
        out = []
        for column in zip(*inputs):
            groups = [g for g, _ in column if g is not None]
            if not groups:
                out.append(column[0])
                continue
            root = groups[0]
            if len(groups) < len(column):
                self._block(root, "%s also sums channels that are in no group" % _describe(layer))
            for other in groups[1:]:
                if other is not root and other._root() is not root:
                    other = other._root()
                    other._parent = root
                    for field in ("members", "producers", "channelwise", "readers", "blockers"):
                        getattr(root, field).extend(getattr(other, field))
                    root.couplings.extend(other.couplings)
                    root.couplings.append("%s couples %s with %s" % (
                        _describe(layer), root.members[0][0].name, other.members[0][0].name))
            out.append((root, column[0][1]))
        return out


def is_selection(operation):
    """Whether `operation` is the `keras.ops.take` on the channel axis with which `compress`
    gives a reader only the channels it keeps (reader-side pruning): it keeps some channels of
    its input, so a group's channels may be missing behind it (a group reaching it is blocked)."""
    return (type(operation).__name__ == "Take" and type(operation).__module__.startswith("keras")
            and getattr(operation, "axis", None) == -1)


def selected(node):
    """The indices of the channels that `node`, a `compress` selection (`is_selection`), keeps;
    None for any other node."""
    if not is_selection(node.operation):
        return None
    args = node.arguments.args
    indices = args[1] if len(args) > 1 else node.arguments.kwargs["indices"]
    return np.asarray(indices, int).reshape(-1)


def reads_channels(layer):
    """Whether reader / producer `layer` reads its input channels each through its own kernel
    slice (a plain channels-last Conv2D, a Dense layer), so that it can lose input channels."""
    if isinstance(layer, EmptyConv2D):
        return True  # it has no input channels; its output channels are plain ones
    if isinstance(layer, L.Conv2D):
        return layer.groups == 1 and layer.data_format == "channels_last"
    return True  # Dense contracts the last axis


def _positions(segments):
    """[(channel offset, segment)] for segments [(group, width)]."""
    position, out = 0, []
    for segment in segments:
        out.append((position, segment))
        position += segment[1]
    return out


def keeps_channels(layer):
    """Whether channel-wise `layer` keeps channel c as channel c (a channels-last layer, an
    activation that is not a softmax over the channels)."""
    if isinstance(layer, L.Activation):
        return getattr(layer.activation, "__name__", "") not in _CROSS_CHANNEL
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def analyze(model):
    """The groups of `model`, its nodes in order, and why each other batch norm is in no group."""
    return _Walker(model).run()


def find_groups(model):
    """The channel groups of functional `model`: a list of `Group`, prunable or blocked.

    Every batch norm that directly follows a Conv2D or Dense layer (whose output nothing else
    reads) starts a group; `Add` merges groups, a depthwise conv's batch norm joins its input's
    group. Raises ValueError naming the layer when a layer of unknown effect (e.g. `Lambda`)
    is on a channel path, or when the model is not functional or calls a layer twice.
    """
    return analyze(model).groups
