"""The library API (`cifar10_prune.pruning`) on tiny VGG-, ResNet- and MobileNetV2-style models: the
compressed model against the uncompressed one with the same gammas zeroed."""
import ast
import glob
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from cifar10_prune import models, pruning, rebuild, training
from cifar10_prune.pruning import ista
from cifar10_prune.spec import ArchSpec
from conftest import REPO, randomize_batch_norms

SIZE = 16
IMAGES = np.random.RandomState(42).normal(size=(4, SIZE, SIZE, 3)).astype(np.float32)


def conv_bn(x, filters, name, kernel=3, strides=1, padding="same", act="relu"):
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                      name=name)(x)
    x = layers.BatchNormalization(name=name + "_bn")(x)
    if act == "relu":
        x = layers.ReLU(name=name + "_relu")(x)
    elif act == "relu6":
        x = layers.ReLU(6.0, name=name + "_relu")(x)
    return x


def vgg(padding="same", lambda_after=None):
    images = keras.Input((SIZE, SIZE, 3), name="images")
    x = images
    for i, width in enumerate((8, 12, 16), start=1):
        x = conv_bn(x, width, "conv%d" % i, padding="same" if i == 1 else padding)
        if lambda_after == i:
            x = layers.Lambda(lambda t: t * 2.0, name="scale")(x)
        x = layers.MaxPooling2D(2, padding="same", name="pool%d" % i)(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, layers.Dense(10, name="logits")(x), name="vgg")


def resnet():
    images = keras.Input((SIZE, SIZE, 3), name="images")
    x = conv_bn(images, 8, "stem")
    h = conv_bn(x, 8, "b1c1")
    h = conv_bn(h, 8, "b1c2", act=None)
    x = layers.ReLU(name="b1_relu")(layers.Add(name="b1_add")([x, h]))
    h = conv_bn(x, 16, "b2c1", strides=2)
    h = conv_bn(h, 16, "b2c2", act=None)
    s = conv_bn(x, 16, "b2short", kernel=1, strides=2, act=None)
    x = layers.ReLU(name="b2_relu")(layers.Add(name="b2_add")([s, h]))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, layers.Dense(10, name="logits")(x), name="resnet")


def mobilenet_block():
    images = keras.Input((SIZE, SIZE, 3), name="images")
    x = conv_bn(images, 8, "stem", act="relu6")
    h = conv_bn(x, 24, "expand", kernel=1, act="relu6")
    h = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(h)
    h = layers.BatchNormalization(name="dw_bn")(h)
    h = layers.ReLU(6.0, name="dw_relu")(h)
    h = conv_bn(h, 8, "project", kernel=1, act=None)
    x = layers.Add(name="add")([x, h])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, layers.Dense(10, name="logits")(x), name="mobilenet")


def zero(model, chosen, beta_sign, seed=1):
    """gamma = 0 for channels `chosen[bn name]`, with betas of sign `beta_sign`."""
    rng = np.random.RandomState(seed)
    for name, idx in chosen.items():
        bn = model.get_layer(name)
        idx = np.asarray(idx, int)
        gamma, beta = bn.gamma.numpy(), bn.beta.numpy()
        gamma[idx] = 0.0
        beta[idx] = beta_sign * rng.uniform(0.1, 1.0, idx.size)
        bn.gamma.assign(gamma)
        bn.beta.assign(beta)


def assert_same_function(dense, slim, tol=1e-5):
    a, b = dense(IMAGES, training=False).numpy(), slim(IMAGES, training=False).numpy()
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol * max(1.0, np.abs(a).max()))


def widths(model, names):
    return {n: model.get_layer(n).output.shape[-1] for n in names}


def groups_by_name(model):
    return {g.name: g for g in pruning.find_groups(model)}


# --- VGG-style: one group per conv ---------------------------------------------------------

def test_vgg_groups():
    groups = groups_by_name(vgg())
    assert set(groups) == {"conv1_bn", "conv2_bn", "conv3_bn"}
    assert [r.name for r, _ in groups["conv1_bn"].readers] == ["conv2"]
    assert [r.name for r, _ in groups["conv3_bn"].readers] == ["logits"]
    assert all(g.prunable and len(g.members) == 1 for g in groups.values())


