"""What a model costs: parameters and multiply-adds (rho_l, the ISTA weight of a channel, is
`pruning.penalties`)."""
import math

import keras


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
