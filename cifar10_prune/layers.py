"""The recipe's custom layer: the original's batch norm. (The conv that remains when all of its
input channels have been pruned away is the library's, `pruning.layers.EmptyConv2D`.)"""
import keras
import tensorflow as tf
from keras import ops

# The original's slim batch_norm: decay 0.999, epsilon 0.001, no zero-debias.
BN_MOMENTUM = 0.999
BN_EPSILON = 0.001


def _global_moments(x, context):
    """Mean, biased variance and number of values per channel of NHWC `x` over the whole global
    batch of the replicas of `context` (a tf.distribute replica context), so that N replicas
    normalize exactly as one device does with the whole batch (the recipe's arithmetic does not
    change with the number of devices)."""
    axes = [0, 1, 2]
    count = ops.cast(ops.prod(ops.shape(x)[:-1]), "float32")
    # Two passes, as ops.moments, rather than E[x^2] - E[x]^2, which loses precision.
    total, count = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                      [ops.sum(x, axis=axes), count])
    mean = total / count
    squares = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                 ops.sum(ops.square(x - mean), axis=axes))
    return mean, squares / count, count


@keras.saving.register_keras_serializable(package="cifar10_prune")
class PrunableBatchNorm(keras.layers.BatchNormalization):
    """The recipe's batch norm: the original's TF1 semantics (decay 0.999, epsilon 0.001, and
    the unbiased batch variance fed to the moving variance), trained through the fused kernel.

    Which of these gammas are penalized and pruned is not a property of the layer: the graph
    decides (`pruning.find_groups`: a batch norm with a gamma, right after a conv, whose
    channels only convs read), and rho_l is computed from the shapes where the optimizer is
    made (`models.penalties`).

    Args:
      scale: whether the layer has a gamma ("BN+gamma") or not ("BN-nogamma").
    """

    def __init__(self, scale=True, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, scale=scale, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        # As TF1's fused batch norm (the original's): normalize with the biased batch variance,
        # but feed the moving variance the unbiased one, n / (n - 1) times larger. Keras
        # uses the biased one for both.
        if len(inputs.shape) != 4:
            raise ValueError("%s normalizes NHWC images; got inputs of shape %s"
                             % (self.name, inputs.shape))
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            out, mean, unbiased = self._global_batch_norm(inputs, context)
        else:
            # That very kernel: one op forward and one backward instead of a dozen element-wise
            # ones (1.2-1.3x faster float32 steps, and what lets bfloat16 pay; see
            # benchmarks/README.md). Its statistics and arithmetic are float32 also for 16-bit
            # inputs, and its batch variance output is the unbiased one.
            channels = inputs.shape[-1]
            scale = self.gamma if self.scale else tf.ones([channels], "float32")
            offset = self.beta if self.center else tf.zeros([channels], "float32")
            out, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                inputs, tf.convert_to_tensor(scale), tf.convert_to_tensor(offset),
                epsilon=self.epsilon, data_format="NHWC", is_training=True)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + unbiased * (1.0 - self.momentum))
        return ops.cast(out, self.compute_dtype)

    def _global_batch_norm(self, inputs, context):
        """The same with the statistics of the whole global batch of a tf.distribute strategy
        (the fused kernel sees only this replica's share): (output, mean, unbiased variance)."""
        x = ops.cast(inputs, "float32")
        mean, variance, n = _global_moments(x, context)
        out = ops.batch_normalization(x, mean, variance, axis=-1, offset=self.beta,
                                      scale=self.gamma if self.scale else None,
                                      epsilon=self.epsilon)
        return out, mean, variance * n / ops.maximum(n - 1.0, 1.0)
