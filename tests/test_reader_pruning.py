"""Reader-side pruning (`pruning.readers`): a batch norm that follows no conv (pre-activation) or
whose group is blocked drops its zero-gamma channels from the convs and dense layers reading
them, while the tensor keeps them for its other layers. Checked against the dense model itself
(same weights, same zeroed gammas) and by hand-counted parameters, on hand-made pre-activation
nets and on one `keras.applications` model saved and reloaded without this package."""
import subprocess
import sys

import keras
import numpy as np
from keras import layers

from cifar10_prune import pruning
from conftest import randomize_batch_norms
from test_border_fold import images_of, relative_error
from test_pruning import _WITHOUT_PACKAGE, zero

SIZE = 8


def conv(x, filters, name, kernel=1, bias=False):
    return layers.Conv2D(filters, kernel, padding="same", use_bias=bias, name=name)(x)


def pre(x, name):
    """Batch norm -> ReLU, the batch norm following whatever made x (no conv of its own)."""
    return layers.ReLU(name=name + "_relu")(layers.BatchNormalization(name=name + "_bn")(x))


def chain():
    """conv -> pool -> BN -> ReLU -> SAME 3x3 conv: the pre-activation BN's only reader pads."""
    keras.utils.set_random_seed(0)
    images = keras.Input((SIZE, SIZE, 3), name="images")
    x = layers.MaxPooling2D(2, name="pool")(conv(images, 8, "stem", 3, bias=True))
    a = conv(pre(x, "pre"), 6, "a", kernel=3)
    a = layers.ReLU(name="a_relu")(layers.BatchNormalization(name="a_bn")(a))
    x = layers.GlobalAveragePooling2D(name="gap")(a)
    return randomize_batch_norms(keras.Model(images, layers.Dense(5, name="logits")(x)))


def two_readers_and_add():
    """ResNetV2's identity block: the pre-activation BN is read by two convs; its input x goes
    on to the Add, and a post-activation BN after the Add is read by the dense layer."""
    keras.utils.set_random_seed(0)
    images = keras.Input((SIZE, SIZE, 3), name="images")
    x = conv(images, 8, "stem", 3, bias=True)
    r = pre(x, "pre")
    h = conv(r, 4, "a")
    h = conv(layers.ReLU(name="a_relu")(layers.BatchNormalization(name="a_bn")(h)), 8, "b", 3)
    s = conv(r, 8, "short", bias=True)
    y = layers.Add(name="add")([x, h, s])
    y = layers.GlobalAveragePooling2D(name="gap")(pre(y, "post"))
    return randomize_batch_norms(keras.Model(images, layers.Dense(5, name="logits")(y)))


def concatenated():
    """Two batch-normed tensors concatenated and read by a SAME 3x3 conv (at offsets 0 and 6):
    p's conv output x is also read by cat2 (so p is a pre-activation BN), q's conv output only
    by q (a group); then DenseNet's step: the block input concatenated with the new features, a
    pre-activation BN, a 1x1 conv."""
    keras.utils.set_random_seed(0)
    images = keras.Input((SIZE, SIZE, 3), name="images")
    x = conv(images, 6, "x", 3, bias=True)
    y = conv(images, 5, "y", bias=True)
    cat = layers.Concatenate(name="cat")([pre(x, "p"), pre(y, "q")])
    c = conv(cat, 4, "c", 3)
    c = layers.ReLU(name="c_relu")(layers.BatchNormalization(name="c_bn")(c))
    t = conv(pre(layers.Concatenate(name="cat2")([x, c]), "t"), 6, "t", bias=True)
    t = layers.GlobalAveragePooling2D(name="gap")(t)
    return randomize_batch_norms(keras.Model(images, layers.Dense(3, name="logits")(t)))


def kernel_inputs(model, name):
    return model.get_layer(name).kernel.shape[-2]


def test_pre_activation_chain_with_a_padded_reader():
    """Positive betas: the reader's SAME borders need the ones channel (exact); negative betas:
    ReLU makes the constants 0, nothing to fold."""
    for sign, ones in ((+1, 1), (-1, 0)):
        dense = chain()
        zero(dense, {"pre_bn": [1, 4, 6]}, sign)
        slim = pruning.compress(dense)
        assert relative_error(dense, slim, images_of(SIZE)) < 1e-5
        assert kernel_inputs(slim, "a") == 8 - 3 + ones
        assert slim.get_layer("pre_bn").moving_mean.shape == (8,)  # the tensor keeps them
        # 747 dense: stem 224, pre_bn 32, a 3*3*8*6 = 432, a_bn 24, logits 35; a loses
        # 3*3*3*6 = 162 and, with the ones channel, gains 3*3*6 = 54 and its 1x1 conv from the
        # 8 channels (8 + 1).
        assert dense.count_params() == 747
        assert slim.count_params() == (747 - 162 + 54 + 9 if ones else 747 - 162)


