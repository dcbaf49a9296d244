#!/usr/bin/env python
"""Prune your own Keras model: train it with ISTA through plain `fit`, compress, export.

    python examples/prune_keras_model.py --arch resnet --dataset cifar100 --epochs 30
    python examples/prune_keras_model.py --arch mobilenet_v2 --dataset synthetic --steps 20

`--dataset cifar100` reads CIFAR-100 through `tfds.load("cifar100")` (downloaded once into
`--data_dir`); `synthetic` is random images, to see the machinery work in seconds. The script
prints which batch norms can be pruned (and why not), trains, compresses the channels whose
gamma became exactly zero, checks the narrow model against the trained one on a batch, and
writes the narrow model as `slim.keras` and as a SavedModel under `--out_dir`.
"""
import argparse
import os
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from architectures import ARCHITECTURES  # noqa: E402

from cifar10_prune import pruning  # noqa: E402
from cifar10_prune.pruning import ISTA  # noqa: E402


def datasets(name, batch_size, data_dir=None):
    """(train dataset repeated forever, one test batch, number of classes)."""
    if name == "synthetic":
        rng = np.random.RandomState(0)
        images = rng.normal(size=(8 * batch_size, 32, 32, 3)).astype("float32")
        labels = rng.randint(0, 10, len(images))
        train = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(batch_size)
        return train, (images[:batch_size], labels[:batch_size]), 10
    import tensorflow_datasets as tfds

    def standardize(image, label):
        return tf.image.per_image_standardization(image), label

    train = tfds.load(name, split="train", as_supervised=True, data_dir=data_dir)
    test = tfds.load(name, split="test", as_supervised=True, data_dir=data_dir)
    train = train.shuffle(10000).repeat().map(standardize).batch(batch_size).prefetch(2)
    images, labels = next(iter(test.map(standardize).batch(batch_size)))
    return train, (images.numpy(), labels.numpy()), 100


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default="resnet")
    p.add_argument("--dataset", choices=["synthetic", "cifar100"], default="synthetic")
    p.add_argument("--data_dir", default=None, help="tfds data directory")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=20, help="steps per epoch")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--learning_rate", type=float, default=0.1)
    p.add_argument("--l1_penalty", type=float, default=0.05)
    p.add_argument("--out_dir", default="/tmp/pruned_keras_model")
    args = p.parse_args(argv)

    train, (images, labels), num_classes = datasets(args.dataset, args.batch_size, args.data_dir)
    keras.utils.set_random_seed(0)
    model = ARCHITECTURES[args.arch](num_classes=num_classes)
    print("\n".join(pruning.explain(model)))

    # The method: ISTA on the gammas (rho_l from the model's shapes), weights averaged aside.
    model.compile(optimizer=ISTA(args.learning_rate, l1_penalty=args.l1_penalty,
                                 penalties=pruning.penalties(model)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    average = pruning.MovingAverage()
    model.fit(train, epochs=args.epochs, steps_per_epoch=args.steps, callbacks=[average],
              shuffle=False, verbose=2)  # the dataset is shuffled already

    slim = pruning.compress(model)  # raw weights: directly comparable with `model`
    dense_logits = model(images, training=False).numpy()
    slim_logits = slim(images, training=False).numpy()
    print("params: %d -> %d (%.1f%%)" % (model.count_params(), slim.count_params(),
                                          100.0 * slim.count_params() / model.count_params()))
    print("max |logits difference| on %d test images: %.3g (0 up to float rounding: the folding "
          "is exact, padded borders included); same top-1: %.1f%%"
          % (len(images), np.max(np.abs(dense_logits - slim_logits)),
             100.0 * np.mean(dense_logits.argmax(1) == slim_logits.argmax(1))))

    final = pruning.compress(model, averages=average.averages())  # what to ship: averaged weights
    os.makedirs(args.out_dir, exist_ok=True)
    final.save(os.path.join(args.out_dir, "slim.keras"))
    final.export(os.path.join(args.out_dir, "saved_model"), verbose=False)
    print("wrote %s/slim.keras and %s/saved_model; test accuracy of the slim model on %d "
          "images: %.3f" % (args.out_dir, args.out_dir, len(images),
                            np.mean(final(images, training=False).numpy().argmax(1) == labels)))
    return model, slim, final


if __name__ == "__main__":
    main()
