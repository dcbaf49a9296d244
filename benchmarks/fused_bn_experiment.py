#!/usr/bin/env python
"""What would make mixed precision pay on this CPU: batch norm through TF's fused kernel.

    python benchmarks/fused_bn_experiment.py [--rounds 3] [--steps 20]

An experiment, not part of the package: it swaps `PrunableBatchNorm.call`'s training path for
`tf.compat.v1.nn.fused_batch_norm` (the op the original TF1 code ran) by monkeypatching, checks
that the swap computes the same thing (outputs and the unbiased moving variance), then times our
`Trainer.fit` step on dense resnet20 (batch 125, one in-memory batch, so no input pipeline) in
four setups, interleaved: {current element-wise BN, fused BN} x {float32, mixed_bfloat16}.

The op-level profile of `mixed_precision.py` (next to this script) shows why mixed precision
gains little with the current BN: its float32 element-wise ops (Mul, Tile, Sum,
SquaredDifference, Sub, Mean, ...) cost as much as in a float32 run, plus the casts, while only
the convolutions get faster.
"""
import argparse
import tempfile
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)

    import tensorflow as tf

    from cifar10_prune import ista, layers, models, training
    from cifar10_prune.spec import ArchSpec

    current = layers.PrunableBatchNorm.call

    def fused(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None:
            return current(self, inputs, training=training, mask=mask)
        scale = self.gamma if self.scale else tf.ones([inputs.shape[-1]], "float32")
        y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.convert_to_tensor(scale), tf.convert_to_tensor(self.beta),
            epsilon=self.epsilon, is_training=True)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + unbiased * (1 - self.momentum))
        return tf.cast(y, self.compute_dtype)

    x = tf.random.stateless_normal((8, 4, 4, 3), (1, 2))
    a, b = layers.PrunableBatchNorm(), layers.PrunableBatchNorm()
    a.build(x.shape)
    b.build(x.shape)
    diff = float(tf.reduce_max(tf.abs(current(a, x, training=True) - fused(b, x, training=True))))
    var_diff = float(np.abs(a.moving_variance.numpy() - b.moving_variance.numpy()).max())
    print("same computation: max |output difference| %.2g, moving variance difference %.2g"
          % (diff, var_diff))

    rng = np.random.RandomState(0)
    images = rng.normal(size=(125, 32, 32, 3)).astype(np.float32)
    labels = rng.randint(0, 10, 125).astype(np.int32)
    ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
    trainers = {}
    for impl, call in (("elementwise", current), ("fused", fused)):
        layers.PrunableBatchNorm.call = call  # used when the model is traced, just below
        for policy in ("float32", "mixed_bfloat16"):
            model = models.build_model(ArchSpec.dense("resnet20"), dtype_policy=policy)
            trainer = training.Trainer(model, ista.ISTA(0.1, 0.005, ista.penalties(model)),
                                       tempfile.mkdtemp(), 10 ** 9, log=lambda _: None)
            trainer.fit(ds, 3, 10 ** 9, 125)  # traces with this implementation
            trainers[(impl, policy)] = trainer
    layers.PrunableBatchNorm.call = current
    rates = {k: [] for k in trainers}
    for _ in range(args.rounds):
        for key, trainer in trainers.items():
            start = trainer.step
            t0 = time.perf_counter()
            trainer.fit(ds, start + args.steps, 10 ** 9, 125)
            rates[key].append(args.steps * 125 / (time.perf_counter() - t0))
    for key, values in rates.items():
        print("%-11s %-15s images/s by round: %s" % (key + (" ".join("%.0f" % v for v in values),)))
    for impl in ("elementwise", "fused"):
        print("%-11s mixed / float32 by round: %s" % (impl, " ".join(
            "%.2f" % (m / f) for m, f in zip(rates[(impl, "mixed_bfloat16")],
                                              rates[(impl, "float32")]))))
    print("float32: fused / elementwise by round: %s" % " ".join(
        "%.2f" % (f / e) for f, e in zip(rates[("fused", "float32")],
                                          rates[("elementwise", "float32")])))


if __name__ == "__main__":
    main()
