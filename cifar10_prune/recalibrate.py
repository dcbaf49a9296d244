"""Re-estimating batch-norm moving statistics (not in the original; docs/original.md section 8).

With decay 0.999 the moving statistics remember ~1,000 steps, so after a short run, or while
ISTA is shrinking gammas fast, they lag far behind the weights. This replaces them by the exact
average over N training batches of each BN's batch mean and unbiased batch variance (what the
moving averages of `layers.PrunableBatchNorm` track), computed with the network in training mode
as during training; no weight changes.
"""
import keras
import numpy as np
import tensorflow as tf


def batch_norms(model):
    return [l for l in model.operations if isinstance(l, keras.layers.BatchNormalization)]


def recalibrate_bn(model, dataset, num_batches, log=print):
    """Set every BN's moving mean/variance to the average batch statistics over `num_batches`
    batches of `dataset` ((images, labels) batches). Returns the number of batches used."""
    if num_batches < 1:
        raise ValueError("recalibrate_bn needs at least one batch, got %r" % (num_batches,))
    bns = batch_norms(model)
    probe = keras.Model(model.inputs, [bn.input for bn in bns])
    saved = [(bn.moving_mean.numpy(), bn.moving_variance.numpy()) for bn in bns]

    @tf.function
    def moments(images):
        # training=True: each BN normalizes with its batch statistics, as in training. It also
        # nudges the moving statistics, which are overwritten below.
        stats = []
        for x in probe(images, training=True):
            mean, var = tf.nn.moments(x, axes=[0, 1, 2])
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), var.dtype)
            stats.append((mean, var * n / tf.maximum(n - 1.0, 1.0)))  # unbiased, as in training
        return stats

    sums = [[np.zeros(bn.moving_mean.shape), np.zeros(bn.moving_mean.shape)] for bn in bns]
    used = 0
    for images, _ in dataset.take(num_batches):
        for acc, (mean, var) in zip(sums, moments(images)):
            acc[0] += mean.numpy()
            acc[1] += var.numpy()
        used += 1
    if not used:
        for bn, (mean, var) in zip(bns, saved):
            bn.moving_mean.assign(mean)
            bn.moving_variance.assign(var)
        raise ValueError("recalibrate_bn: the dataset yielded no batch")
    for bn, (mean_sum, var_sum) in zip(bns, sums):
        bn.moving_mean.assign(mean_sum / used)
        bn.moving_variance.assign(var_sum / used)
    log("re-estimated batch-norm statistics of %d layers from %d batches" % (len(bns), used))
    return used
