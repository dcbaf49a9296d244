"""The rebuilder against the dense model with the same channels' gammas set to zero."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar10_prune import costs, models, rebuild, recalibrate, rescale
from cifar10_prune.pruning import EmptyConv2D, ExponentialMovingAverage, ista
from cifar10_prune.spec import ArchSpec
from conftest import randomize_batch_norms
from test_models import RESNET_UNITS, hand_count_cnn4, hand_count_resnet20

IMAGES = np.random.RandomState(42).normal(size=(6, 32, 32, 3)).astype(np.float32)


def randomized(spec, seed=0):
    """A model of `spec` with random BN parameters and statistics."""
    keras.utils.set_random_seed(seed)
    return randomize_batch_norms(models.build_model(spec), seed)


def unit_bn(model, unit):
    """The batch norm of prunable layer `unit` (the builder names it `<unit>_bn`)."""
    return model.get_layer(unit + "_bn")


def zero_channels(model, chosen, beta_sign, seed=1):
    """Set gamma = 0 for channels `chosen[unit]`, with betas of sign `beta_sign` (+1/-1)."""
    rng = np.random.RandomState(seed)
    for unit in (u for u in models.spec_of(model).widths if u in chosen):
        bn = unit_bn(model, unit)
        idx = np.asarray(chosen[unit], int)
        gamma, beta = bn.gamma.numpy(), bn.beta.numpy()
        gamma[idx] = 0.0
        beta[idx] = beta_sign * rng.uniform(0.1, 1.0, idx.size)
        bn.gamma.assign(gamma)
        bn.beta.assign(beta)


def logits(model):
    return model(IMAGES, training=False).numpy()


def assert_same_function(dense, slim, tol=1e-5):
    a, b = logits(dense), logits(slim)
    np.testing.assert_allclose(b, a, rtol=tol, atol=tol * max(1.0, np.abs(a).max()))


@pytest.mark.parametrize("name", ["resnet20", "cnn4"])
def test_nothing_pruned_is_identity(name):
    spec = ArchSpec.dense(name)
    dense = randomized(spec)
    new_spec, slim = rebuild.narrow(spec, dense)
    assert new_spec == spec
    assert costs.param_count(slim) == costs.param_count(dense)
    assert_same_function(dense, slim)


def test_resnet20_negative_betas_exact():
    spec = ArchSpec.dense("resnet20")
    dense = randomized(spec)
    chosen = {"g1b0c0": [0, 3, 15], "g2b0c0": range(10), "g3b2c0": range(0, 64, 3)}
    zero_channels(dense, chosen, beta_sign=-1)  # relu(beta) = 0: nothing to fold, exact
    new_spec, slim = rebuild.narrow(spec, dense)
    widths = dict(spec.widths, g1b0c0=13, g2b0c0=22, g3b2c0=42)
    assert new_spec.widths == widths
    assert costs.param_count(slim) == hand_count_resnet20(widths)
    assert_same_function(dense, slim)


def _bound_check(dense, slim, unit_name, reader_name):
    """Slim vs dense output of the BN after `reader_name`, the conv reading `unit_name`: exact
    inside, and at SAME borders at most |gamma_o| / sqrt(var_o + eps) * sum |W[., ., pruned, o]|
    relu(beta)."""
    unit = unit_bn(dense, unit_name)
    pruned = np.flatnonzero(unit.gamma.numpy() == 0)
    constant = np.maximum(unit.beta.numpy()[pruned], 0)
    kernel = dense.get_layer(reader_name).kernel.numpy()[:, :, pruned, :]
    bn_name = reader_name + "_bn"
    bn = dense.get_layer(bn_name)
    scale = (np.abs(bn.gamma.numpy()) if bn.scale else 1.0) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    bound = scale * np.einsum("hwco,c->o", np.abs(kernel), constant)
    out = [keras.Model(m.input, m.get_layer(bn_name).output)(IMAGES, training=False).numpy()
           for m in (dense, slim)]
    diff = np.abs(out[1] - out[0])
    pad = kernel.shape[0] // 2
    inner = diff[:, pad:-pad, pad:-pad, :]
    np.testing.assert_allclose(inner, 0, atol=1e-4 * np.abs(out[0]).max())
    assert np.all(diff <= bound + 1e-4)
    assert diff.max() > 1e-3  # the border really is approximate: the check has teeth


def test_resnet20_positive_betas_border_bound():
    spec = ArchSpec.dense("resnet20")
    dense = randomized(spec)
    zero_channels(dense, {"g2b1c0": [1, 4, 9, 30]}, beta_sign=+1)
    _, slim = rebuild.narrow(spec, dense)
    _bound_check(dense, slim, "g2b1c0", "g2b1c1")


def test_cnn4_through_max_pool():
    spec = ArchSpec.dense("cnn4")
    dense = randomized(spec)
    # conv3 -> max-pool -> fc1 (VALID) and fc1 -> softmax_linear (1x1): exact even with
    # positive betas, because the folded constants cover the whole kernel window.
    zero_channels(dense, {"conv3": range(0, 192, 2), "fc1": range(100)}, beta_sign=+1)
    new_spec, slim = rebuild.narrow(spec, dense)
    assert new_spec.widths == {"conv1": 96, "conv2": 192, "conv3": 96, "fc1": 284}
    assert costs.param_count(slim) == hand_count_cnn4(96, 192, 96, 284)
    assert_same_function(dense, slim)


def test_cnn4_same_border_bound_through_max_pool():
    spec = ArchSpec.dense("cnn4")
    dense = randomized(spec)
    zero_channels(dense, {"conv1": [0, 5, 17, 40]}, beta_sign=+1)
    _, slim = rebuild.narrow(spec, dense)
    _bound_check(dense, slim, "conv1", "conv2")


@pytest.mark.parametrize("unit, removed", [("fc1", "softmax_linear"), ("conv3", "fc1")])
def test_cnn4_layer_fully_pruned(unit, removed):
    spec = ArchSpec.dense("cnn4")
    dense = randomized(spec)
    zero_channels(dense, {unit: range(spec.widths[unit])}, beta_sign=+1)
    new_spec, slim = rebuild.narrow(spec, dense)
    assert new_spec.widths[unit] == 0
    assert isinstance(slim.get_layer(removed), EmptyConv2D)
    assert unit not in [layer.name for layer in slim.layers]
    assert_same_function(dense, slim)


def test_cnn4_earlier_layers_drop_out_when_a_later_one_goes():
    spec = ArchSpec.dense("cnn4")
    dense = randomized(spec)
    zero_channels(dense, {"conv2": range(192)}, beta_sign=-1)
    new_spec, slim = rebuild.narrow(spec, dense)
    assert new_spec.widths == {"conv1": 0, "conv2": 0, "conv3": 192, "fc1": 384}
    assert costs.param_count(slim) == hand_count_cnn4(0, 0, 192, 384)
    assert_same_function(dense, slim)


def test_resnet20_every_block_pruned():
    spec = ArchSpec.dense("resnet20")
    dense = randomized(spec)
    zero_channels(dense, {u: range(spec.widths[u]) for u in RESNET_UNITS}, beta_sign=-1)
    new_spec, slim = rebuild.narrow(spec, dense)
    assert set(new_spec.widths.values()) == {0}
    assert costs.param_count(slim) == hand_count_resnet20(new_spec.widths)
    assert_same_function(dense, slim)
    # The reduced model still trains (each block is its shortcut plus a constant).
    opt = ista.ISTA(0.1, 0.005, models.penalties(slim))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            np.arange(6) % 10, slim(IMAGES, training=True), from_logits=True))
    opt.apply(tape.gradient(loss, slim.trainable_variables), slim.trainable_variables)
    assert np.isfinite(logits(slim)).all()


def test_one_resnet_block_fully_pruned_with_positive_betas():
    spec = ArchSpec.dense("resnet20")
    dense = randomized(spec)
    zero_channels(dense, {"g1b1c0": range(16)}, beta_sign=+1)
    new_spec, slim = rebuild.narrow(spec, dense)
    assert new_spec.widths["g1b1c0"] == 0
    _bound_check(dense, slim, "g1b1c0", "g1b1c1")


def test_kept_weights_come_from_the_averages():
    spec = ArchSpec("cnn4", {"conv1": 4, "conv2": 4, "conv3": 4, "fc1": 4})
    model = randomized(spec)
    zero_channels(model, {"conv2": [1]}, beta_sign=-1)
    ema = ExponentialMovingAverage(model.trainable_variables)
    for shadow in ema.shadows:
        shadow.assign(shadow * 0.5)
    averages = ema.averages()
    _, slim = rebuild.narrow(spec, model, averages)
    np.testing.assert_allclose(slim.get_layer("conv2_bn").gamma.numpy(),
                               averages["conv2_bn/gamma"][[0, 2, 3]])
    np.testing.assert_allclose(slim.get_layer("conv3").kernel.numpy(),
                               averages["conv3/kernel"][:, :, [0, 2, 3], :])


@pytest.mark.parametrize("name", ["resnet20", "cnn4"])
def test_gamma_rescaling_keeps_the_function(name):
    model = randomized(ArchSpec.dense(name))
    before = logits(model)
    weights = [v.numpy() for v in model.weights]
    ema = ExponentialMovingAverage(model.trainable_variables)
    penalties = models.penalties(model)
    rescale.rescale(model, 0.01, penalties, ema)
    first = unit_bn(model, next(iter(ArchSpec.dense(name).widths)))
    gamma = first.gamma.numpy()
    np.testing.assert_allclose(gamma, weights[[v.path for v in model.weights].index(
        first.gamma.path)] * 0.01, rtol=1e-6)
    after = logits(model)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5 * max(1, np.abs(before).max()))
    np.testing.assert_allclose(ema.shadow_by_path()[first.gamma.path].numpy(), gamma)
    rescale.rescale(model, 100.0, penalties, ema)
    for w, v in zip(weights, model.weights):
        np.testing.assert_allclose(v.numpy(), w, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="alpha > 0"):
        rescale.rescale(model, 0.0, penalties)


def test_recalibrated_statistics_equal_batch_statistics():
    spec = ArchSpec("resnet20", {u: 4 for u in RESNET_UNITS})
    model = randomized(spec)
    rng = np.random.RandomState(7)
    batches = [rng.normal(size=(5, 32, 32, 3)).astype(np.float32) for _ in range(3)]
    dataset = tf.data.Dataset.from_tensor_slices((np.stack(batches), np.zeros((3, 5), np.int32)))
    weights = [v.numpy() for v in model.trainable_variables]
    assert recalibrate.recalibrate_bn(model, dataset, 10, log=lambda _: None) == 3

    # First BN, independently: conv by tf.nn.conv2d, statistics by NumPy.
    kernel = model.get_layer("first_conv").kernel.numpy()
    conv = [tf.nn.conv2d(b, kernel, 1, "SAME").numpy() for b in batches]
    bn = model.get_layer("first_conv_bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([c.mean((0, 1, 2)) for c in conv], 0),
                               rtol=1e-4, atol=1e-5)
    unbiased = [c.reshape(-1, c.shape[-1]).var(0, ddof=1) for c in conv]  # as training tracks it
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean(unbiased, 0), rtol=1e-4, atol=1e-5)
    # A deep BN: its input in training mode, statistics by NumPy.
    deep = model.get_layer("g3b2c1_bn")
    probe = keras.Model(model.input, deep.input)
    inputs = [probe(b, training=True).numpy() for b in batches]
    np.testing.assert_allclose(deep.moving_mean.numpy(), np.mean([x.mean((0, 1, 2)) for x in inputs], 0),
                               rtol=1e-4, atol=1e-5)
    unbiased = [x.reshape(-1, x.shape[-1]).var(0, ddof=1) for x in inputs]
    np.testing.assert_allclose(deep.moving_variance.numpy(), np.mean(unbiased, 0), rtol=1e-4, atol=1e-5)
    for w, v in zip(weights, model.trainable_variables):  # forward passes only
        np.testing.assert_array_equal(w, v.numpy())


@pytest.mark.parametrize("name, chosen", [
    ("resnet20", {"g1b1c0": [2, 7], "g2b1c0": [1, 4, 9, 30], "g3b0c0": range(0, 64, 5)}),
    ("cnn4", {"conv1": [0, 5, 17, 40], "conv3": range(0, 192, 3), "fc1": range(50)}),
])
def test_without_absorption_equals_dense_with_channels_silenced(name, chosen):
    """--absorb_pruned_constants=false: the original's arithmetic, constants dropped. That is
    the dense model whose pruned channels output nothing (gamma = beta = 0), everywhere,
    borders included."""
    spec = ArchSpec.dense(name)
    dense = randomized(spec)
    zero_channels(dense, chosen, beta_sign=+1)  # positive betas: the constants matter
    _, dropped = rebuild.narrow(spec, dense, absorb=False)
    _, absorbed = rebuild.narrow(spec, dense)
    silenced = randomized(spec)
    silenced.set_weights(dense.get_weights())
    for unit, idx in chosen.items():
        bn = unit_bn(silenced, unit)
        beta = bn.beta.numpy()
        beta[np.asarray(idx, int)] = 0.0
        bn.beta.assign(beta)
    assert_same_function(silenced, dropped)
    assert np.abs(logits(absorbed) - logits(dropped)).max() > 1e-3  # absorption does something


def test_report_end_of_stage_sparsity_is_the_logged_metric():
    """The report's fake sparsity at the end of a stage, from the widths before and after its
    compression, equals the metric the training log computes from the zero gammas."""
    from cifar10_prune import report
    spec = ArchSpec("resnet20", dict(ArchSpec.dense("resnet20").widths, g2b1c0=20, g3b0c0=50))
    model = randomized(spec)
    zero_channels(model, {"g1b0c0": [0, 3], "g2b1c0": range(7), "g3b2c0": range(0, 64, 3)},
                  beta_sign=-1)
    new_spec, _ = rebuild.narrow(spec, model)
    assert report._end_sparsity(spec, new_spec) == pytest.approx(ista.sparsity(model, models.penalties(model))[1])