@pytest.mark.parametrize("padding, beta_sign", [("same", -1), ("valid", +1)])
def test_vgg_exact(padding, beta_sign):
    # Negative betas: ReLU kills the removed channels, nothing to fold. Positive betas with VALID
    # readers (and the dense layer after global pooling): the fold covers the whole window.
    dense = randomize_batch_norms(vgg(padding))
    zero(dense, {"conv1_bn": [0, 3], "conv2_bn": [1, 5, 7], "conv3_bn": [2, 4, 6, 8]}, beta_sign)
    slim = pruning.compress(dense)
    assert widths(slim, ["conv1", "conv2", "conv3"]) == {"conv1": 6, "conv2": 9, "conv3": 12}
    assert slim.get_layer("logits").kernel.shape == (12, 10)
    assert slim.count_params() < dense.count_params()
    assert_same_function(dense, slim)


def test_vgg_same_borders_exact():
    """Positive constants read by a SAME 3x3 conv: exact at the borders too, through the ones
    channel the reader gets (tests/test_border_fold.py has more)."""
    dense = randomize_batch_norms(vgg("same"))
    zero(dense, {"conv2_bn": [1, 5, 7]}, +1)
    slim = pruning.compress(dense)
    assert slim.get_layer("conv3").kernel.shape == (3, 3, 12 - 3 + 1, 16)
    assert_same_function(dense, slim)


def test_nothing_zero_is_identity():
    dense = randomize_batch_norms(resnet())
    slim = pruning.compress(dense)
    assert slim.count_params() == dense.count_params()
    assert_same_function(dense, slim)


# --- ResNet-style: blocks coupled through Add ----------------------------------------------

def test_resnet_groups_and_explain():
    model = resnet()
    groups = groups_by_name(model)
    stem = groups["stem_bn"]
    assert {bn.name for bn, _ in stem.members} == {"stem_bn", "b1c2_bn"}
    assert {r.name for r, _ in stem.readers} == {"b1c1", "b2c1", "b2short"}
    out = groups[[n for n in groups if "b2" in n and n != "b2c1_bn"][0]]
    assert {bn.name for bn, _ in out.members} == {"b2c2_bn", "b2short_bn"}
    assert [r.name for r, _ in out.readers] == ["logits"]
    assert len(groups) == 4
    lines = {line.split(":")[0]: line for line in pruning.explain(model)}
    assert "coupled with b1c2_bn" in lines["stem_bn"] and "b1_add" in lines["stem_bn"]
    assert "alone" in lines["b1c1_bn"]


@pytest.mark.parametrize("beta_sign", [-1, +1])
def test_resnet_coupled(beta_sign):
    dense = randomize_batch_norms(resnet())
    # stem group: 1, 4 zero in both members (go), 6 only in stem_bn (stays);
    # output group: 0, 3, 5 in both (go), 9 only in the shortcut (stays).
    chosen = {"stem_bn": [1, 4, 6], "b1c2_bn": [1, 4], "b1c1_bn": [2],
              "b2c2_bn": [0, 3, 5], "b2short_bn": [0, 3, 5, 9]}
    zero(dense, chosen, -1)
    if beta_sign > 0:
        # Positive betas only where every reader is exact (the dense layer after pooling).
        zero(dense, {"b2c2_bn": [0, 3, 5], "b2short_bn": [0, 3, 5]}, +1)
    slim = pruning.compress(dense)
    assert widths(slim, ["stem", "b1c1", "b1c2", "b2c1", "b2c2", "b2short"]) == {
        "stem": 6, "b1c1": 7, "b1c2": 6, "b2c1": 16, "b2c2": 13, "b2short": 13}
    assert slim.get_layer("b2c1").kernel.shape == (3, 3, 6, 16)
    assert slim.get_layer("logits").kernel.shape == (13, 10)
    assert_same_function(dense, slim)


