"""The ISTA optimizer against NumPy, the learning-rate schedule and the EMA."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar10_prune import models, pruning, training
from cifar10_prune.pruning import ista
from cifar10_prune.spec import ArchSpec


def soft_threshold(x, t):
    return np.sign(x) * np.maximum(np.abs(x) - t, 0.0)


def _variables(rng):
    gamma = np.concatenate([rng.uniform(-1, 1, 20), [0.0, 0.0, 1e-4, -1e-4, 0.3]]).astype(np.float32)
    other = rng.uniform(-1, 1, 25).astype(np.float32)
    return gamma, other


@pytest.mark.parametrize("lr", [0.1, 0.01, 1.0])
@pytest.mark.parametrize("compiled", [False, True])
def test_update_matches_numpy(lr, compiled):
    rng = np.random.RandomState(int(lr * 100))
    gamma0, other0 = _variables(rng)
    gamma = keras.Variable(gamma0, name="gamma")
    other = keras.Variable(other0, name="other")
    rho, l1 = 1.28125, 0.05
    opt = ista.ISTA(lr, l1_penalty=l1, penalties={gamma.path: rho})
    opt.build([gamma, other])  # optimizer variables must exist before tracing
    def apply(grads):
        opt.apply(grads, [gamma, other])
    if compiled:
        apply = tf.function(apply)
    g_ref, o_ref = gamma0.astype(np.float64), other0.astype(np.float64)
    for _ in range(4):
        grads = [rng.normal(0, 0.5, 25).astype(np.float32) for _ in range(2)]
        grads[0][20:22] = 0.0  # gammas already at zero with no gradient stay exactly zero
        apply(grads)
        g_ref = soft_threshold(g_ref - lr * grads[0], rho * lr * l1)
        o_ref = o_ref - lr * grads[1]
        np.testing.assert_allclose(gamma.numpy(), g_ref, atol=1e-6)
        np.testing.assert_allclose(other.numpy(), o_ref, atol=1e-6)
        assert np.all((gamma.numpy() == 0) == (g_ref == 0))  # exact zeros, no tiny residues
    assert gamma.numpy()[20] == 0.0 and gamma.numpy()[21] == 0.0


def test_threshold_follows_scheduled_learning_rate():
    gamma = keras.Variable(np.full(3, 5.0, np.float32), name="gamma")
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, 2, 0.1, staircase=True)
    opt = ista.ISTA(schedule, l1_penalty=1.0, penalties={gamma.path: 0.5})
    expected = 5.0
    for step in range(5):
        opt.apply([tf.zeros(3)], [gamma])
        expected -= 0.5 * 1.0 * 0.1 ** (step // 2)
        np.testing.assert_allclose(gamma.numpy(), expected, rtol=1e-6)


def test_no_penalty_is_sgd_bit_for_bit():
    spec = ArchSpec("cnn4", {"conv1": 4, "conv2": 5, "conv3": 6, "fc1": 7})
    rng = np.random.RandomState(0)
    x = rng.normal(size=(8, 32, 32, 3)).astype(np.float32)
    y = rng.randint(0, 10, 8)
    results = []
    for make in (lambda m: ista.ISTA(0.1, 0.0, models.penalties(m)),
                 lambda m: keras.optimizers.SGD(0.1)):
        keras.utils.set_random_seed(1)
        model = models.build_model(spec)
        opt = make(model)
        for _ in range(3):
            with tf.GradientTape() as tape:
                loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True),
                                                                    from_logits=True)
            opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        results.append([v.numpy() for v in model.weights])
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_get_config_round_trip():
    opt = ista.ISTA(0.05, l1_penalty=0.003, penalties={"g1b0c0_bn/gamma": 1.28125})
    clone = ista.ISTA.from_config(opt.get_config())
    assert clone.l1_penalty == 0.003 and clone.penalties == {"g1b0c0_bn/gamma": 1.28125}
    assert clone.momentum == 0.0
    assert keras.optimizers.deserialize(keras.optimizers.serialize(opt)).l1_penalty == 0.003


def test_rejects_bad_penalties():
    with pytest.raises(ValueError, match="l1_penalty"):
        ista.ISTA(0.1, l1_penalty=-1.0)
    v = keras.Variable(np.ones(2, np.float32), name="v")
    opt = ista.ISTA(0.1, l1_penalty=1.0, penalties={"nope/gamma": 1.0})
    with pytest.raises(ValueError, match="nope/gamma"):
        opt.build([v])


def test_under_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        gamma = keras.Variable(np.array([0.5, -0.2, 0.05, 0.0], np.float32), name="gamma")
        other = keras.Variable(np.array([0.5, -0.2, 0.05, 0.0], np.float32), name="other")
        opt = ista.ISTA(0.1, l1_penalty=1.0, penalties={gamma.path: 1.0})
        opt.build([gamma, other])
    grad = tf.constant([1.0, -1.0, 0.0, 0.0])

    @tf.function
    def step():
        strategy.run(lambda: opt.apply([grad, grad], [gamma, other]))

    step()
    np.testing.assert_allclose(gamma.numpy(), soft_threshold(np.array([0.4, -0.1, 0.05, 0.0]), 0.1),
                               atol=1e-7)
    np.testing.assert_allclose(other.numpy(), [0.4, -0.1, 0.05, 0.0], atol=1e-7)


def test_learning_rate_schedule_matches_formula():
    for batch_size in (125, 128, 10):
        schedule = training.learning_rate_schedule(0.1, batch_size)
        decay_steps = int(50000 / batch_size * 350)
        for step in (0, 1, decay_steps - 1, decay_steps, 2 * decay_steps + 5):
            assert float(schedule(step)) == pytest.approx(0.1 * 0.1 ** (step // decay_steps))
    # At the original's batch size the package's schedule decays after the original's 140,000
    # steps (350 epochs of 400 steps), and not one step earlier.
    schedule = training.learning_rate_schedule(0.1, 125)
    assert float(schedule(139999)) == pytest.approx(0.1)
    assert float(schedule(140000)) == pytest.approx(0.01)


def test_ema_matches_tf1_warm_up():
    rng = np.random.RandomState(3)
    var = keras.Variable(rng.normal(size=5).astype(np.float32), name="w")
    ema = pruning.ExponentialMovingAverage([var])
    shadow = var.numpy().astype(np.float64)
    for t in range(1, 40):
        var.assign(rng.normal(size=5).astype(np.float32))
        ema.update(t)
        decay = min(0.999, (1.0 + t) / (10.0 + t))
        shadow -= (1 - decay) * (shadow - var.numpy())
        np.testing.assert_allclose(ema.shadows[0].numpy(), shadow, rtol=1e-5, atol=1e-6)
    assert float(pruning.ema.decay_at(10 ** 6)) == pytest.approx(0.999)


def test_sparsity_metrics_by_hand():
    model = models.build_model(ArchSpec("cnn4", {"conv1": 4, "conv2": 4, "conv3": 4, "fc1": 4}))
    gammas = {"conv1": [0, 0, 1, -2], "conv2": [0.5] * 4, "conv3": [0, 0, 0, 0], "fc1": [1, 0, 1, 0]}
    penalties = models.penalties(model)
    rho = {}
    for unit, values in gammas.items():
        bn = model.get_layer(unit + "_bn")
        bn.gamma.assign(np.array(values, np.float32))
        rho[unit] = penalties[bn.gamma.path]
    lasso, fake, zeros = ista.sparsity(model, penalties)
    assert lasso == pytest.approx(sum(rho[u] * np.abs(g).sum() for u, g in gammas.items()))
    assert fake == pytest.approx((2 * rho["conv1"] + 4 * rho["conv3"] + 2 * rho["fc1"])
                                 / (4 * sum(rho.values())))
    assert zeros == {"conv1": (2, 4), "conv2": (0, 4), "conv3": (4, 4), "fc1": (2, 4)}


def group_threshold(vectors, t):
    """The group lasso's proximal step on the columns of `vectors` (members x channels)."""
    norm = np.sqrt(np.sum(vectors ** 2, axis=0))
    return vectors * np.where(norm > t, 1 - t / np.maximum(norm, 1e-300), 0.0)