def test_two_readers_and_an_add():
    dense = two_readers_and_add()
    zero(dense, {"pre_bn": [0, 3, 5], "post_bn": [2, 6]}, +1)
    slim = pruning.compress(dense)
    assert relative_error(dense, slim, images_of(SIZE)) < 1e-5
    assert {n: kernel_inputs(slim, n) for n in ("a", "short", "b", "logits")} == {
        "a": 5, "short": 5, "b": 4, "logits": 6}
    assert slim.get_layer("stem").filters == 8 and slim.get_layer("add").output.shape[-1] == 8
    # a 1x1 (4 outputs), short 1x1 (8), logits (5): 3*4 + 3*8 + 2*5 fewer of 741.
    assert dense.count_params() == 741
    assert slim.count_params() == 741 - 12 - 24 - 10
    # The same model without reader-side pruning: no group has a zero channel, nothing goes.
    assert pruning.compress(dense, reader_side=False).count_params() == 741


def test_concatenation_of_batch_normed_tensors():
    dense = concatenated()
    zero(dense, {"p_bn": [0, 3], "t_bn": [2, 7, 9]}, +1)
    zero(dense, {"q_bn": [1, 4]}, -1)  # a group's: gone everywhere (ReLU: constants 0)
    slim = pruning.compress(dense)
    assert relative_error(dense, slim, images_of(SIZE)) < 1e-5
    found = pruning.plan(dense, exact_borders=True, reader_side=True)
    assert {n: v.tolist() for n, v in found.reader_side.items()} == {"c": [0, 3], "t": [2, 7, 9]}
    assert found.removed["y"].tolist() == [1, 4]
    assert {n: v.tolist() for n, v in found.selected.items()} == {
        "c": [1, 2, 4, 5, 6, 7, 8], "t": [0, 1, 3, 4, 5, 6, 8]}
    # c: 3*3*11*4 = 396 -> 3*3*(7 + 1 ones)*4 = 288, plus the ones map's 1x1 conv on p (6 + 1);
    # t (1x1, 6 outputs) loses 3*6; y loses 2 outputs (2*(3 + 1)) and q_bn 2*4.
    # Dense: 168 + 20 + 24 + 20 + 396 + 16 + 40 + 66 + 21.
    assert dense.count_params() == 771
    assert kernel_inputs(slim, "c") == 8 and kernel_inputs(slim, "t") == 7
    assert slim.count_params() == 771 - 108 + 7 - 18 - 8 - 8


def test_explain_and_penalties_of_pre_activation_batch_norms():
    dense = two_readers_and_add()
    zero(dense, {"pre_bn": [0, 3, 5]}, +1)
    lines = {line.split(":")[0]: line for line in pruning.explain(dense)}
    assert lines["pre_bn"].startswith("pre_bn: not prunable as a group: the output of stem is "
                                      "also read by add; reader-side: ")
    assert "leaves the input of a, short" in lines["pre_bn"] and "3 of 8" in lines["pre_bn"]
    assert "leaves the input of logits" in lines["post_bn"] and "0 of 8" in lines["post_bn"]
    rho = pruning.penalties(dense)
    # What a channel frees: the readers' input channel, C_next * k * k, over the input's 8*8.
    assert rho["pre_bn/gamma"] == (4 + 8) / 64 and rho["post_bn/gamma"] == 5 / 64
    assert rho["a_bn/gamma"] == (64 + 8 + 8 * 9) / 64  # a group's rule, unchanged
    # The training log names a reader-side gamma after its batch norm, a member's after its conv.
    assert [name for name, _, _ in pruning.penalized(dense, rho)] == ["pre_bn", "a", "post_bn"]


