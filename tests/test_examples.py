"""The examples/ scripts run end to end on tiny data: ISTA through plain fit prunes, the
compressed model computes what the trained one does, and the export reloads without this
package's classes."""
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "examples"))
import prune_keras_model  # noqa: E402


def _check(tmp_path, model, slim, final):
    assert slim.count_params() < model.count_params()  # it pruned
    images = np.random.RandomState(1).normal(size=(4, 32, 32, 3)).astype("float32")
    # Exact up to float rounding, SAME borders included.
    diff = np.max(np.abs(model(images, training=False) - slim(images, training=False)))
    assert diff < 1e-5 * max(1.0, float(np.max(np.abs(model(images, training=False)))))
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))  # held: it owns the variables
    np.testing.assert_allclose(loaded.serve(tf.constant(images)), final(images, training=False),
                               atol=1e-5)
    assert os.path.getsize(tmp_path / "slim.keras") > 0


@pytest.mark.parametrize("arch", ["vgg", "resnet", "mobilenet_v2"])
def test_example_on_synthetic_data(arch, tmp_path):
    _check(tmp_path, *prune_keras_model.main(
        ["--arch", arch, "--steps", "10", "--l1_penalty", "1.0", "--out_dir", str(tmp_path)]))


def test_example_on_cifar100_through_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
        _check(tmp_path, *prune_keras_model.main(
            ["--arch", "resnet", "--dataset", "cifar100", "--steps", "10", "--l1_penalty", "1.0",
             "--out_dir", str(tmp_path)]))
