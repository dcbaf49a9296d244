"""The narrower model once gammas are exactly zero: which channels go and what their constants
fold into (`plan`), and the new model built by `keras.models.clone_model` (`compress`).

The groups come from `groups` (see its docstring for the rules). `plan` says which channels go
and folds their constants into the weights of the layers reading them; `compress` then builds
the new model with `keras.models.clone_model` and a `clone_function` that gives each conv /
dense layer its new `filters` / `units` (the graph, names and every other setting stay those of
the original model), adds the ones channels of the readers whose fold must see the zero padding
(`borders`), and `copy_weights` copies the kept weights in, sliced. The CIFAR-10 recipe uses the
same `plan`, with its own builder for the narrower model (`rebuild.narrow`) and the paper's
bias-only fold.
"""
import dataclasses

import keras
import numpy as np
from keras import ops

from cifar10_prune.pruning import borders, readers
from cifar10_prune.pruning.constants import constants as find_constants
from cifar10_prune.pruning.groups import L, analyze


@dataclasses.dataclass
class Plan:
    """What compressing a model changes, found by `plan`.

    Attributes:
      analysis: the model's `groups.Analysis`.
      removed: {group unit name: indices of the channels removed}, for every prunable group.
      out_mask, in_mask: {layer name: boolean mask of the output / input channels kept}, for the
        layers that lose channels.
      values: {variable path: value} of every weight, the removed channels' constants folded in.
      new_bias: {reader name: bias} for readers that need a bias they do not have.
      borders: {reader name: [`borders.Border`]}, with `exact_borders`: the readers that get
        ones channels (after their kept input channels, in this order) instead of a bias term.
      reader_side: {reader name: indices of the input channels it drops reader-side}, with
        `reader_side` (channels of the tensor it reads in `model`, constant there but kept by
        the tensor for other layers).
      selected: {reader name: indices of the channels it keeps among those of the tensor it reads
        in the new model}, for the same readers: what `compress`'s `keras.ops.take` selects.
    """
    analysis: object
    removed: dict
    out_mask: dict
    in_mask: dict
    values: dict
    new_bias: dict
    borders: dict = dataclasses.field(default_factory=dict)
    reader_side: dict = dataclasses.field(default_factory=dict)
    selected: dict = dataclasses.field(default_factory=dict)

    def width(self, layer_name, default):
        """How many output channels layer `layer_name` keeps (`default` if it loses none)."""
        mask = self.out_mask.get(layer_name)
        return default if mask is None else int(mask.sum())


