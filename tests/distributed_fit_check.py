"""Run by tests/test_distribute.py in a fresh process (the CPU can only be split into logical
devices before TensorFlow runs an operation): the library API (a user's functional model,
`ISTA` through `model.compile` / `model.fit`, the `MovingAverage` callback, `pruning.compress`)
on one device and, from the same weights and batches, under MirroredStrategy on two logical CPU
devices. Prints the largest differences as JSON."""
import json

from cifar10_prune import distribute

mirrored = distribute.make_strategy("mirrored", cpu_replicas=2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from cifar10_prune import pruning  # noqa: E402
from cifar10_prune.pruning import ISTA  # noqa: E402

BATCH, STEPS = 8, 4
keras.utils.set_random_seed(0)
rng = np.random.RandomState(0)
IMAGES = rng.normal(size=(BATCH * STEPS, 8, 8, 3)).astype("float32")
LABELS = rng.randint(0, 4, BATCH * STEPS)


def conv_bn(x, filters, name, kernel):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=name)(x)
    # synchronized: every replica normalizes with the global batch's statistics, as one device
    # does (Keras' default would normalize each replica's half batch by itself).
    x = layers.BatchNormalization(synchronized=True, name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x)


def build(strategy, weights=None):
    with strategy.scope():
        images = keras.Input((8, 8, 3))
        x = conv_bn(images, 8, "c1", 3)
        x = conv_bn(x, 8, "c2", 1)
        x = layers.GlobalAveragePooling2D()(x)
        model = keras.Model(images, layers.Dense(4, name="logits")(x))
        if weights is None:
            for name in ("c1_bn", "c2_bn"):  # spread gammas, so that the penalty zeroes some
                model.get_layer(name).gamma.assign(np.linspace(0.01, 1.5, 8))
        else:
            model.set_weights(weights)
        model.compile(optimizer=ISTA(0.1, l1_penalty=2.0, penalties=pruning.penalties(model)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def fit(model):
    average = pruning.MovingAverage()
    model.fit(IMAGES, LABELS, batch_size=BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[average])
    return average


def difference(a, b):
    """Largest difference relative to the tensor's scale (at least 1)."""
    return max(float(np.max(np.abs(x - y)) / max(1.0, np.max(np.abs(x)))) for x, y in zip(a, b))


one = build(tf.distribute.get_strategy())
two = build(mirrored, one.get_weights())  # the same initial weights
one_average, two_average = fit(one), fit(two)
gammas = [[m.get_layer(n).gamma.numpy() for n in ("c1_bn", "c2_bn")] for m in (one, two)]
slim = [pruning.compress(m, averages=a.averages()) for m, a in ((one, one_average),
                                                              (two, two_average))]
result = {
    "replicas": mirrored.num_replicas_in_sync,
    "steps": [int(m.optimizer.iterations.numpy()) for m in (one, two)],
    "zero_gammas": [int(sum(np.sum(g == 0) for g in gs)) for gs in gammas],
    "same_zeros": all(np.array_equal(a == 0, b == 0) for a, b in zip(*gammas)),
    "weights": difference(one.get_weights(), two.get_weights()),
    "averages": difference(list(one_average.averages().values()),
                           list(two_average.averages().values())),
    "slim_widths": [[s.get_layer(n).filters for n in ("c1", "c2")] for s in slim],
    "slim_logits": difference([slim[0](IMAGES, training=False).numpy()],
                              [slim[1](IMAGES, training=False).numpy()]),
}
print(json.dumps(result))
