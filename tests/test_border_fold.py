"""`pruning.compress` is exact at the borders of SAME-padded and zero-padded readers: the
compressed model against the uncompressed one with the same gammas zeroed, positive betas (so
the removed channels are nonzero constants after the ReLU), and a package-free reload."""
import subprocess
import sys

import keras
import numpy as np
from keras import layers

from cifar10_prune import pruning
from conftest import randomize_batch_norms
from test_pruning import _WITHOUT_PACKAGE, conv_bn, zero

SIZE = 16


def net(size=SIZE):
    """SAME 3x3 readers (one with stride 2, one after a depthwise conv), a ZeroPadding2D before
    a VALID reader, a 1x1 reader and a dense reader (seeded: the same kernels every time)."""
    keras.utils.set_random_seed(0)
    images = keras.Input((size, size, 3), name="images")
    x = conv_bn(images, 8, "c1")
    x = conv_bn(x, 12, "c2", strides=2)                 # reads c1: SAME 3x3, stride 2
    h = conv_bn(x, 16, "expand", kernel=1)               # reads c2: 1x1, exact already
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = layers.BatchNormalization(name="dw_bn")(h)
    h = layers.ReLU(name="dw_relu")(h)
    h = conv_bn(h, 10, "c3")                             # reads expand + dw: SAME 3x3
    h = layers.ZeroPadding2D(1, name="pad")(h)
    h = layers.Conv2D(8, 3, name="c4")(h)                # reads c3 through the padding: VALID,
    h = layers.BatchNormalization(name="c4_bn")(h)       # with its own bias
    h = layers.ReLU(name="c4_relu")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(images, layers.Dense(5, name="logits")(h), name="borders")


# Removed channels with positive betas at every reader kind above.
CHOSEN = {"c1_bn": [0, 3, 6], "c2_bn": [1, 5], "expand_bn": [2, 7, 11], "dw_bn": [2, 7, 11],
          "c3_bn": [4, 9], "c4_bn": [3]}


def relative_error(dense, slim, images):
    a = dense(images, training=False).numpy()
    b = slim(images, training=False).numpy()
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(a))))


def images_of(size, n=4, seed=0):
    return np.random.RandomState(seed).normal(size=(n, size, size, 3)).astype("float32")


def test_positive_constants_at_same_and_padded_borders_are_exact():
    dense = randomize_batch_norms(net())
    zero(dense, CHOSEN, +1)
    slim = pruning.compress(dense)
    error = relative_error(dense, slim, images_of(SIZE))
    assert error < 1e-5, error
    assert {n: slim.get_layer(n).filters for n in ("c1", "c2", "expand", "c3", "c4")} == {
        "c1": 5, "c2": 10, "expand": 13, "c3": 8, "c4": 7}
    assert slim.get_layer("dw").kernel.shape == (3, 3, 13, 1)
    # The SAME and padded readers read one channel more (ones with the padding's zeros), the 1x1
    # and dense readers none.
    assert slim.get_layer("c2").kernel.shape == (3, 3, 5 + 1, 10)
    assert slim.get_layer("c3").kernel.shape == (3, 3, 13 + 1, 8)
    assert slim.get_layer("c4").kernel.shape == (3, 3, 8 + 1, 7)
    assert slim.get_layer("expand").kernel.shape == (1, 1, 10, 13)
    assert slim.get_layer("logits").kernel.shape == (7, 5)
    assert slim.count_params() < dense.count_params()


def test_without_border_terms_the_structure_stays():
    """Negative betas (ReLU kills the constants) and a 1x1 reader: nothing needs a border term,
    so no layer is added."""
    dense = randomize_batch_norms(net())
    zero(dense, CHOSEN, -1)
    zero(dense, {"c2_bn": [1, 5]}, +1)  # read by the 1x1 conv only: exact without a term
    slim = pruning.compress(dense)
    assert [l.name for l in slim.layers] == [l.name for l in dense.layers]
    assert relative_error(dense, slim, images_of(SIZE)) < 1e-5