def test_resnet_positive_betas_same_borders_exact():
    """Removed stem channels with positive betas reach SAME readers (b1c1, and b2c1 with stride
    2) through the Add: exact, borders included; the 1x1 shortcut needs no ones channel."""
    dense = randomize_batch_norms(resnet())
    removed = [1, 4]
    zero(dense, {"stem_bn": removed, "b1c2_bn": removed}, +1)
    slim = pruning.compress(dense)
    assert widths(slim, ["stem", "b1c2"]) == {"stem": 6, "b1c2": 6}
    assert slim.get_layer("b1c1").kernel.shape == (3, 3, 7, 8)
    assert slim.get_layer("b2c1").kernel.shape == (3, 3, 7, 16)
    assert slim.get_layer("b2short").kernel.shape == (1, 1, 6, 16)
    assert_same_function(dense, slim)


# --- MobileNetV2-style: depthwise and inverted residual --------------------------------------

def test_mobilenet_groups():
    groups = groups_by_name(mobilenet_block())
    assert {bn.name for bn, _ in groups["stem_bn"].members} == {"stem_bn", "project_bn"}
    assert {bn.name for bn, _ in groups["expand_bn"].members} == {"expand_bn", "dw_bn"}
    assert [l.name for l, _ in groups["expand_bn"].channelwise] == ["dw"]
    assert [r.name for r, _ in groups["expand_bn"].readers] == ["project"]
    assert {r.name for r, _ in groups["stem_bn"].readers} == {"expand", "logits"}


@pytest.mark.parametrize("beta_sign", [-1, +1])
def test_mobilenet_exact(beta_sign):
    # Every reader is a 1x1 conv or the dense layer, so folding is exact for any beta.
    dense = randomize_batch_norms(mobilenet_block())
    zero(dense, {"expand_bn": [0, 5, 7, 10], "dw_bn": [0, 5, 10],
                 "stem_bn": [2], "project_bn": [2, 3]}, beta_sign)
    slim = pruning.compress(dense)
    assert widths(slim, ["stem", "expand", "dw", "project"]) == {
        "stem": 7, "expand": 21, "dw": 21, "project": 7}
    assert slim.get_layer("dw").kernel.shape == (3, 3, 21, 1)
    assert slim.get_layer("project").kernel.shape == (1, 1, 21, 7)
    assert_same_function(dense, slim)


# --- Concatenate: each input's channels at an offset ----------------------------------------

def test_concatenate_offsets():
    images = keras.Input((SIZE, SIZE, 3), name="images")
    a = conv_bn(images, 4, "a")
    b = conv_bn(images, 6, "b", kernel=1)
    x = layers.Concatenate(name="cat")([a, b])
    x = conv_bn(x, 5, "c", padding="valid")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    dense = randomize_batch_norms(keras.Model(images, layers.Dense(3, name="logits")(x)))
    groups = groups_by_name(dense)
    assert groups["a_bn"].readers[0][0].name == "c" and groups["a_bn"].readers[0][1] == 0
    assert groups["b_bn"].readers[0][0].name == "c" and groups["b_bn"].readers[0][1] == 4
    zero(dense, {"a_bn": [1], "b_bn": [0, 5]}, +1)  # VALID reader: exact for any beta
    slim = pruning.compress(dense)
    assert widths(slim, ["a", "b", "cat"]) == {"a": 3, "b": 4, "cat": 7}
    kept = [0, 2, 3, 5, 6, 7, 8]  # of a's 0..3 and b's 4..9
    np.testing.assert_array_equal(slim.get_layer("c").kernel.numpy(),
                                  dense.get_layer("c").kernel.numpy()[:, :, kept])
    assert_same_function(dense, slim)


# --- the recipe's own models --------------------------------------------------------------------