def plan(model, averages=None, absorb=True, allow_empty=False, exact_borders=False,
         reader_side=False):
    """Which channels of `model` go, and its weights with their constants folded in.

    In every prunable group (`find_groups`), channel c is removed when its raw gamma is exactly
    zero in all the group's member batch norms: from the producing convs / dense layers, the
    member batch norms, the depthwise convs and other per-channel layers of the group, and as an
    input channel of every reader. A removed channel is a constant at its readers (the member's
    beta through the activations, pooling and sums on the way); with `absorb`, what it added to
    a reader's output is folded into the reader's bias if it has one, else into the moving mean
    of the batch norm that alone reads the reader, else into a bias the new reader gets. This is
    exact for dense readers and for convs that see no padding, and in the interior of SAME
    convs; at SAME borders the zero padding means the channel contributed less, so this fold
    over-corrects there by the taps in the padding (bounded by |W| * |constant| summed over those
    taps; the paper's approximation; a ZeroPadding2D before a reader counts as padding too).
    With `exact_borders` those readers instead get their removed constants as a ones channel
    (`borders`; `compress` builds it), which is exact at the borders too. Without `absorb` the
    constants are dropped (the original code's arithmetic). With `reader_side`, every conv /
    dense reader also drops the input channels that are constant where it reads them though no
    group removes them (`readers`: a pre-activation batch norm's, a blocked group's), folded
    the same way; the tensor keeps them for its other layers.

    Args:
      model: a functional Keras model; its raw gammas decide which channels go.
      averages: optional {variable path: value} to take the weights from instead of the raw
        variables (e.g. `MovingAverage.averages()`).
      absorb: fold the removed channels' constants into the readers (see above).
      allow_empty: a group whose channels are all zero loses them all (the caller can build a
        layer without channels, as the recipe's builder does); otherwise one is kept.
      exact_borders: for the readers that see zero padding, put the constants in
        `Plan.borders` (a kernel for a ones channel) rather than in a bias; the narrower model
        must then give those readers that channel (`compress` does; the recipe does not).
      reader_side: drop constant input channels from readers as above (`Plan.reader_side`,
        `Plan.selected`); the narrower model must then give each of those readers only the
        channels it keeps (`compress` does; the recipe's networks have no such readers).
    """
    analysis = analyze(model)
    values = {v.path: ops.convert_to_numpy(v) for v in model.weights}
    values.update(averages or {})
    _check_finite(model, values)
    removed_by_unit, out_mask, in_mask = _group_masks(analysis, allow_empty)
    constants = find_constants(model, analysis, values) if absorb or reader_side else None
    dropped, selected = {}, {}
    if reader_side:
        for name, drop in readers.removals(analysis, constants, in_mask).items():
            keep = in_mask.setdefault(name, np.ones(len(drop), bool))
            selected[name] = np.flatnonzero(~drop[keep])  # among what the groups leave
            dropped[name] = np.flatnonzero(drop)
            keep &= ~drop
    new_bias, ones = ({}, {})
    if absorb:
        new_bias, ones = _fold(model, analysis, values, constants, in_mask, exact_borders)
    return Plan(analysis, removed_by_unit, out_mask, in_mask, values, new_bias, ones, dropped,
                selected)


def _group_masks(analysis, allow_empty):
    """({unit: removed channels}, out_mask, in_mask) of the prunable groups (see `plan`)."""
    removed_by_unit, out_mask, in_mask = {}, {}, {}
    for group in analysis.groups:
        if not group.prunable:
            continue
        zero = np.ones(group.width, bool)
        for bn, offset in group.members:
            zero &= ops.convert_to_numpy(bn.gamma)[offset:offset + group.width] == 0
        if zero.all() and not allow_empty:
            zero[0] = False
        removed = np.flatnonzero(zero)
        removed_by_unit[group.unit] = removed
        for layer, offset in group.producers + group.members + group.channelwise:
            _mask(out_mask, layer, _width(layer))[offset + removed] = False
        for layer, offset in group.readers:
            _mask(in_mask, layer, layer.input.shape[-1])[offset + removed] = False
    return removed_by_unit, out_mask, in_mask


def copy_weights(plan, model, slim, added=()):
    """Give every layer of `slim` the weights of `model`'s layer of the same name, without the
    channels `plan` removes, and with the ones channel's kernel slice where `plan.borders` says
    (layers of `slim` without weights, e.g. empty convs, and the layers named in `added`, which
    `model` does not have, are skipped)."""
    for target in slim.layers:
        if not target.weights or target.name in added:
            continue
        layer = model.get_layer(target.name)
        old = {v.name: plan.values[v.path] for v in layer.weights}
        if target.name in plan.new_bias:
            old["bias"] = plan.new_bias[target.name]
        for var in target.weights:
            keep_out = plan.out_mask.get(layer.name)
            value = _slice(layer, var.name, old[var.name], plan.in_mask.get(layer.name), keep_out)
            if var.name == "kernel" and target.name in plan.borders:
                ones = [_slice(layer, "kernel", b.kernel, None, keep_out)
                        for b in plan.borders[target.name]]
                value = np.concatenate([value] + ones, axis=-2)
            var.assign(value)