def test_unknown_input_size_is_exact_at_any_size():
    dense = randomize_batch_norms(net(None))
    zero(dense, CHOSEN, +1)
    slim = pruning.compress(dense)
    for size in (8, 13):  # 13: odd, so the stride-2 SAME conv pads on both sides
        error = relative_error(dense, slim, images_of(size))
        assert error < 1e-5, (size, error)


def test_no_padding_no_term():
    """A SAME 2x2 stride-2 conv on an even input pads nothing: its fold is exact as it is."""
    images = keras.Input((8, 8, 3))
    x = conv_bn(images, 6, "a")
    x = conv_bn(x, 4, "b", kernel=2, strides=2)
    x = layers.GlobalAveragePooling2D()(x)
    dense = randomize_batch_norms(keras.Model(images, layers.Dense(3, name="logits")(x)))
    zero(dense, {"a_bn": [1, 4]}, +1)
    slim = pruning.compress(dense)
    assert len(slim.layers) == len(dense.layers)
    assert relative_error(dense, slim, images_of(8)) < 1e-5


def test_saved_and_reloaded_without_this_package(tmp_path):
    dense = randomize_batch_norms(net())
    zero(dense, CHOSEN, +1)
    slim = pruning.compress(dense)
    slim.save(str(tmp_path / "slim.keras"))
    x = images_of(SIZE, n=2, seed=1)
    np.save(str(tmp_path / "x.npy"), x)
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_PACKAGE, str(tmp_path / "slim.keras"),
                           str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    reloaded = np.load(str(tmp_path / "y.npy"))
    np.testing.assert_allclose(reloaded, slim(x, training=False), atol=1e-6)
    expected = dense(x, training=False).numpy()
    assert np.max(np.abs(reloaded - expected)) < 1e-5 * max(1.0, np.abs(expected).max())


def test_compress_again_after_compress():
    """A compressed model is a model to prune again: its ones maps block no group, and a second
    compression is exact too."""
    dense = randomize_batch_norms(net())
    zero(dense, {"c1_bn": [0, 3], "c3_bn": [4]}, +1)
    slim = pruning.compress(dense)
    groups = {g.name: g for g in pruning.find_groups(slim)}
    assert all(groups[name].prunable for name in ("c1_bn", "c2_bn", "c3_bn", "c4_bn"))
    assert set(pruning.penalties(slim)) == {n + "_bn/gamma" for n in ("c1", "c2", "c3", "c4")} | {
        "expand_bn/gamma", "dw_bn/gamma"}
    zero(slim, {"c1_bn": [1], "c3_bn": [0, 5], "c2_bn": [2]}, +1, seed=2)
    again = pruning.compress(slim)
    assert again.get_layer("c1").filters == 5 and again.get_layer("c3").filters == 7
    assert relative_error(slim, again, images_of(SIZE)) < 1e-5


def test_concatenated_padded_and_unpadded_constants():
    """A VALID reader of a padded and an unpadded tensor, concatenated: the padded constants get
    a ones channel (with the padding's zeros), the unpadded ones fold into the bias exactly."""
    images = keras.Input((8, 8, 3), name="images")
    a = layers.ZeroPadding2D(1, name="pad_a")(conv_bn(images, 4, "a"))
    b = conv_bn(layers.ZeroPadding2D(1, name="pad_images")(images), 6, "b", kernel=1)
    x = layers.Concatenate(name="cat")([a, b])
    x = conv_bn(x, 5, "c", padding="valid")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    dense = randomize_batch_norms(keras.Model(images, layers.Dense(3, name="logits")(x)))
    zero(dense, {"a_bn": [1], "b_bn": [0, 5]}, +1)
    slim = pruning.compress(dense)
    error = relative_error(dense, slim, images_of(8))
    assert error < 1e-5, error
    assert slim.get_layer("c").kernel.shape == (3, 3, 3 + 4 + 1, 5)
    assert isinstance(slim.get_layer("pad_a_ones"), layers.ZeroPadding2D)