@pytest.mark.parametrize("beta_sign", [-1, +1])
def test_resnet20_same_as_rebuild(beta_sign):
    """On resnet20 the library API removes what the recipe's rebuild removes and keeps the same
    weights. With negative betas (nothing to fold) they compute the same function; with
    positive ones the library's SAME readers get their ones channel and are exact, while the
    recipe keeps the paper's fold into the next BN's moving mean (bounded at the borders,
    tests/test_rebuild.py)."""
    spec = ArchSpec.dense("resnet20")
    keras.utils.set_random_seed(0)
    dense = randomize_batch_norms(models.build_model(spec))
    zero(dense, {"g1b0c0_bn": [0, 3], "g2b1c0_bn": range(5), "g3b2c0_bn": [7]}, beta_sign)
    _, recipe = rebuild.narrow(spec, dense)
    slim = pruning.compress(dense)
    found = pruning.plan(dense, exact_borders=True)
    assert bool(found.borders) == (beta_sign > 0)
    folded_there = {bn.name for r in found.borders for bn in found.analysis.consumers[r]}
    for layer in recipe.layers:
        for a, b in zip(layer.weights, slim.get_layer(layer.name).weights):
            if layer.name in folded_there and a.name == "moving_mean":
                continue  # the recipe's fold; the library's is in the ones channel
            np.testing.assert_allclose(b.numpy()[..., :a.shape[-2], :] if a.name == "kernel"
                                       else b.numpy(), a.numpy(), atol=1e-6, err_msg=a.path)
    images = np.random.RandomState(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    expected = (recipe if beta_sign < 0 else dense)(images, training=False)
    np.testing.assert_allclose(slim(images, training=False), expected, atol=1e-5)


# --- refusals ---------------------------------------------------------------------------------

def test_lambda_in_channel_path_is_one_line_error():
    with pytest.raises(ValueError) as error:
        pruning.find_groups(vgg(lambda_after=2))
    message = str(error.value)
    assert "'scale'" in message and "Lambda" in message and "\n" not in message


def test_flatten_and_output_block():
    images = keras.Input((8, 8, 3))
    x = conv_bn(images, 4, "a")
    y = conv_bn(x, 5, "b", act=None)
    flat = layers.Dense(3, name="head")(layers.Flatten(name="flat")(x))
    model = keras.Model(images, [flat, y])
    groups = groups_by_name(model)
    assert "Flatten 'flat'" in groups["a_bn"].blockers[0]
    assert "model output" in groups["b_bn"].blockers[0]
    # Blocked as a group, but a zero channel of a_bn still leaves conv b reader-side: rho is
    # what that frees, b's 5 * 3 * 3 input-channel weights over the input's 8 * 8.
    assert pruning.penalties(model) == {"a_bn/gamma": 5 * 9 / 64}
    lines = pruning.explain(model)
    assert any(l.startswith("a_bn: not prunable") and "flat" in l for l in lines)


# --- penalties and training -------------------------------------------------------------------

def test_penalties_match_recipe_on_resnet20():
    """On resnet20 (32x32) the only prunable groups are the c0 units (the block outputs' batch
    norms have no gamma), and the plain rule, without the recipe's cnn4 quirks, gives the
    recipe's hand-counted rho table."""
    from test_models import RESNET_UNITS, _resnet_expected
    model = models.build_model(ArchSpec.dense("resnet20"))
    assert pruning.penalties(model) == {
        model.get_layer(u + "_bn").gamma.path: _resnet_expected(u) for u in RESNET_UNITS}


def test_penalties_hand_counted_coupled():
    rho = pruning.penalties(resnet())
    pixels = SIZE * SIZE
    # b1c1: 16x16 output, 3x3x8 input, read by b1c2 (8 filters 3x3).
    assert rho["b1c1_bn/gamma"] == pytest.approx((256 + 72 + 72) / pixels)
    # stem group: readers b1c1 (8*9) + b2c1 (16*9) + b2short (16*1), shared by two members.
    readers = (72 + 144 + 16) / 2
    assert rho["stem_bn/gamma"] == pytest.approx((256 + 27 + readers) / pixels)
    assert rho["b1c2_bn/gamma"] == pytest.approx((256 + 72 + readers) / pixels)
    assert rho["b2short_bn/gamma"] == pytest.approx((64 + 8 + 10 / 2) / pixels)


def test_fit_with_ista_zeroes_gammas_then_compress():
    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3))
    x = conv_bn(images, 8, "c1")
    x = conv_bn(x, 8, "c2", kernel=1)  # 1x1 reader and dense reader: compress is exact
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(images, layers.Dense(4, name="logits")(x))
    for name in ("c1_bn", "c2_bn"):  # spread gammas, so that some reach zero and some do not
        model.get_layer(name).gamma.assign(np.linspace(0.1, 1.5, 8))
    rho = pruning.penalties(model)
    assert set(rho) == {"c1_bn/gamma", "c2_bn/gamma"}
    model.compile(optimizer=ista.ISTA(0.1, l1_penalty=0.5, penalties=rho),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.RandomState(0)
    data = rng.normal(size=(32, 8, 8, 3)).astype("float32"), rng.randint(0, 4, 32)
    average = pruning.MovingAverage()
    model.fit(*data, batch_size=8, epochs=2, verbose=0, callbacks=[average])
    gammas = {n: model.get_layer(n).gamma.numpy() for n in ("c1_bn", "c2_bn")}
    for gamma in gammas.values():
        assert 0 < np.sum(gamma == 0) < gamma.size
    slim = pruning.compress(model)
    for name in ("c1", "c2"):
        assert slim.get_layer(name).filters == np.sum(gammas[name + "_bn"] != 0)
    x = data[0][:4]
    np.testing.assert_allclose(slim(x, training=False), model(x, training=False), atol=1e-5)
    # The averaged weights are what the slim model holds when asked for them.
    averaged = pruning.compress(model, averages=average.averages())
    keep = np.flatnonzero(gammas["c1_bn"] != 0)
    np.testing.assert_allclose(averaged.get_layer("c1_bn").gamma.numpy(),
                               average.averages()["c1_bn/gamma"][keep])


def _readme_snippet():
    """The Python block of the README's "Prune your own Keras model" section, as written."""
    with open(os.path.join(REPO, "README.md")) as f:
        section = f.read().split("## Prune your own Keras model", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_lines_prune_a_users_model(tmp_path, monkeypatch):
    """The README's lines, run as they stand on a small model of the user's: the SavedModel they
    write needs only TensorFlow, and computes what the trained model computes."""
    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3))
    x = conv_bn(images, 8, "c1")
    x = conv_bn(x, 8, "c2", kernel=1)  # 1x1 reader and dense reader: the folding is exact
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(images, layers.Dense(4, activation="softmax", name="probs")(x))
    for name in ("c1_bn", "c2_bn"):  # spread gammas, so that the penalty zeroes some
        model.get_layer(name).gamma.assign(np.linspace(0.01, 1.5, 8))
    rng = np.random.RandomState(0)
    train_images = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    train_labels = rng.randint(0, 4, 64)
    monkeypatch.chdir(tmp_path)
    snippet = _readme_snippet()
    assert len(snippet.strip().splitlines()) < 20
    # Stronger penalty than the README's, so that ten epochs of 64 images zero some gammas.
    snippet = snippet.replace("l1_penalty=0.005", "l1_penalty=0.5")
    scope = {"model": model, "train_images": train_images, "train_labels": train_labels}
    exec(compile(snippet, "README.md", "exec"), scope)
    slim = scope["slim"]
    assert slim.count_params() < model.count_params()
    served = tf.saved_model.load(str(tmp_path / "slim_saved_model"))
    x = train_images[:8]
    np.testing.assert_allclose(served.serve(tf.constant(x)).numpy(), slim(x, training=False).numpy(),
                               atol=1e-6)
    reloaded = keras.saving.load_model(str(tmp_path / "slim.keras"))
    np.testing.assert_allclose(reloaded(x).numpy(), slim(x, training=False).numpy(), atol=1e-6)
    # Against the uncompressed model holding the same (averaged) weights: exact folding here.
    dense = keras.models.clone_model(model)
    dense.set_weights(model.get_weights())
    for var in dense.trainable_variables:
        var.assign(scope["average"].averages()[var.path])
    for name in ("c1_bn", "c2_bn"):  # the raw zeros decide, as compress does
        bn = dense.get_layer(name)
        bn.gamma.assign(np.where(model.get_layer(name).gamma.numpy() == 0, 0, bn.gamma.numpy()))
    np.testing.assert_allclose(slim(x, training=False).numpy(), dense(x, training=False).numpy(),
                               atol=1e-5)


