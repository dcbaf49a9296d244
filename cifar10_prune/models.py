"""resnet20 and cnn4, built from an `ArchSpec` so that dense and pruned models share one builder.

Both follow the original exactly (docs/original.md section 3): convs without bias and with
Glorot-uniform kernels, SAME padding unless stated, each followed by batch norm (decay 0.999,
epsilon 0.001); weight decay `wd * sum(w**2) / 2` on every resnet20 kernel.
"""
import math

import keras

from cifar10_prune import mixed_precision, pruning
from cifar10_prune.layers import PrunableBatchNorm
from cifar10_prune.pruning import EmptyConv2D
from cifar10_prune.spec import BLOCK_OUTPUT_WIDTHS, DENSE_WIDTHS, ArchSpec

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10

# The original's rho for cnn4 counts the layer after conv3 (fc1, 4x4) with a 3x3 kernel.
# Kept so that rho, group lasso and the pruning results match the original's.
_NEXT_KERNEL_QUIRKS = {"resnet20": {}, "cnn4": {"conv3": (3, 3)}}


def build_model(spec, weight_decay=0.0005, dtype_policy="float32", folded=False):
    """The functional Keras model described by `spec`.

    Args:
      spec: an `ArchSpec` (use `ArchSpec.dense(name)` for the unpruned model).
      weight_decay: L2 weight of resnet20's kernels (cnn4 has none, as in the original).
      dtype_policy: "float32", or a mixed policy ("mixed_bfloat16", "mixed_float16"; see
        mixed_precision.py) given to every layer: the layers compute in 16 bits, but the variables
        are float32 either way (so checkpoints do not depend on it), batch norms compute in
        float32, and the logits (the last batch norm's output) are float32.
      folded: build the inference form instead: every conv has a bias and no batch norm follows
        it (everything else, names included, is the same). It is only for serving: it holds
        what `fold.fold_batch_norms` computes from a trained model, and cannot be trained by
        this package (there are no gammas to penalize).
    """
    if not isinstance(spec, ArchSpec):
        raise TypeError("build_model takes an ArchSpec, e.g. ArchSpec.dense('resnet20')")
    builder = {"resnet20": _resnet20, "cnn4": _cnn4}[spec.model]
    decay = weight_decay if spec.model == "resnet20" else 0.0  # the original's cnn4 has none
    b = _Builder(decay, mixed_precision.dtype_policy(dtype_policy), folded, spec.block_outputs)
    return builder(spec.widths, b)


def _architecture(model):
    """Which of the two networks `model` is (`build_model` names the model after it)."""
    if model.name not in DENSE_WIDTHS:
        raise ValueError("cannot tell the architecture of model %r: expected one built by "
                         "models.build_model (named one of %s)"
                         % (model.name, ", ".join(DENSE_WIDTHS)))
    return model.name


def spec_of(model):
    """The `ArchSpec` of a model built by `build_model` (unfolded), read off its graph: the
    width of every prunable layer present, 0 for the layers pruned away."""
    name = _architecture(model)
    prunable = {g.unit: g.width for g in pruning.find_groups(model) if g.prunable}
    # The residual stream is prunable exactly when its batch norms were built with gammas.
    stages = BLOCK_OUTPUT_WIDTHS.get(name, {})
    block_outputs = bool(stages) and set(stages) <= set(prunable)
    widths = dict.fromkeys(DENSE_WIDTHS[name], 0)
    widths.update(prunable)
    return ArchSpec(name, widths, block_outputs)


def penalties(model):
    """{gamma variable path: rho_l} of a model built by `build_model`, for `pruning.ISTA`.

    The library's rule (`pruning.penalties`: the paper's memory cost of a channel), with the two
    quirks of the original code kept so that rho, group lasso and the pruning results match it
    (docs/original.md section 5): a reader is counted with its *dense* width even after it was
    narrowed, and cnn4's fc1 (4x4) is counted with a 3x3 kernel as conv3's reader.
    """
    name = _architecture(model)
    dense, quirks = _dense_filters(name), _NEXT_KERNEL_QUIRKS[name]

    def reader_cost(group, reader):
        kernel = quirks.get(group.unit, reader.kernel_size)
        return dense.get(reader.name, reader.filters) * math.prod(kernel)

    return pruning.penalties(model, reader_cost)


def _dense_filters(name):
    """{conv name: its dense number of filters} for the convs a pruned model may narrow: the
    prunable units and, for resnet20, the convs of the residual stream (narrowed only when its
    block outputs are pruned; so reading them here changes nothing for the paper's pattern)."""
    dense = dict(DENSE_WIDTHS[name])
    if name == "resnet20":
        for g, width in enumerate((16, 32, 64), start=1):
            dense.update({"g%db%dc1" % (g, b): width for b in range(3)})
            dense.update({"first_conv": 16} if g == 1 else {"g%db0shortcut" % g: width})
    return dense