def test_squeeze_excite_zero_constants_leave_the_project_conv():
    """x * gate is constant only where x is 0: a zero channel with a negative beta (ReLU -> 0)
    leaves the projecting conv and the squeeze conv; one with a positive beta leaves only the
    squeeze conv (it reads the constant through pooling), its gate varies with the image."""
    keras.utils.set_random_seed(0)
    images = keras.Input((SIZE, SIZE, 3), name="images")
    h = conv(images, 8, "expand", 3)
    h = layers.ReLU(name="e_relu")(layers.BatchNormalization(name="e_bn")(h))
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = layers.ReLU(name="dw_relu")(layers.BatchNormalization(name="dw_bn")(h))
    se = layers.Reshape((1, 1, 8), name="se_reshape")(layers.GlobalAveragePooling2D(name="se")(h))
    se = layers.ReLU(name="se_relu")(conv(se, 4, "squeeze", bias=True))
    se = layers.Activation("hard_sigmoid", name="gate")(conv(se, 8, "excite", bias=True))
    x = conv(layers.Multiply(name="mul")([h, se]), 6, "project")
    x = layers.GlobalAveragePooling2D(name="gap")(layers.BatchNormalization(name="p_bn")(x))
    dense = randomize_batch_norms(keras.Model(images, layers.Dense(3, name="logits")(x)))
    zero(dense, {"dw_bn": [1, 3]}, -1)
    zero(dense, {"dw_bn": [5]}, +1, seed=2)
    slim = pruning.compress(dense)
    assert relative_error(dense, slim, images_of(SIZE)) < 1e-5
    assert kernel_inputs(slim, "project") == 6 and kernel_inputs(slim, "squeeze") == 5
    assert slim.get_layer("excite").filters == 8 and slim.get_layer("dw").kernel.shape[2] == 8
    line = [l for l in pruning.explain(dense) if l.startswith("dw_bn")][0]
    assert "Multiply 'mul'" in line and "project only where its constant is 0" in line


def test_compress_again_through_the_selections():
    """The `take` a reader reads through is an op a second compression understands: more zeros,
    compressed again, still the dense model's function."""
    dense = concatenated()
    zero(dense, {"p_bn": [0, 3], "t_bn": [2, 7, 9]}, +1)
    slim = pruning.compress(dense)
    zero(slim, {"t_bn": [0, 4], "c_bn": [1]}, +1, seed=3)
    again = pruning.compress(slim)
    assert relative_error(slim, again, images_of(SIZE)) < 1e-5
    assert kernel_inputs(again, "t") == 5


def test_keras_application_through_fit_compress_and_a_package_free_reload(tmp_path):
    """MobileNetV2 (alpha 0.35, 32 px, random weights): ISTA steps through `fit` zero chosen
    gammas of two depthwise convs' batch norms only (not of the expanding convs' batch norms in
    their groups), so those channels leave the projecting convs reader-side; compressed, saved
    and reloaded where this package cannot be imported."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                           classes=4, classifier_activation=None)
    chosen = {"block_3_depthwise_BN": [0, 5, 9], "block_6_depthwise_BN": [2, 3]}
    for name, idx in chosen.items():  # below one step's threshold (the rest are 1)
        gamma = model.get_layer(name).gamma.numpy()
        gamma[idx] = 1e-6
        model.get_layer(name).gamma.assign(gamma)
    # An untrained net has large gradients (~10 on these gammas): threshold 1e-4 * rho * 2000
    # with rho ~ 0.03 here beats them, and the largest rho (1.6) takes 0.3 a step off gammas of 1.
    model.compile(optimizer=pruning.ISTA(1e-4, l1_penalty=2000.0,
                                         penalties=pruning.penalties(model)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)  # two steps: tracing the train step would cost more
    rng = np.random.RandomState(0)
    model.fit(rng.normal(size=(8, 32, 32, 3)).astype("float32"), rng.randint(0, 4, 8),
              batch_size=4, epochs=1, verbose=0)
    for name, idx in chosen.items():
        assert np.all(model.get_layer(name).gamma.numpy()[idx] == 0), name
    # Then random statistics and betas (the trained gammas stay): a strict check of the folds.
    norms = [l for l in model.layers if isinstance(l, layers.BatchNormalization)]
    trained = [bn.gamma.numpy() for bn in norms]
    randomize_batch_norms(model)
    for bn, gamma in zip(norms, trained):
        bn.gamma.assign(gamma)
    found = pruning.plan(model, exact_borders=True, reader_side=True)
    assert {n: found.reader_side[n].tolist() for n in ("block_3_project", "block_6_project")} \
        == {"block_3_project": [0, 5, 9], "block_6_project": [2, 3]}
    slim = pruning.compress(model)
    x = images_of(32, n=2, seed=1)
    assert relative_error(model, slim, x) < 1e-5
    assert slim.count_params() < pruning.compress(model, reader_side=False).count_params()
    slim.save(str(tmp_path / "slim.keras"))
    np.save(str(tmp_path / "x.npy"), x)
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_PACKAGE, str(tmp_path / "slim.keras"),
                           str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(str(tmp_path / "y.npy")), slim(x, training=False),
                               rtol=1e-5, atol=1e-6)
