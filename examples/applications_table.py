#!/usr/bin/env python
"""What reader-side pruning adds on `keras.applications` models: parameters after compression
without it and with it, and how exactly the compressed model computes the dense one.

    python examples/applications_table.py
    python examples/applications_table.py --models ResNet50V2 --fraction 0.5 --size 64

Conditions: `weights=None` (random Glorot kernels, nothing trained), inputs of `--size` px, 10
classes and logits out (`classifier_activation=None`); every batch norm, pre-activation ones
included, gets random statistics, betas and gammas, and then exactly `--fraction` of its gammas
(chosen at random) set to 0. The max output difference is max |dense - compressed| over
`--images` random images, divided by max |dense| (the logits' scale). Prints a Markdown table.
"""
import argparse
import time

import keras
import numpy as np

from cifar10_prune import pruning

MODELS = ("ResNet50V2", "DenseNet121", "MobileNetV2", "ResNet50")


def build(name, size, seed):
    """`keras.applications.<name>` with random weights and batch norms (see the module doc)."""
    keras.utils.set_random_seed(seed)
    return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                             classes=10, classifier_activation=None)


def zero_gammas(model, fraction, seed):
    """Random statistics, betas and gammas for every batch norm, then `fraction` of each one's
    gammas exactly 0; returns (zeroed gammas, all gammas)."""
    rng = np.random.RandomState(seed)
    zeroed = total = 0
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        c = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(0, 0.3, c))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))
        layer.beta.assign(rng.normal(0, 0.5, c))
        gamma = rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c)
        gamma[rng.choice(c, int(round(fraction * c)), replace=False)] = 0.0
        layer.gamma.assign(gamma)
        zeroed += int(np.sum(gamma == 0))
        total += c
    return zeroed, total


def relative_error(dense, slim, images):
    a = dense(images, training=False).numpy()
    b = slim(images, training=False).numpy()
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def measure(name, size, fraction, n_images, seed):
    """One row: {name, params, groups, reader_side, error_groups, error_reader_side, seconds}."""
    model = build(name, size, seed)
    zeroed, total = zero_gammas(model, fraction, seed)
    images = np.random.RandomState(seed + 1).normal(size=(n_images, size, size, 3))
    images = images.astype("float32")
    start = time.time()
    groups_only = pruning.compress(model, reader_side=False)
    slim = pruning.compress(model)
    seconds = time.time() - start
    return dict(name=name, zeroed="%d / %d" % (zeroed, total), params=model.count_params(),
                groups=groups_only.count_params(), reader_side=slim.count_params(),
                error_groups=relative_error(model, groups_only, images),
                error_reader_side=relative_error(model, slim, images), seconds=seconds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--fraction", type=float, default=0.3)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print("| model | zero gammas | params | after, groups only | after, + reader-side | "
          "reader-side removes | max output diff / max output (groups only; + reader-side) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for name in args.models:
        row = measure(name, args.size, args.fraction, args.images, args.seed)
        rows.append(row)
        print("| %s | %s | %s | %s (-%.1f%%) | %s (-%.1f%%) | %s | %.1e; %.1e |" % (
            row["name"], row["zeroed"], format(row["params"], ","), format(row["groups"], ","),
            100 * (1 - row["groups"] / row["params"]), format(row["reader_side"], ","),
            100 * (1 - row["reader_side"] / row["params"]),
            format(row["groups"] - row["reader_side"], ","), row["error_groups"],
            row["error_reader_side"]), flush=True)
    return rows


if __name__ == "__main__":
    main()
