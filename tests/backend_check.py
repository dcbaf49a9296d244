"""The library on one Keras backend, in a process of its own (Keras picks its backend at import):
run by tests/test_backends.py with KERAS_BACKEND set, or by hand:

    KERAS_BACKEND=jax python tests/backend_check.py train DIR small mobilenet_v2
    KERAS_BACKEND=torch python tests/backend_check.py load DIR small mobilenet_v2

`train`: build each model, give it the weights in `DIR/<model>.inputs.npz` (made with NumPy by
the test, the same for every backend), then `explain`, `penalties`, ISTA (with `coupled` groups
for the small model) through `compile` /
`fit` on the batches there with the `MovingAverage` callback, `compress`, and save
`<model>.<backend>.keras`; writes `<model>.<backend>.npz` (gammas, averages, the compressed
model's outputs and widths, whether TensorFlow was imported). `load`: load every `.keras` file
of these models in DIR (written under any backend) and write its outputs and widths. With
NO_TENSORFLOW=1, TensorFlow cannot be imported, as where it is not installed (the test sets it
for JAX and PyTorch).
"""
import json
import os
import sys
import time


if os.environ.get("NO_TENSORFLOW") == "1":
    # `import tensorflow` fails, as where it is not installed. (Keras itself imports TensorFlow,
    # when it can, to serialize a layer's config, whatever the backend; where it cannot, Keras
    # does without, and so must the library.)
    sys.modules["tensorflow"] = None

import keras  # noqa: E402 (after the finder, which must see Keras' imports)
import numpy as np
from keras import layers  # noqa: E402

from cifar10_prune import pruning  # noqa: E402

SIZE = 16


def conv_bn(x, filters, name, kernel=3, strides=1, act=True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      name=name)(x)
    x = layers.BatchNormalization(name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x) if act else x


def small():
    """A stem, a residual block (its Add couples three batch norms) and a depthwise block."""
    images = keras.Input((SIZE, SIZE, 3), name="images")
    x = conv_bn(images, 8, "stem")
    h = conv_bn(x, 8, "b1c1")
    h = conv_bn(h, 8, "b1c2", act=False)
    x = layers.ReLU(name="b1_relu")(layers.Add(name="b1_add")([x, h]))
    h = conv_bn(x, 16, "expand", kernel=1)
    h = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw")(h)
    h = layers.ReLU(name="dw_relu")(layers.BatchNormalization(name="dw_bn")(h))
    x = conv_bn(h, 12, "project", kernel=1)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, layers.Dense(5, name="logits")(x), name="small")


def mobilenet_v2():
    """`keras.applications.MobileNetV2` at its smallest: width 0.35, 32 px, 5 classes."""
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                          classes=5, classifier_activation=None)


MODELS = {"small": small, "mobilenet_v2": mobilenet_v2}


def widths(model):
    """{layer name: output channels} of every conv and dense layer."""
    return {layer.name: int(layer.output.shape[-1]) for layer in model.layers
            if isinstance(layer, (layers.Conv2D, layers.Dense))}


def train(directory, *names):
    """For each model name: `<name>.inputs.npz` in, `<name>.<backend>.keras` and `.npz` out."""
    for name in names:
        _train(name, os.path.join(directory, name))


def _train(name, prefix):
    data = np.load(prefix + ".inputs.npz")
    seconds, start = {}, time.time()
    model = MODELS[name]()
    weights = [data["weight_%d" % i] for i in range(len(model.weights))]
    if [w.shape for w in weights] != [tuple(v.shape) for v in model.weights]:
        raise SystemExit("the weights in %s do not fit this backend's %s" % (prefix, name))
    model.set_weights(weights)
    seconds["build"], start = time.time() - start, time.time()
    explanation = pruning.explain(model)
    rho = pruning.penalties(model)
    seconds["explain, penalties"], start = time.time() - start, time.time()
    # The residual block's three batch norms thresholded as one (`coupled`), the others alone.
    coupled = pruning.coupled(model, rho) if bool(data["coupled"]) else None
    model.compile(optimizer=pruning.ISTA(float(data["learning_rate"]),
                                         l1_penalty=float(data["l1_penalty"]), penalties=rho,
                                         coupled=coupled),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    average = pruning.MovingAverage()
    model.fit(data["images"], data["labels"], batch_size=int(data["batch_size"]), epochs=1,
              shuffle=False, verbose=0, callbacks=[average])
    seconds["fit"], start = time.time() - start, time.time()
    slim = pruning.compress(model, averages=average.averages())
    raw = pruning.compress(model)  # the raw weights: the same function as `model`
    seconds["compress twice"], start = time.time() - start, time.time()
    backend = keras.backend.backend()
    slim.save("%s.%s.keras" % (prefix, backend))
    bns = [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]
    gammas = {"gamma/" + bn.name: keras.ops.convert_to_numpy(bn.gamma) for bn in bns}
    averages = {"average/" + path: value for path, value in average.averages().items()}
    test_images = data["test_images"]
    np.savez("%s.%s.npz" % (prefix, backend), **gammas, **averages,
             outputs=keras.ops.convert_to_numpy(slim(test_images, training=False)),
             dense_outputs=keras.ops.convert_to_numpy(model(test_images, training=False)),
             raw_outputs=keras.ops.convert_to_numpy(raw(test_images, training=False)),
             widths=json.dumps(widths(slim)), explanation="\n".join(explanation),
             penalties=json.dumps(rho), seconds=json.dumps(seconds),
             tensorflow_imported=sys.modules.get("tensorflow") is not None,
             parameters=slim.count_params(), dense_parameters=model.count_params())


def load(directory, *names):
    """Every `<name>.<saving backend>.keras` in `directory`, loaded under this backend: its
    outputs on `<name>.inputs.npz`'s test images and its widths, in
    `<name>.<saving backend>.loaded_by_<this backend>.npz`."""
    backend = keras.backend.backend()
    for file in sorted(os.listdir(directory)):
        name = file.split(".")[0]
        if not file.endswith(".keras") or name not in names:
            continue
        path = os.path.join(directory, file)
        data = np.load(os.path.join(directory, name + ".inputs.npz"))
        model = keras.models.load_model(path)
        outputs = model(data["test_images"], training=False)
        np.savez("%s.loaded_by_%s.npz" % (path[:-len(".keras")], backend),
                 outputs=keras.ops.convert_to_numpy(outputs), widths=json.dumps(widths(model)),
                 tensorflow_imported=sys.modules.get("tensorflow") is not None)


if __name__ == "__main__":
    {"train": train, "load": load}[sys.argv[1]](*sys.argv[2:])