class _Builder:
    """Small helpers shared by both architectures."""

    def __init__(self, weight_decay, policy, folded=False, block_outputs=False):
        self.images = keras.Input(IMAGE_SHAPE, name="images")
        # Every layer gets the policy: a float32 layer between two 16-bit ones would cast the
        # activations up and down again.
        self.dtype = {"dtype": policy}
        # keras' L2(l) adds l * sum(w**2); the original adds wd * sum(w**2) / 2.
        self.regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
        # Inference form: a batch norm at inference is a per-channel affine map, so it is
        # folded into the conv before it (kernel scaled, plus a bias); conv + bias (+ ReLU) is
        # what TensorFlow's CPU kernels fuse into one op.
        self.folded = folded
        # The residual stream's batch norms get a gamma (and so become prunable) only then.
        self.block_outputs = block_outputs

    def conv(self, x, filters, kernel, name, strides=1, padding="same", output_size=None):
        """A conv, or an `EmptyConv2D` when its input has no channels left (x is None)."""
        if x is None:
            return EmptyConv2D(filters, output_size, use_bias=self.folded, name=name,
                               **self.dtype)(self.images)
        return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                                   use_bias=self.folded, kernel_initializer="glorot_uniform",
                                   kernel_regularizer=self.regularizer, name=name,
                                   **self.dtype)(x)

    def bn(self, x, name, scale=True, dtype=None):
        """The batch norm after a conv; in the folded form, nothing (it lives in the conv).
        Those with a gamma that nothing but convs read are the prunable layers (see
        pruning.groups)."""
        if self.folded:
            return x
        return PrunableBatchNorm(scale=scale, name=name,
                                 **({"dtype": dtype} if dtype else self.dtype))(x)

    def relu(self, x, name):
        return keras.layers.ReLU(name=name, **self.dtype)(x)

    def logits(self, x):
        # The last batch norm is float32 whatever the policy: its output is the logits, and the
        # softmax cross-entropy is computed from float32 logits.
        x = self.bn(x, "softmax_linear_bn", dtype="float32")  # has gamma, never penalized
        return keras.layers.Reshape((NUM_CLASSES,), name="squeeze", dtype="float32")(x)


def _resnet20(widths, b):
    # Each stage's width of the residual stream: dense unless its block outputs are pruned.
    stream = [widths.get(u, w) for u, w in BLOCK_OUTPUT_WIDTHS["resnet20"].items()]
    x = b.conv(b.images, stream[0], 3, "first_conv")
    x = b.bn(x, "first_conv_bn", scale=b.block_outputs)
    x = b.relu(x, "first_conv_relu")
    size = IMAGE_SHAPE[0]
    for group, width in enumerate(stream, start=1):
        for block in range(3):
            unit = "g%db%dc0" % (group, block)
            prefix = unit[:-2]
            stride = 2 if group > 1 and block == 0 else 1
            size //= stride
            h = None  # c0 pruned away entirely: c1 sees no channels
            if widths[unit]:
                h = b.conv(x, widths[unit], 3, unit, strides=stride)
                h = b.bn(h, unit + "_bn")
                h = b.relu(h, unit + "_relu")
            h = b.conv(h, width, 3, prefix + "c1", output_size=(size, size))
            h = b.bn(h, prefix + "c1_bn", scale=b.block_outputs)  # no ReLU
            shortcut = x
            if stride == 2:
                shortcut = b.conv(x, width, 2, prefix + "shortcut", strides=2)
                shortcut = b.bn(shortcut, prefix + "shortcut_bn", scale=b.block_outputs)
            # No ReLU after the sum.
            x = keras.layers.Add(name=prefix + "add", **b.dtype)([shortcut, h])
    x = keras.layers.AveragePooling2D(8, padding="valid", name="avg_pool", **b.dtype)(x)
    x = b.conv(x, NUM_CLASSES, 1, "softmax_linear")
    return keras.Model(b.images, b.logits(x), name="resnet20")


def _cnn4(widths, b):
    x, size = b.images, IMAGE_SHAPE[0]
    for unit, kernel in (("conv1", 5), ("conv2", 5), ("conv3", 3)):
        if widths[unit]:
            x = b.conv(x, widths[unit], kernel, unit, output_size=(size, size))
            x = b.bn(x, unit + "_bn")
            x = b.relu(x, unit + "_relu")
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=unit + "_pool",
                                          **b.dtype)(x)
        else:
            x = None  # everything up to here feeds nothing and drops out of the model
        size = (size + 1) // 2
    if widths["fc1"]:
        x = b.conv(x, widths["fc1"], size, "fc1", padding="valid", output_size=(1, 1))
        x = b.bn(x, "fc1_bn")
        x = b.relu(x, "fc1_relu")
    else:
        x = None
    x = b.conv(x, NUM_CLASSES, 1, "softmax_linear", output_size=(1, 1))
    return keras.Model(b.images, b.logits(x), name="cnn4")