def compress(model, averages=None, reader_side=True):
    """A new, narrower functional model computing what `model` computes in inference mode.

    The channels whose raw gamma is exactly zero in every member of their group go, and so do,
    from each conv / dense layer reading them, the channels that are constant where it reads
    them though they stay in the model (reader-side: a batch norm that follows no conv, such as
    a pre-activation network's, with gamma exactly 0, `readers`; the reader reads its kept
    channels through a `keras.ops.take`). Their constants are folded into the readers, as `plan`
    says, exactly, borders included: a conv whose kernel reaches into zero padding (its own SAME
    padding, or a ZeroPadding2D on the way) gets the constants as one more input channel, a map
    of ones with the padding's zeros, whose kernel slice is the removed channels' slices
    weighted by their constants (`borders`). It is made by built-in layers the new model gains
    (a 1x1 `Conv2D` with zero kernel and bias 1, not trainable, a `Concatenate`, and copies of
    the `ZeroPadding2D`s on the way), shared by the readers of one tensor, and is exact at any
    input size, one unknown when the model was built included. Models whose fold needs no such
    channel (VALID, 1x1 and dense readers, constants of 0) keep exactly their layers. What
    remains approximate is the constants themselves where a layer mixes them with a
    ZeroPadding2D's zeros: pooling (average pooling of them, max pooling of a negative
    constant), an activation with f(0) != 0, an Add of differently padded constants; the
    constant is then taken as filling the map after that layer. When a group's channels are all
    zero one is kept (a layer with no channels is not supported here). The new model is built
    with `keras.models.clone_model`, each conv / dense layer given its new `filters` / `units`
    (and a bias where a fold needs one); every layer name (the inputs' too) and every other
    setting stay.

    The new model is not compiled (`model`'s optimizer is typically this package's `ISTA`,
    which a saved file would then need to load): `slim.save("slim.keras")` writes a file that
    `keras.models.load_model` reads without this package (only built-in layers). Compile it to
    train it further, or prune it again: its ones maps block no group (a group whose channels
    reach a reader-side `take` is blocked, since the take may leave some of them out).

    Args:
      model: a functional Keras model; its raw gammas decide which channels go.
      averages: optional {variable path: value} to take the weights from instead of the raw
        variables (e.g. `MovingAverage.averages()`).
      reader_side: False removes the groups' channels only (this package before reader-side
        pruning; the same layers as `model`, plus ones maps).

    Returns:
      The new, uncompiled model (same layer names, "..._ones" layers where a reader needs its
      ones channel, "..._kept" `take` ops where one reads some channels of a tensor); `model`
      is not changed.

    Raises:
      ValueError: naming the layer, when a weight (or an average given) is NaN or infinite.
    """
    found = plan(model, averages, exact_borders=True, reader_side=reader_side)

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, L.Conv2D):
            config["filters"] = found.width(layer.name, config["filters"])
        elif isinstance(layer, L.Dense):
            config["units"] = found.width(layer.name, config["units"])
        if layer.name in found.new_bias:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    # clone_model compiles the clone as `model` was (its optimizer, ISTA, named by the variable
    # paths of `model`'s weights), so the uncompiled graph of the same layers is cloned; and it
    # names new inputs after their tensors ("keras_tensor"), so they are made here.
    graph = keras.Model(model.input, model.output, name=model.name)
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype,
                              name=t._keras_history.operation.name), graph.input)
    adder = borders.Adder(model, found.borders, inputs)
    select = readers.Selector(found.selected, adder.name)
    slim = keras.models.clone_model(
        graph, input_tensors=inputs, clone_function=clone,
        call_function=lambda layer, *args, **kwargs: adder(layer, *select(layer, args), **kwargs))
    copy_weights(found, model, slim, adder.added)
    return slim