def _coupled_variables(rng):
    """a and b (6 channels) are coupled with channels 3-8 of c (10): c's others stand alone."""
    a = rng.uniform(-1, 1, 6).astype(np.float32)
    b = rng.uniform(-1, 1, 6).astype(np.float32)
    c = rng.uniform(-1, 1, 10).astype(np.float32)
    a[:2], b[:2], c[3:5] = [0.01, -0.02], [0.02, 0.0], [-0.01, 0.01]  # channels 0, 1 go at once
    return a, b, c


@pytest.mark.parametrize("compiled", [False, True])
def test_coupled_step_matches_numpy(compiled):
    rng = np.random.RandomState(5)
    a0, b0, c0 = _coupled_variables(rng)
    other0 = rng.uniform(-1, 1, 4).astype(np.float32)
    names = ("a", "b", "other", "c")
    variables = [keras.Variable(v, name=n) for v, n in zip((a0, b0, other0, c0), names)]
    a, b, other, c = variables
    rho = {a.path: 0.5, b.path: 0.25, c.path: 1.0}
    lr, l1 = 0.1, 0.3
    opt = ista.ISTA(lr, l1_penalty=l1, penalties=rho,
                    coupled=[[(a.path, 0, 6), (b.path, 0, 6), (c.path, 3, 6)]])
    opt.build(variables)
    def apply(grads):
        opt.apply(grads, variables)
    if compiled:
        apply = tf.function(apply)
    ref = [v.astype(np.float64) for v in (a0, b0, other0, c0)]
    for step in range(4):
        grads = [rng.normal(0, 0.2, v.shape[0]).astype(np.float32) for v in ref]
        if step == 0:
            for g in (grads[0], grads[1]):
                g[:2] = 0.0
            grads[3][3:5] = 0.0
        apply(grads)
        ref = [r - lr * g for r, g in zip(ref, grads)]
        stacked = group_threshold(np.stack([ref[0], ref[1], ref[3][3:9]]), lr * l1 * 1.75)
        ref[0], ref[1] = stacked[0], stacked[1]
        alone = soft_threshold(ref[3], lr * l1 * 1.0)
        ref[3] = np.concatenate([alone[:3], stacked[2], alone[9:]])
        for v, r in zip(variables, ref):
            np.testing.assert_allclose(v.numpy(), r, atol=1e-6)
    # Channels 0 and 1 went in one step, in all three members, and stayed gone.
    for v, offset in ((a, 0), (b, 0), (c, 3)):
        assert np.all(v.numpy()[offset:offset + 2] == 0.0)
    assert np.all((c.numpy() == 0) == (ref[3] == 0))