def test_package_trainer_on_a_users_model(tmp_path):
    """training.Trainer (the recipe's compiled loop, EMA, checkpoints, log lines) on a model
    that is not one of the recipe's: gammas reach zero, the log names the layers, it resumes."""
    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3))
    x = conv_bn(images, 8, "c1")
    x = conv_bn(x, 8, "c2")
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(images, layers.Dense(4, name="logits")(x))
    model.get_layer("c1_bn").gamma.assign(np.linspace(0.001, 1.5, 8))
    rng = np.random.RandomState(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.normal(size=(32, 8, 8, 3)).astype("float32"), rng.randint(0, 4, 32))).repeat().batch(8)
    lines = []
    trainer = training.Trainer(model, ista.ISTA(0.1, 1.0, pruning.penalties(model)),
                               str(tmp_path), log=lines.append)
    trainer.fit(data, 3, 1, 8)
    zero_lines = [l for l in lines if l.startswith("zero gammas:")]
    assert len(zero_lines) == 3 and zero_lines[0].startswith("zero gammas: c1 0/8 c2 0/8")
    removed = np.sum(model.get_layer("c1_bn").gamma.numpy() == 0)
    assert removed > 0
    assert pruning.compress(model).get_layer("c1").filters == 8 - removed
    again = training.Trainer(keras.models.clone_model(model), ista.ISTA(0.1, 1.0, pruning.penalties(
        model)), str(tmp_path), log=lines.append)
    assert again.restore().endswith("model.ckpt-3") and again.step == 3