def _check_finite(model, values):
    """A NaN or infinite weight makes the folded constants, and so the compressed model,
    meaningless: refuse it, naming the layer."""
    for layer in model.layers:
        for variable in layer.weights:
            value = values.get(variable.path)
            if value is not None and not np.all(np.isfinite(value)):
                raise ValueError("the weights of layer %s are not finite (%s holds NaN or "
                                 "infinite values): compress the model of a run that did not "
                                 "diverge, e.g. from an earlier checkpoint"
                                 % (layer.name, variable.path))


def _mask(masks, layer, width):
    if layer.name not in masks:
        masks[layer.name] = np.ones(width, bool)
    return masks[layer.name]


def _width(layer):
    if isinstance(layer, L.BatchNormalization):
        return layer.moving_mean.shape[0]
    return layer.output.shape[-1]


def _slice(layer, name, value, keep_in, keep_out):
    """`value` of variable `name` of `layer` without the removed input / output channels."""
    if isinstance(layer, L.DepthwiseConv2D):
        # kernel (k_h, k_w, channels, 1), bias (channels,): its channels are its output's
        keep = keep_out
        return value if keep is None else (value[:, :, keep] if value.ndim == 4 else value[keep])
    if isinstance(layer, (L.Conv2D, L.Dense)) and name == "kernel":
        if keep_in is not None:
            value = np.compress(keep_in, value, axis=-2)
        if keep_out is not None:
            value = value[..., keep_out]
        return value
    if keep_out is not None and value.ndim == 1:  # bias, or a batch norm's per-channel vectors
        return value[keep_out]
    return value


def _fold(model, analysis, values, constants, in_mask, exact_borders=False):
    """Fold each reader's removed input channels (constants) into its bias or the next BN's
    moving mean (updating `values`), or, with `exact_borders`, into ones channels where the
    reader sees zero padding; returns ({reader name: bias} for readers that need a new bias,
    {reader name: [`borders.Border`]}). `constants`: `constants.constants` of the model."""
    where = borders.patterns(model, analysis) if exact_borders else {}
    # The tensor each layer reads in this model's graph: `layer.input` is that of the layer's
    # first call, which may be in another model (layers first called in a Sequential).
    read = {node.operation.name: node.input_tensors[0] for node in analysis.nodes}
    new_bias, ones = {}, {}
    for name, keep in in_mask.items():
        if keep.all():
            continue
        layer = model.get_layer(name)
        constant = constants[id(read[name])][~keep]
        if not np.all(np.isfinite(constant)):
            raise ValueError("cannot fold the removed input channels of %s: they are not constant "
                             "there (report this: the group analysis should have blocked them)"
                             % name)
        removed = np.compress(~keep, values[layer.kernel.path], axis=-2)
        if exact_borders:  # the channels that see padding go to ones channels, the rest below
            patterns = [p for p, k in zip(where[id(read[name])], keep) if not k]
            terms, rest = borders.terms(layer, read[name], patterns, removed, constant)
            if terms:
                ones[name] = terms
            if not rest.any():
                continue
            removed, constant = np.compress(rest, removed, axis=-2), constant[rest]
        # The removed channels added sum over the kernel window (all of it: exact away from
        # zero-padded borders) of W[..., c, o] * constant_c to output o.
        shift = np.einsum("kco,c->o", removed.reshape((-1,) + removed.shape[-2:]), constant)
        _add_shift(layer, shift, analysis.consumers[name], values, new_bias)
    return new_bias, ones


def _add_shift(layer, shift, after, values, new_bias):
    """Add `shift` to the output of `layer` (read by the layers `after`): to its bias, to the
    moving mean of the batch norm that alone reads it, or to a new bias in `new_bias`."""
    if layer.use_bias:
        values[layer.bias.path] = values[layer.bias.path] + shift
    elif len(after) == 1 and isinstance(after[0], L.BatchNormalization) and \
            after[0].axis in (-1, len(layer.output.shape) - 1):
        path = after[0].moving_mean.path
        values[path] = values[path] - shift  # BN(x + s) with mean m is BN(x) with mean m - s
    else:
        new_bias[layer.name] = shift
