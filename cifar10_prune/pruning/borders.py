"""The exact fold at zero-padded borders: a map of ones as one more input channel of a reader.

A removed channel is the constant c at its reader's input inside the image and 0 in the padding
(the reader's own SAME padding, or a `ZeroPadding2D` on the way). Folding `sum W * c` over the
whole kernel window into a bias is right in the interior only: at the border, the taps in the
padding saw 0. What the removed channels really add to output o is `conv(m, K)[o]`, with
`K[kh, kw, o] = sum_c c_c W[kh, kw, c, o]` and m the one-channel map that is 1 where the
constants are and 0 in the padding, convolved with the reader's own strides, padding and
dilation. So the reader gets m as one more input channel, with kernel slice K, instead of a bias
term: exact everywhere, at any input size (m is made from a tensor of the model when it runs),
with built-in layers only (a `.keras` file of it loads with plain Keras):

    m = Conv2D(1, 1, kernel 0, bias 1, trainable=False)(a tensor where the constants fill the map)
    m = the ZeroPadding2D / Cropping2D layers the constants went through since, applied to m
    reader(Concatenate()([its input, m]))

Where the constants fill the map, and which padding they went through since, is each channel's
*pattern* (`patterns`), followed through the graph: removed channels of different patterns
(e.g. concatenated from a padded and an unpadded tensor) give a reader one ones channel each.
`terms` says which readers need them; `Adder` adds the layers while `compress` clones the model.
A ones map (and a concatenation) is shared by the readers that need the same one.
"""
import dataclasses

import keras
import numpy as np
from keras import ops

from cifar10_prune.pruning.groups import L, selected

# Layers that keep a zero (the padding) zero and a constant constant, channel by channel.
_PASS = (L.ReLU, L.LeakyReLU, L.ELU, L.Activation, L.Dropout, L.SpatialDropout2D, L.Identity)


@dataclasses.dataclass
class Border:
    """One ones channel of a reader.

    Attributes:
      kernel: its kernel slice, (k_h, k_w, 1, filters) for a conv and (1, units) for a dense
        layer: sum over the removed channels of this pattern of constant_c * W[..., c, :].
      base: the layer on whose output the ones map is made (the constants fill it there).
      spatial: names of the ZeroPadding2D / Cropping2D layers from `base` to the reader, which the
        ones map goes through too (empty: a map of ones).
    """
    kernel: np.ndarray
    base: str
    spatial: tuple = ()


def patterns(model, analysis):
    """{id(tensor): per channel, (base, spatial)}: a constant channel of the tensor is constant on
    the output of layer `base` and has since gone through the padding layers `spatial`.

    Where the constant is not simply zero-padded (pooled or batch-normalized together with
    padding, an activation with f(0) != 0 on it, an Add of differently padded constants) it is
    taken as constant over the map there, as `constants.constants` does."""
    out = {id(t): [(t._keras_history.operation.name, ())] * (t.shape[-1] or 0)
           for t in model.inputs}
    for node in analysis.nodes:
        layer, tensor = node.operation, node.outputs[0]
        inputs = [out[id(t)] for t in node.input_tensors]
        full = (layer.name, ())
        if isinstance(layer, L.Concatenate) and layer.axis in (-1, len(tensor.shape) - 1):
            value = [p for channels in inputs for p in channels]
        elif selected(node) is not None:  # a reader-side selection of an earlier compression
            value = [inputs[0][i] for i in selected(node)]
        elif isinstance(layer, L.ZeroPadding2D) and np.any(layer.padding):
            value = [(b, s + (layer.name,)) for b, s in inputs[0]]
        elif not any(s for channels in inputs for _, s in channels):
            value = [full] * (tensor.shape[-1] or 0)  # the common case: nothing padded so far
        elif isinstance(layer, L.Add):
            value = [ps[0] if ps[0][1] and len(set(ps)) == 1 else full for ps in zip(*inputs)]
        elif isinstance(layer, L.Cropping2D):
            value = [(b, s + (layer.name,)) if s else full for b, s in inputs[0]]
        elif isinstance(layer, _PASS) and _keeps_zero(layer):
            value = [(b, s) if s else full for b, s in inputs[0]]
        else:
            value = [full] * (tensor.shape[-1] or 0)
        out[id(tensor)] = value
    return out