def _imported_modules(path):
    """Every module an `import` / `from ... import` anywhere in the file at `path` names
    (function bodies included), relative imports resolved against cifar10_prune.pruning."""
    names = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(["cifar10_prune", "pruning"][:3 - node.level] + [base]).strip(".")
            names += [base] + [base + "." + alias.name for alias in node.names]
    return names


def test_library_never_imports_the_recipe():
    """cifar10_prune.pruning is usable on its own: none of its modules names a module of
    cifar10_prune outside it, and importing all of them loads none (the recipe, the flags)."""
    files = sorted(glob.glob(os.path.join(REPO, "cifar10_prune", "pruning", "*.py")))
    assert len(files) >= 6
    for path in files:
        for name in _imported_modules(path):
            if name == "cifar10_prune" or name.startswith("cifar10_prune."):
                assert name.startswith("cifar10_prune.pruning"), (path, name)
    modules = ["cifar10_prune.pruning." + os.path.basename(p)[:-3] for p in files
               if not p.endswith("__init__.py")]
    code = ("import importlib, sys\n"
            "for m in %r: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('cifar10_prune')))" % modules)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=300, check=True).stdout
    loaded = ast.literal_eval(out.strip().splitlines()[-1])
    assert "cifar10_prune.pruning.groups" in loaded
    assert [m for m in loaded if m != "cifar10_prune" and
            not m.startswith("cifar10_prune.pruning")] == []


# --- issue 16: what the compressed model is, and clear refusals ----------------------------

def small(images=None, name="small"):
    images = images if images is not None else keras.Input((8, 8, 3))
    x = conv_bn(images, 8, "c1")
    x = conv_bn(x, 8, "c2", kernel=1)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, layers.Dense(4, name="logits")(x), name=name)


def compiled(model):
    model.compile(optimizer=pruning.ISTA(0.1, l1_penalty=0.5, penalties=pruning.penalties(model)),
                  loss="mse")
    return model


