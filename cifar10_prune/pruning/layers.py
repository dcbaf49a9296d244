"""The library's one custom layer: the conv that remains when all of its input channels have been
pruned away."""
import keras
from keras import ops


# Registered under the package name it was first saved with, so .keras files written before the
# library had its own subpackage still load.
@keras.saving.register_keras_serializable(package="cifar10_prune")
class EmptyConv2D(keras.layers.Layer):
    """A conv all of whose input channels were pruned: it outputs a constant of the conv's shape.

    What the removed channels contributed (a constant) has been folded into the following batch
    norm's moving mean, so only the output shape matters: without a bias the output is zeros.
    With `use_bias` (the inference form of `models.build_model(..., folded=True)`, where that
    batch norm is folded away) it is the per-channel bias the batch norm leaves, broadcast.
    `reference` is any tensor carrying the batch dimension (the model's images).
    """

    def __init__(self, filters, output_size, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.output_size = tuple(int(s) for s in output_size)
        self.use_bias = bool(use_bias)
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def call(self, reference):
        batch = ops.shape(reference)[0]
        out = ops.zeros((batch,) + self.output_size + (self.filters,), dtype=self.compute_dtype)
        if self.use_bias:
            out = out + ops.cast(self.bias, self.compute_dtype)
        return out

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.output_size + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, output_size=self.output_size, use_bias=self.use_bias)
        return config