def test_coupled_group_of_one_is_plain_ista():
    rng = np.random.RandomState(2)
    start = rng.uniform(-0.3, 0.3, 12).astype(np.float32)
    results = []
    for coupled in (None, lambda path: [[(path, 0, 12)]]):
        gamma = keras.Variable(start, name="gamma")
        opt = ista.ISTA(0.1, l1_penalty=0.5, penalties={gamma.path: 2.0},
                        coupled=coupled(gamma.path) if coupled else None)
        for _ in range(3):
            opt.apply([tf.constant(np.full(12, 0.05, np.float32))], [gamma])
        results.append(gamma.numpy())
    np.testing.assert_allclose(results[0], results[1], atol=1e-7)
    assert np.array_equal(results[0] == 0, results[1] == 0) and np.any(results[0] == 0)


def test_coupled_under_distribution_strategy_and_hold():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        a = keras.Variable(np.array([0.3, 0.04, 0.0], np.float32), name="a")
        b = keras.Variable(np.array([0.4, 0.03, 0.5], np.float32), name="b")
        opt = ista.ISTA(0.1, l1_penalty=1.0, penalties={a.path: 0.5, b.path: 0.5},
                        coupled=[[(a.path, 0, 3), (b.path, 0, 3)]], adaptive=True)
        opt.build([a, b])
    zero = tf.zeros(3)

    @tf.function
    def step():
        strategy.run(lambda: opt.apply([zero, zero], [a, b]))

    step()  # the group threshold is 0.1: channel 0 (norm 0.5) shrinks, channel 1 (0.05) goes
    expected = group_threshold(np.array([[0.3, 0.04, 0.0], [0.4, 0.03, 0.5]]), 0.1)
    np.testing.assert_allclose(np.stack([a.numpy(), b.numpy()]), expected, atol=1e-7)
    assert a.numpy()[1] == 0 and b.numpy()[1] == 0
    # Once held, the joint step stops: gammas move by their gradients alone, held zeros stay.
    opt.hold(1, {a.path: np.array([False, True, False]), b.path: np.array([False, True, False])})
    before = np.stack([a.numpy(), b.numpy()])

    @tf.function
    def moved():
        strategy.run(lambda: opt.apply([tf.fill([3], -1.0)] * 2, [a, b]))

    moved()
    np.testing.assert_allclose(np.stack([a.numpy(), b.numpy()]),
                               np.where([[False, True, False]] * 2, 0.0, before + 0.1), atol=1e-7)


def test_coupled_rejects_bad_groups():
    a = keras.Variable(np.ones(4, np.float32), name="a")
    b = keras.Variable(np.ones(3, np.float32), name="b")
    with pytest.raises(ValueError, match="one width"):
        ista.ISTA(0.1, 1.0, {a.path: 1.0}, coupled=[[(a.path, 0, 4), (b.path, 0, 3)]])
    opt = ista.ISTA(0.1, 1.0, {a.path: 1.0}, coupled=[[(a.path, 0, 3), (b.path, 0, 3)]])
    with pytest.raises(ValueError, match="penalties does not: b"):
        opt.build([a, b])
    opt = ista.ISTA(0.1, 1.0, {a.path: 1.0, b.path: 1.0},
                    coupled=[[(a.path, 0, 3), (b.path, 0, 3)], [(a.path, 1, 3), (b.path, 0, 3)]])
    with pytest.raises(ValueError, match="two groups"):
        opt.build([a, b])
    clone = ista.ISTA.from_config(ista.ISTA(0.1, 1.0, {a.path: 1.0, b.path: 1.0},
                                            coupled=[[(a.path, 0, 3), (b.path, 0, 3)]]).get_config())
    assert clone.coupled == [[(a.path, 0, 3), (b.path, 0, 3)]]