# A process in which cifar10_prune cannot be imported: what a user without this package has.
_WITHOUT_PACKAGE = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "cifar10_prune" or name.startswith("cifar10_prune."):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Refuse())
import numpy as np, keras
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[2], model(np.load(sys.argv[3]), training=False))
"""


def test_compressed_model_is_uncompiled_and_loads_without_this_package(tmp_path):
    model = randomize_batch_norms(compiled(small()))
    zero(model, {"c1_bn": [0, 3], "c2_bn": [5]}, +1)
    slim = pruning.compress(model)
    assert not slim.compiled
    slim.save(str(tmp_path / "slim.keras"))
    np.save(str(tmp_path / "x.npy"), np.random.RandomState(0).normal(size=(2, 8, 8, 3)))
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_PACKAGE, str(tmp_path / "slim.keras"),
                           str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    x = np.load(str(tmp_path / "x.npy")).astype("float32")
    np.testing.assert_allclose(np.load(str(tmp_path / "y.npy")), slim(x, training=False),
                               atol=1e-6)


def test_compress_a_compiled_model_with_prefixed_variable_paths():
    """Layers first built in a Sequential carry its name in their variable paths."""
    seq = keras.Sequential([keras.Input((8, 8, 3)),
                            layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1"),
                            layers.BatchNormalization(name="bn1"), layers.ReLU(name="r1"),
                            layers.GlobalAveragePooling2D(name="gap"),
                            layers.Dense(4, name="logits")], name="seq")
    images = keras.Input((8, 8, 3))
    x = images
    for layer in seq.layers:
        x = layer(x)
    model = keras.Model(images, x)
    assert model.get_layer("bn1").gamma.path == "seq/bn1/gamma"
    compiled(model)
    zero(model, {"bn1": [1, 2]}, +1)
    slim = pruning.compress(model)
    assert slim.get_layer("c1").filters == 6
    x = IMAGES[:, :8, :8]
    np.testing.assert_allclose(slim(x, training=False), model(x, training=False), atol=1e-5)


def test_compress_keeps_every_layer_name():
    model = small(keras.Input((8, 8, 3)))  # Keras names it "input_layer..."
    zero(model, {"c1_bn": [0]}, +1)
    slim = pruning.compress(model)
    assert [l.name for l in slim.layers] == [l.name for l in model.layers]


def test_penalties_with_unknown_input_size():
    """Fully convolutional nets: rho from the kernel sizes and channel counts alone."""
    model = small(keras.Input((None, None, 3)))
    rho = pruning.penalties(model)
    # c1: 3x3x3 input; read by c2 (8 filters 1x1). c2: 1x1x8 input; read by logits (4 units).
    assert rho == {"c1_bn/gamma": pytest.approx(27 + 8), "c2_bn/gamma": pytest.approx(8 + 4)}
    zero(model, {"c1_bn": [0]}, +1)
    assert pruning.compress(model).get_layer("c1").filters == 7


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_an_error_naming_the_layer(bad):
    model = randomize_batch_norms(small())
    zero(model, {"c1_bn": [0]}, +1)
    kernel = model.get_layer("c2").kernel
    kernel.assign(np.where(np.arange(kernel.shape[-1]) == 2, bad, kernel.numpy()))
    with pytest.raises(ValueError, match="c2.*not finite"):
        pruning.compress(model)
    model = randomize_batch_norms(small())
    averages = {v.path: v.numpy() for v in model.trainable_variables}
    averages["c1_bn/beta"] = averages["c1_bn/beta"] * bad
    with pytest.raises(ValueError, match="c1_bn.*not finite"):
        pruning.compress(model, averages=averages)


@pytest.mark.parametrize("op, expected", [
    (lambda t: t * 2.0, "the keras op 'multiply'"),
    (keras.ops.relu, "the keras op 'relu'"),
])
def test_ops_on_tensors_are_named_as_ops(op, expected):
    images = keras.Input((8, 8, 3))
    x = conv_bn(images, 8, "c1")
    x = op(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(images, layers.Dense(4)(x))
    with pytest.raises(ValueError) as error:
        pruning.find_groups(model)
    message = str(error.value)
    assert expected in message and "applied to a tensor" in message


def test_ista_refuses_momentum():
    with pytest.raises(ValueError, match="momentum"):
        pruning.ISTA(0.1, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov"):
        pruning.ISTA(0.1, nesterov=True)
    optimizer = pruning.ISTA(0.1, l1_penalty=0.5)
    again = pruning.ISTA.from_config(optimizer.get_config())  # SGD's config says momentum 0.0
    assert again.l1_penalty == 0.5


def test_nested_model_is_one_line_error():
    """A nested model reading the model input: its batch norms would be left out unseen, and
    its inner convs of equal shape could swap kernels when weights are copied by name."""
    inner_images = keras.Input((8, 8, 3))
    y = conv_bn(inner_images, 8, "i1")
    inner = keras.Model(inner_images, conv_bn(y, 8, "i2"), name="inner")
    images = keras.Input((8, 8, 3))
    x = conv_bn(inner(images), 8, "c3")
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(images, layers.Dense(4)(x), name="outer")
    for call in (pruning.find_groups, pruning.explain, pruning.penalties, pruning.compress):
        with pytest.raises(ValueError) as error:
            call(model)
        message = str(error.value)
        assert "inner" in message and "nested" in message
        assert "\n" not in message
