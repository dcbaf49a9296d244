"""Mixed precision (--use_fp16): the policy choice, float32 where exactness matters (ISTA zeros,
logits), checkpoints shared with float32 runs, float32 compression, and loss scaling."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar10_prune import models, mixed_precision, pruning, rebuild, stages, training
from cifar10_prune.pruning import ista
from cifar10_prune.spec import ArchSpec

SPEC = ArchSpec("cnn4", {"conv1": 48, "conv2": 48, "conv3": 48, "fc1": 48})
SMALL = ArchSpec("cnn4", {"conv1": 4, "conv2": 5, "conv3": 6, "fc1": 7})


def _dataset(batch=8, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.normal(size=(batch, 32, 32, 3)).astype(np.float32)
    y = rng.randint(0, 10, batch).astype(np.int32)
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def _trainer(train_dir, policy, lr=0.1, l1=0.0, spec=SMALL, seed=1):
    keras.utils.set_random_seed(seed)
    model = models.build_model(spec, dtype_policy=policy)
    opt = mixed_precision.wrap_optimizer(ista.ISTA(lr, l1, models.penalties(model)), policy)
    return training.Trainer(model, opt, str(train_dir), log=lambda _: None)


def test_policy_choice_and_description():
    assert mixed_precision.policy_name(False, ["CPU", "GPU"]) == "float32"
    assert mixed_precision.policy_name(True, ["CPU"]) == "mixed_bfloat16"
    assert mixed_precision.policy_name(True, ["CPU", "GPU"]) == "mixed_float16"
    assert mixed_precision.policy_name(True) in ("mixed_bfloat16", "mixed_float16")  # real devices
    assert not mixed_precision.needs_loss_scaling("mixed_bfloat16")
    assert mixed_precision.needs_loss_scaling("mixed_float16")
    assert mixed_precision.describe("float32") == "precision: float32 (--use_fp16=false)"
    line = mixed_precision.describe("mixed_float16")
    assert "float16" in line and "loss scaling" in line and "\n" not in line
    with pytest.raises(ValueError, match="unknown dtype policy 'float16'.*mixed_bfloat16"):
        models.build_model(SMALL, dtype_policy="float16")


def test_bfloat16_on_a_cpu_without_bfloat16_instructions_is_warned_about():
    avx2_only = ["fpu", "sse4_2", "avx", "avx2", "fma"]
    line = mixed_precision.cpu_warning("mixed_bfloat16", avx2_only)
    assert line.startswith("warning:") and "--use_fp16" in line and "\n" not in line
    for flag in mixed_precision.BF16_CPU_FLAGS:
        assert mixed_precision.cpu_warning("mixed_bfloat16", avx2_only + [flag]) is None
    assert mixed_precision.cpu_warning("float32", avx2_only) is None
    assert mixed_precision.cpu_warning("mixed_float16", avx2_only) is None  # a GPU computes that
    # This machine's own /proc/cpuinfo decides the default.
    flags = mixed_precision._cpu_flags()
    expected = flags is not None and not flags & set(mixed_precision.BF16_CPU_FLAGS)
    assert (mixed_precision.cpu_warning("mixed_bfloat16") is not None) == expected


def test_mixed_model_computes_in_bfloat16_with_float32_variables_and_logits():
    keras.utils.set_random_seed(0)
    mixed = models.build_model(ArchSpec.dense("resnet20"), dtype_policy="mixed_bfloat16")
    keras.utils.set_random_seed(0)
    plain = models.build_model(ArchSpec.dense("resnet20"))
    # Same variables, names and dtypes: checkpoints cannot tell the two apart.
    assert [(v.path, v.dtype) for v in mixed.weights] == [(v.path, v.dtype) for v in plain.weights]
    assert {v.dtype for v in mixed.weights} == {"float32"}
    assert mixed.get_layer("g2b1c0").compute_dtype == "bfloat16"
    assert mixed.get_layer("g2b1c0").output.dtype == "bfloat16"
    assert mixed.get_layer("softmax_linear_bn").compute_dtype == "float32"
    x = np.random.RandomState(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        logits = mixed(x, training=True)
        regularization = tf.add_n(mixed.losses)
        loss = tf.reduce_sum(logits) + regularization
    assert logits.dtype == tf.float32 and regularization.dtype == tf.float32
    grads = tape.gradient(loss, mixed.trainable_variables)
    assert {g.dtype for g in grads} == {tf.float32}
    # bfloat16 keeps ~3 significant digits: the logits agree with float32's to about that.
    reference = plain(x, training=False).numpy()
    np.testing.assert_allclose(mixed(x, training=False).numpy(), reference,
                               rtol=0.05, atol=0.05 * np.abs(reference).max())
    assert not np.array_equal(mixed(x, training=False).numpy(), reference)  # really bfloat16


def _gammas_at_thresholds(model, penalties, lr, l1, rng):
    """Per prunable unit, gammas at +-t * (1 + k * 1e-4), k = -20..20 (k != 0), plus exact zeros
    and two large ones, where t = lr * rho * l1 is the float32 threshold ISTA computes.

    The gradient step (lr * |g| ~ 1e-6) is far below the 1e-4 * t margins, so which gammas the
    step zeroes depends only on the threshold: a 16-bit threshold or gamma (bfloat16 keeps 8
    significant bits: relative rounding up to 2**-9) would move some across."""
    offsets = np.array([k * 1e-4 for k in range(-20, 21) if k], np.float64)
    expected = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.scale and \
                layer.gamma.path in penalties:
            t = np.float32(lr) * np.float32(penalties[layer.gamma.path] * l1)  # float32, as ISTA
            t_bf16 = float(tf.cast(tf.cast(t, tf.bfloat16), tf.float32))
            assert abs(t_bf16 - t) > 5e-4 * t, "pick l1 so that the test can see bfloat16"
            magnitude = np.concatenate([t * (1 + offsets), [0.0, 0.0, 2 * t, 3 * t]])
            magnitude = np.concatenate([magnitude, np.full(48 - magnitude.size, 5 * t)])
            gamma = (magnitude * rng.choice([-1.0, 1.0], magnitude.size)).astype(np.float32)
            layer.gamma.assign(gamma)
            # Independent reference (float64): soft-threshold of the gamma, the gradient step
            # being negligible.
            expected[layer.name] = np.sign(gamma) * np.maximum(np.abs(gamma) - np.float64(t), 0)
    return expected


def test_ista_zeros_under_mixed_precision_equal_float32s(tmp_path):
    lr, l1 = 1e-6, 1.2e6  # thresholds ~1-7; l1 chosen so none is close to a bfloat16 value
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        trainer = _trainer(tmp_path / policy, policy, lr=lr, l1=l1, spec=SPEC)
        expected = _gammas_at_thresholds(trainer.model, trainer.penalties, lr, l1,
                                         np.random.RandomState(0))
        trainer.fit(_dataset(), 1, 1, 8)  # the real compiled step
        results[policy] = {name: trainer.model.get_layer(name).gamma.numpy() for name in expected}
    for unit, reference in expected.items():
        mixed, plain = results["mixed_bfloat16"][unit], results["float32"][unit]
        np.testing.assert_array_equal(mixed == 0, reference == 0, err_msg=unit)
        np.testing.assert_array_equal(plain == 0, reference == 0, err_msg=unit)
        assert 20 < np.sum(reference == 0) < 30  # 20 below threshold, 2 at zero
        np.testing.assert_allclose(mixed, reference, atol=2e-5, err_msg=unit)
        np.testing.assert_allclose(mixed, plain, atol=1e-6, err_msg=unit)


@pytest.mark.parametrize("first, second", [("mixed_bfloat16", "float32"),
                                           ("float32", "mixed_bfloat16")])
def test_checkpoints_interchangeable(tmp_path, first, second):
    a = _trainer(tmp_path, first, l1=0.05)
    a.fit(_dataset(), 2, 1, 8)
    b = _trainer(tmp_path, second, l1=0.05, seed=7)  # other initial weights: all must be read
    assert b.restore().endswith("model.ckpt-2") and b.step == 2
    for x, y in zip(a.model.weights + a.ema.shadows, b.model.weights + b.ema.shadows):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    b.fit(_dataset(), 3, 1, 8)
    assert b.step == 3 and b.manager.latest_checkpoint.endswith("model.ckpt-3")
    dtypes = tf.train.load_checkpoint(b.manager.latest_checkpoint).get_variable_to_dtype_map()
    assert {d for n, d in dtypes.items() if "model/" in n or "ema/" in n} == {tf.float32}

    # Evaluation and export read a checkpoint into a float32 model: the averages, exactly.
    model = stages.load_averaged(SMALL, b.manager.latest_checkpoint)
    assert {l.compute_dtype for l in model.layers if l.weights} == {"float32"}
    for v, average in zip(model.trainable_variables, b.ema.shadows):
        np.testing.assert_array_equal(v.numpy(), average.numpy())


def test_compressed_model_is_float32_and_equals_float32_compression():
    rng = np.random.RandomState(4)
    keras.utils.set_random_seed(2)
    mixed = models.build_model(SMALL, dtype_policy="mixed_bfloat16")
    plain = models.build_model(SMALL)
    members = [bn for group in pruning.find_groups(mixed) if group.prunable
               for bn, _ in group.members]
    assert members
    for layer in members:  # prune half the channels; betas not bfloat16 values
        gamma = layer.gamma.numpy()
        gamma[::2] = 0.0
        layer.gamma.assign(gamma)
        layer.beta.assign(rng.uniform(0.1, 1.0, gamma.size).astype(np.float32) + 1e-3)
    for v, w in zip(mixed.weights, plain.weights):
        w.assign(v.numpy())
    narrowed = [rebuild.narrow(SMALL, m, weight_decay=0.0) for m in (mixed, plain)]
    new = [model for _, model in narrowed]
    # Channels really went, so constants were absorbed (positive betas: through the ReLU).
    for unit, width in SMALL.widths.items():
        assert narrowed[0][0].widths[unit] == width - (width + 1) // 2, unit
    _, dropped = rebuild.narrow(SMALL, plain, weight_decay=0.0, absorb=False)
    moved = [v.path for v, w in zip(new[1].weights, dropped.weights)
             if "moving_mean" in v.path and not np.array_equal(v.numpy(), w.numpy())]
    assert moved  # the constants went somewhere: absorption ran
    assert {l.compute_dtype for l in new[0].layers} == {"float32"}
    for v, w in zip(*(m.weights for m in new)):
        assert v.dtype == "float32"
        # Absorbing a pruned channel's constant passes it through the ReLU: in float32.
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=v.path)


def test_loss_scale_optimizer_runs_the_ista_step():
    gamma = keras.Variable(np.array([0.5, -0.2, 0.05, 0.0, 0.3], np.float32), name="gamma")
    other = keras.Variable(np.array([0.5, -0.2, 0.05, 0.0, 0.3], np.float32), name="other")
    grads = [np.array([1.0, -1.0, 0.25, 0.0, 2.0], np.float32)] * 2
    plain = ista.ISTA(0.1, l1_penalty=0.5, penalties={gamma.path: 2.0})
    plain.build([gamma, other])
    scaled = mixed_precision.wrap_optimizer(ista.ISTA(0.1, l1_penalty=0.5, penalties={gamma.path: 2.0}),
                                      "mixed_float16")
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert mixed_precision.inner_optimizer(scaled) is scaled.inner_optimizer
    start = [v.numpy() for v in (gamma, other)]
    scaled.build([gamma, other])
    scale = float(scaled.dynamic_scale.numpy())
    assert float(scaled.scale_loss(tf.constant(1.0))) == scale == 2.0 ** 15

    @tf.function
    def step(opt, g):
        opt.apply(g, [gamma, other])

    step(scaled, [g * scale for g in grads])  # what the gradients of the scaled loss are
    got = [v.numpy() for v in (gamma, other)]
    for v, s in zip((gamma, other), start):
        v.assign(s)
    step(plain, grads)
    for x, v in zip(got, (gamma, other)):
        np.testing.assert_array_equal(x, v.numpy())  # scaling by 2**15 is exact
    np.testing.assert_allclose(got[0], [0.3, 0.0, 0.0, 0.0, 0.0], atol=1e-7)  # soft-threshold
    assert int(scaled.iterations.numpy()) == 1

    # An overflowing (non-finite) gradient skips the step and halves the scale.
    step(scaled, [np.array([np.inf, 0, 0, 0, 0], np.float32)] * 2)
    np.testing.assert_array_equal(gamma.numpy(), got[0])
    assert int(scaled.iterations.numpy()) == 1 and float(scaled.dynamic_scale) == scale / 2


def test_float16_training_with_loss_scaling_on_cpu(tmp_path):
    """The GPU path (mixed_float16 + LossScaleOptimizer) forced on the CPU: the ISTA step still
    zeroes gammas, and its checkpoint is read by a float32 run with its global step."""
    trainer = _trainer(tmp_path, "mixed_float16", l1=50.0)
    assert trainer.model.get_layer("conv2").compute_dtype == "float16"
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    trainer.fit(_dataset(), 2, 1, 8)
    assert trainer.step == 2
    assert all(k.size == 0 for k in rebuild.kept_channels(trainer.model).values())
    # Steps whose float16 gradients overflowed were skipped (the global step did not advance)
    # and halved the scale, from 2**15.
    scale = float(trainer.optimizer.dynamic_scale.numpy())
    assert 1 <= scale <= 2.0 ** 15 and np.log2(scale) == int(np.log2(scale))
    again = _trainer(tmp_path, "float32", l1=50.0)
    assert again.restore().endswith("model.ckpt-2") and again.step == 2
    assert all(k.size == 0 for k in rebuild.kept_channels(again.model).values())


def test_fused_batch_norm_gradients_against_numpy_and_bfloat16_inputs():
    """PrunableBatchNorm trains through TF's fused kernel: its gradients against the float64
    formulas, and for bfloat16 inputs the same float32 statistics as for float32 inputs."""
    from cifar10_prune.layers import PrunableBatchNorm
    rng = np.random.RandomState(1)
    # bfloat16-representable inputs, so both precisions normalize the very same numbers.
    x = tf.cast(tf.cast(rng.normal(1.0, 2.0, (6, 3, 3, 5)), tf.bfloat16), tf.float32).numpy()
    w = rng.normal(size=x.shape).astype(np.float32)  # loss = sum(w * out)
    gamma, beta = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
        bn = PrunableBatchNorm(dtype=policy)
        bn.build(x.shape)
        bn.gamma.assign(gamma)
        bn.beta.assign(beta)
        inputs = tf.constant(x, dtype=bn.compute_dtype)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            out = bn(inputs, training=True)
            loss = tf.reduce_sum(tf.cast(out, tf.float32) * w)
        grads = tape.gradient(loss, [inputs, bn.gamma, bn.beta])
        assert out.dtype == bn.compute_dtype and grads[1].dtype == tf.float32
        results[policy] = [tf.cast(t, tf.float32).numpy()
                           for t in [out] + grads + [bn.moving_mean, bn.moving_variance]]
    flat, wf = x.reshape(-1, 5).astype(np.float64), w.reshape(-1, 5).astype(np.float64)
    sigma = np.sqrt(flat.var(0) + 0.001)
    xhat = (flat - flat.mean(0)) / sigma
    dx = gamma / sigma * (wf - wf.mean(0) - xhat * (wf * xhat).mean(0))
    expected = [(xhat * gamma + beta).reshape(x.shape), dx.reshape(x.shape),
                (wf * xhat).sum(0), wf.sum(0), 0.001 * flat.mean(0),
                0.999 + 0.001 * flat.var(0, ddof=1)]
    for got, want in zip(results["float32"], expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    mixed = results["mixed_bfloat16"]
    for got, want in zip(mixed[-2:], results["float32"][-2:]):  # float32 statistics
        np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(mixed[0], expected[0], rtol=2 ** -8, atol=1e-6)  # one rounding
    np.testing.assert_allclose(mixed[2], expected[2], rtol=1e-2, atol=1e-2)  # gamma gradient