def _keeps_zero(layer):
    """Whether activation / dropout `layer` maps 0 to 0 (ReLU does; sigmoid does not)."""
    if isinstance(layer, (L.Dropout, L.SpatialDropout2D, L.Identity)):
        return True  # inference: the identity
    zero = ops.convert_to_numpy(layer.call(ops.zeros((1, 1), dtype="float32")))
    return bool(np.all(zero == 0))


def terms(reader, tensor, where, removed, constant):
    """The ones channels reader `reader` (reading `tensor`) needs for its removed channels (kernel
    slices `removed` on axis -2, `constant`s, patterns `where`), and the mask of the removed
    channels whose fold into a bias is exact (dense readers and convs that pad nothing, for
    constants that went through no padding layer; or constant 0)."""
    out, rest = [], np.ones(len(where), bool)
    same = _same_pads(reader, tensor.shape)
    for pattern in sorted(set(where)):
        if not (same or pattern[1]):
            continue
        chosen = np.array([w == pattern for w in where])
        kernel = np.tensordot(constant[chosen], np.compress(chosen, removed, axis=-2),
                              axes=([0], [-2]))
        if np.any(kernel):
            out.append(Border(np.expand_dims(kernel, -2), *pattern))
            rest &= ~chosen
    return out, rest


def _same_pads(conv, shape):
    """Whether `conv` is a SAME conv that pads an input of `shape` (unknown sizes: whenever it
    can)."""
    if not isinstance(conv, L.Conv2D) or conv.padding != "same":
        return False
    for size, kernel, stride, dilation in zip(shape[1:3], conv.kernel_size, conv.strides,
                                              conv.dilation_rate):
        span = (kernel - 1) * dilation + 1
        if size is None:
            if span > 1:
                return True
        elif (-(-size // stride) - 1) * stride + span - size > 0:  # TensorFlow's SAME rule
            return True
    return False


class Adder:
    """A `clone_model` `call_function` that gives each reader named in `borders` ({name: [Border]})
    its ones channels, adding the layers that make them (named "..._ones", "..._and_ones")."""

    def __init__(self, model, borders, inputs):
        self.model = model
        self.borders = borders
        # Layers and ops (a `keras.ops.take` of an earlier compression) alike.
        self.taken = {op.name for op in model.operations} | {
            t._keras_history.operation.name for t in model.inputs}
        # layer name -> its output in the clone (the inputs' by their layers' names)
        self.outputs = {t._keras_history.operation.name: new
                        for t, new in zip(model.inputs, keras.tree.flatten(inputs))}
        self.cache = {}
        self.added = []  # names of the layers (and ops) added

    def __call__(self, layer, *args, **kwargs):
        found = self.borders.get(layer.name)
        if found:
            x = args[0]
            key = (id(x),) + tuple((b.base, b.spatial) for b in found)
            if key not in self.cache:
                maps = [self._ones(b.base, b.spatial, layer.dtype_policy) for b in found]
                self.cache[key] = self._new(L.Concatenate, _maker(x) + "_and_ones", axis=-1,
                                            dtype=layer.dtype_policy)([x] + maps)
            args = (self.cache[key],) + args[1:]
        outputs = layer(*args, **kwargs)
        self.outputs[layer.name] = outputs
        return outputs

    def _ones(self, base, spatial, dtype):
        """The ones map of `base`'s output gone through the layers `spatial` (cached)."""
        key = (base, spatial)
        if key not in self.cache:
            if not spatial:
                self.cache[key] = self._new(
                    L.Conv2D, base + "_ones", filters=1, kernel_size=1,
                    kernel_initializer="zeros", bias_initializer="ones", trainable=False,
                    dtype=dtype)(self.outputs[base])
            else:
                layer = self.model.get_layer(spatial[-1])
                config = dict(layer.get_config(), name=None)
                self.cache[key] = self._new(type(layer), layer.name + "_ones", **config)(
                    self._ones(base, spatial[:-1], dtype))
        return self.cache[key]

    def name(self, stem):
        """A name for a new layer or op: `stem`, with a number if that is taken."""
        name, i = stem, 0
        while name in self.taken:
            i += 1
            name = "%s_%d" % (stem, i)
        self.taken.add(name)
        self.added.append(name)
        return name

    def _new(self, cls, stem, **config):
        """A new layer `cls(**config)` named `stem` (with a number if that is taken)."""
        return cls(**dict(config, name=self.name(stem)))


def _maker(tensor):
    """The name of the layer (or input) that made `tensor`."""
    return tensor._keras_history.operation.name
