"""Pruning to a budget: `pruning.estimate` against the compressed model, the controller's
decisions on gammas set by hand, `pruning.Budget` stopping a real `fit`, ISTA's adaptive lambda,
and the train flags."""
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from keras import ops

from cifar10_prune import costs, models, pruning, report
from cifar10_prune.flags.train import define_train_flags
from cifar10_prune.spec import ArchSpec
from conftest import run_cli

L = keras.layers


def tiny_model(seed=0):
    """conv(8) -> BN -> ReLU -> conv(12) -> BN -> ReLU -> GAP -> Dense(4) on 8x8 images."""
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((8, 8, 3))
    for i, filters in enumerate((8, 12)):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False, name="conv%d" % i)(x)
        x = L.BatchNormalization(name="bn%d" % i)(x)
        x = L.ReLU(name="relu%d" % i)(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(4, name="head")(x))


def hand_macs(model):
    """Multiply-adds of the convs and dense layers of `model`, from their kernels."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, L.Conv2D):
            total += int(np.prod(layer.output.shape[1:3])) * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, L.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def zero(model, bn, channels):
    gamma = model.get_layer(bn).gamma
    gamma.assign(np.where(np.isin(np.arange(gamma.shape[0]), channels), 0.0, gamma.numpy()))


def test_estimate_is_what_compression_leaves():
    model = tiny_model()
    assert pruning.estimate(model) == pruning.Costs(hand_macs(model), model.count_params())
    zero(model, "bn0", [1, 2, 5])
    zero(model, "bn1", range(8))
    slim = pruning.compress(model)
    assert slim.get_layer("conv1").kernel.shape == (3, 3, 5, 4)
    assert pruning.estimate(model) == pruning.Costs(hand_macs(slim), slim.count_params())


def padded_macs(widths, multiple):
    """tiny_model's multiply-adds by hand with its two conv widths `widths`, each rounded up to
    `multiple` (the image's 3 channels and the 4 classes are not pruned: not rounded)."""
    w0, w1 = (-(-w // multiple) * multiple for w in widths)
    return 64 * 9 * 3 * w0 + 64 * 9 * w0 * w1 + w1 * 4


def test_estimate_in_blocks_of_channels():
    model = tiny_model()
    zero(model, "bn0", [1, 2, 5])
    zero(model, "bn1", range(8))
    slim = pruning.compress(model)  # 5 and 4 channels
    assert [slim.get_layer(n).kernel.shape[-1] for n in ("conv0", "conv1")] == [5, 4]
    for multiple in (1, 3, 8):
        assert pruning.estimate(model, multiple=multiple) == pruning.Costs(
            padded_macs((5, 4), multiple), slim.count_params())  # parameters exactly
    assert pruning.estimate(tiny_model(), multiple=3).macs == padded_macs((8, 12), 3)


def test_in_blocks_only_the_zeros_that_cross_a_multiple_are_held():
    """Multiple 4, target 75%: 7 zeros in bn1 (12 -> 5 channels, which cost 8) and 3 in bn0
    (8 -> 5, which cost 8, as dense). Held: 4 of bn1's, the fewest that reach 8 channels; the
    others go free. Checked against the hand count."""
    model = tiny_model()
    dense = padded_macs((8, 12), 4)
    budget, optimizer, lines = adaptive_budget(
        model, target_macs=0.75, max_steps=100, channel_multiple=4,
        dense=pruning.estimate(model, multiple=4))
    assert budget.dense.macs == dense
    zero(model, "bn0", [0, 1, 2])
    zero(model, "bn1", range(7))
    assert padded_macs((5, 5), 4) <= 0.75 * dense < padded_macs((5, 9), 4)
    lines.append(budget.check(10))
    held = optimizer.held_zeros()
    assert held[model.get_layer("bn0").gamma.path].sum() == 0
    assert held[model.get_layer("bn1").gamma.path].sum() == 4
    assert padded_macs((8, 8), 4) <= 0.75 * dense < padded_macs((8, 9), 4)
    assert "with 4 of the 10 channels they remove held at zero" in lines[-1], lines[-1]
    assert "in blocks of 4 channels" in lines[-1] and "the other 6 restarted" in lines[-1]
    # The 6 freed restart at the smallest nonzero |gamma| of their batch norm, beta at least 0.
    for bn, ones in (("bn0", [0, 1, 2]), ("bn1", [c for c in range(7) if not held[
            model.get_layer("bn1").gamma.path][c]])):
        gamma = model.get_layer(bn).gamma.numpy()
        assert len(ones) == 3
        np.testing.assert_array_equal(gamma[ones], np.abs(np.delete(gamma, ones)[
            np.delete(gamma, ones) != 0]).min())
        assert (model.get_layer(bn).beta.numpy()[ones] >= 0).all()


def adaptive_budget(model, l1_penalty=0.01, **kwargs):
    optimizer = pruning.ISTA(0.1, l1_penalty=l1_penalty, penalties=pruning.penalties(model),
                             adaptive=True)
    optimizer.build(model.trainable_variables)
    lines = []
    budget = pruning.Budget(optimizer=optimizer, log=lines.append, **kwargs)
    budget.set_model(model)
    return budget, optimizer, lines


def fewest_to_meet(model, bn, order, target):
    """By compressing and counting by hand: how many of `bn`'s channels, taken in `order`, must
    be zero for the slim model to keep at most `target` of the dense multiply-adds."""
    dense = hand_macs(model)
    original = model.get_layer(bn).gamma.numpy()
    try:
        for count in range(1, len(order) + 1):
            zero(model, bn, order[:count])
            if hand_macs(pruning.compress(model)) <= target * dense:
                return count
    finally:
        model.get_layer(bn).gamma.assign(original)
    raise AssertionError("no count meets the target")


def test_the_controller_raises_holds_and_stops():
    """The rule of the module docstring, computed by hand: lr 0.1, lambda 0.1, 100 steps; the
    channels that must go are bn1's smallest (found by compressing), all with bn1's rho."""
    model = tiny_model()
    budget, optimizer, lines = adaptive_budget(model, l1_penalty=0.1, target_macs=0.6,
                                               max_steps=100, check_every=10, max_scale=4.0)
    rho = pruning.penalties(model)[model.get_layer("bn1").gamma.path]
    gamma1 = model.get_layer("bn1").gamma
    near = 10 * np.array([0.05, -0.01, 0.11, 0.03, -0.07, 0.02, 0.12, -0.09, 0.04, 0.06, -0.08,
                          0.1])
    model.get_layer("bn0").gamma.assign(np.full(8, 5.0, "float32"))  # far from zero
    gamma1.assign(near.astype("float32"))
    order = list(np.argsort(np.abs(near)))
    count = fewest_to_meet(model, "bn1", order, 0.6)
    lr, l1 = 0.1, 0.1

    def lambda_needed(step, push):
        """The lambda bn1's last channel that must go needs: push + |gamma| / (half the steps
        left) per step, from a threshold of lr * lambda * rho."""
        size = np.sort(np.abs(gamma1.numpy()))[count - 1]
        return (push + size / int(0.5 * (100 - step))) / (lr * rho)

    def scale():
        return float(optimizer.penalty_scale.numpy())

    # Step 0, no push known yet: the threshold alone is enough at lambda as it is: held.
    assert lambda_needed(0, 0.0) < l1
    budget.on_train_begin()
    assert scale() == 1.0
    assert "%d more channels must go" % count in lines[-1] and "held at 0.1" in lines[-1]
    # Step 20, the gammas have not moved: the gradient pushed back by the whole threshold.
    lines.append(budget.check(20))
    expected = lambda_needed(20, lr * l1 * rho)
    assert expected > l1 and scale() == pytest.approx(expected / l1, rel=1e-5)
    assert "lambda raised 0.1 ->" in lines[-1], lines[-1]
    # Step 22, every gamma shrank by its whole threshold: no push, less needed: held.
    applied = lr * l1 * scale()
    gamma1.assign((np.sign(near) * (np.abs(near) - 2 * applied * rho)).astype("float32"))
    assert lambda_needed(22, 0.0) < l1 * scale()
    held = scale()
    lines.append(budget.check(22))
    assert scale() == held and "held" in lines[-1], lines[-1]
    # Step 90, not moved since: pushed back again, and few steps left: up to max_scale, no more.
    assert lambda_needed(90, applied * rho) > 4 * l1
    lines.append(budget.check(90))
    assert scale() == pytest.approx(4.0)
    lines.append(budget.check(95))
    assert "stays at its ceiling 0.4" in lines[-1], lines[-1]
    assert not getattr(model, "stop_training", False)
    # Zeros that leave at most 60% of the multiply-adds: met; the zeros are held from here and
    # training goes on.
    zero(model, "bn1", order[:count])
    lines.append(budget.check(96))
    assert budget.met_at == 96 and float(optimizer.zeros_held_since.numpy()) == 96
    assert not getattr(model, "stop_training", False)
    assert "budget met at step 96" in lines[-1] and "held" in lines[-1], lines[-1]
    assert budget.fraction["macs"] == pytest.approx(hand_macs(pruning.compress(model))
                                                    / hand_macs(tiny_model()))
    # A later check (a resumed run) dates the budget from the step the zeros are held since.
    lines.append(budget.check(99))
    assert budget.met_at == 96 and "met at step 96" in lines[-1]
    # hold=False: met, and training stops there.
    stopping, _, _ = adaptive_budget(model, target_macs=0.6, max_steps=100, hold=False,
                                     dense=pruning.estimate(tiny_model()))
    stopping.on_train_begin()
    assert model.stop_training and stopping.met_at == 0


def test_past_its_deadline_the_controller_aims_at_the_next_check():
    """Not met by max_steps: lambda is set for the last channel that must go to reach zero by
    the next check (the threshold alone: no push is known at a first check)."""
    model = tiny_model()
    budget, optimizer, lines = adaptive_budget(model, l1_penalty=0.1, target_macs=0.6,
                                               max_steps=100, check_every=10, max_scale=1e6)
    budget.dense = pruning.estimate(model)
    gamma1 = model.get_layer("bn1").gamma
    near = np.linspace(0.1, 1.2, 12).astype("float32")
    model.get_layer("bn0").gamma.assign(np.full(8, 5.0, "float32"))
    gamma1.assign(near)
    count = fewest_to_meet(model, "bn1", list(range(12)), 0.6)
    rho = pruning.penalties(model)[gamma1.path]
    lines.append(budget.check(150))
    expected = near[count - 1] / 10 / (0.1 * rho)
    assert expected > 0.1
    assert float(optimizer.penalty_scale.numpy()) * 0.1 == pytest.approx(expected, rel=1e-5)
    assert "by step 160" in lines[-1], lines[-1]


def test_budget_stops_a_fit_once_met_and_says_when_it_missed():
    rng = np.random.RandomState(0)
    images = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    labels = rng.randint(0, 4, 64)
    model = tiny_model()
    dense = pruning.estimate(model)
    model.compile(optimizer=pruning.ISTA(0.05, l1_penalty=2.0, adaptive=True,
                                         penalties=pruning.penalties(model)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    lines = []
    budget = pruning.Budget(target_macs=0.7, check_every=2, hold=False, log=lines.append)
    model.fit(images, labels, batch_size=16, epochs=50, verbose=0, callbacks=[budget])
    steps = int(model.optimizer.iterations.numpy())
    assert budget.met_at is not None and steps < 200, lines
    assert steps == budget.met_at  # stopped right there
    assert pruning.estimate(model).macs <= 0.7 * dense.macs
    assert hand_macs(pruning.compress(model)) <= 0.7 * dense.macs

    model = tiny_model(seed=1)
    model.compile(optimizer=pruning.ISTA(0.05, l1_penalty=1e-6, adaptive=True,
                                         penalties=pruning.penalties(model)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    budget = pruning.Budget(target_macs=0.1, check_every=2, max_scale=2.0, log=lines.append)
    model.fit(images, labels, batch_size=16, epochs=2, verbose=0, callbacks=[budget])
    assert budget.met_at is None and int(model.optimizer.iterations.numpy()) == 8
    # Meant to be met half-way through (step 4), by default.
    assert lines[-1].startswith("budget missed: training ended at step 8 (to be met by step 4) "
                                "with 100.0% of the dense multiply-adds: 90.0 points above the "
                                "target 10.0%"), lines[-1]


def gammas(model):
    return {layer.name: layer.gamma.numpy() for layer in model.layers
            if isinstance(layer, L.BatchNormalization)}


def test_a_held_budget_trains_on_with_the_fewest_zeros_that_meet_it():
    """Met by step 20 of 200: training runs to 200. The channels held at zero are some of the
    zeros of the met step and no more than the budget needs (with all of them removed the
    model meets it, with any one of them back it would not, counted by compressing); they are
    still zero at the end, and the other gammas kept training."""
    rng = np.random.RandomState(0)
    images = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    labels = rng.randint(0, 4, 64)
    model = tiny_model()
    dense_macs = hand_macs(model)
    optimizer = pruning.ISTA(0.05, l1_penalty=0.5, adaptive=True,
                             penalties=pruning.penalties(model))
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Snapshot(keras.callbacks.Callback):
        """The gammas right after the step the budget is met at (it runs after `budget`)."""
        def on_train_batch_end(self, batch, logs=None):
            if budget.met_at is not None and not hasattr(self, "gammas"):
                self.gammas = gammas(model)

    lines = []
    budget = pruning.Budget(target_macs=0.7, max_steps=20, check_every=2, log=lines.append)
    snapshot = Snapshot()
    model.fit(images, labels, batch_size=16, epochs=50, verbose=0,
              callbacks=[budget, snapshot])
    assert int(model.optimizer.iterations.numpy()) == 200
    assert budget.met_at is not None and budget.met_at <= 20, lines
    end = gammas(model)
    held = {name: optimizer.held_zeros()[model.get_layer(name).gamma.path] for name in end}
    for name, at_met in snapshot.gammas.items():
        assert (at_met[held[name]] == 0).all() and (end[name][held[name]] == 0).all()

    counter = tiny_model()  # betas 0: the removed channels' constants need no border terms

    def macs_without(channels):
        for name, values in end.items():
            counter.get_layer(name).gamma.assign(np.where(np.isin(np.arange(len(values)),
                                                                  channels.get(name, [])),
                                                          0.0, 1.0).astype("float32"))
        return hand_macs(pruning.compress(counter))

    chosen = {name: list(np.flatnonzero(mask)) for name, mask in held.items()}
    assert macs_without(chosen) <= 0.7 * dense_macs
    for name in chosen:
        for channel in chosen[name]:
            fewer = dict(chosen, **{name: [c for c in chosen[name] if c != channel]})
            assert macs_without(fewer) > 0.7 * dense_macs, (name, channel)
    count = sum(len(c) for c in chosen.values())
    met_line = next(line for line in lines if line.startswith("budget met"))
    removed = re.search(r"with (\d+) of the (\d+) channels they remove held at zero", met_line)
    restarted = re.search(r"the other (\d+) restarted", met_line)
    restarted = int(restarted.group(1)) if restarted else 0
    assert int(removed.group(1)) == count, met_line
    assert int(removed.group(2)) == count + restarted, met_line
    for name, at_met in snapshot.gammas.items():  # the zeros not held were restarted
        np.testing.assert_array_equal(at_met == 0, held[name])
    moved = [np.abs(end[n] - v)[v != 0].max() for n, v in snapshot.gammas.items() if (v != 0).any()]
    assert max(moved) > 0


def test_held_zeros_are_the_channels_compression_removes():
    """Two batch norms coupled by an add: a channel zero in both goes and is held; a zero in
    one of them only removes nothing, and is left to train."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    a = L.BatchNormalization(name="bn_a")(L.Conv2D(4, 3, padding="same", name="conv_a")(inputs))
    b = L.BatchNormalization(name="bn_b")(L.Conv2D(4, 1, name="conv_b")(inputs))
    x = L.GlobalAveragePooling2D()(L.ReLU()(L.Add()([a, b])))
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    dense = pruning.estimate(model)
    zero(model, "bn_a", [0, 1])
    zero(model, "bn_b", [0])
    assert pruning.compress(model).get_layer("conv_a").kernel.shape[-1] == 3  # channel 0 only
    budget, optimizer, lines = adaptive_budget(model, target_macs=0.9, max_steps=10,
                                               dense=dense)
    budget.on_train_begin()
    assert budget.met_at == 0, lines
    images = np.random.RandomState(0).normal(size=(8, 6, 6, 3)).astype("float32")
    with tf.GradientTape() as tape:
        loss = ops.mean(model(images, training=True) ** 2)
    variables = model.trainable_variables
    optimizer.apply(tape.gradient(loss, variables), variables)
    g_a, g_b = (model.get_layer(n).gamma.numpy() for n in ("bn_a", "bn_b"))
    assert g_a[0] == 0 and g_b[0] == 0  # held
    assert g_a[1] != 0  # freed: its channel stays, through bn_b


def test_adaptive_ista_scales_the_threshold_and_saves_the_scale(tmp_path):
    gamma = keras.Variable(np.array([1.0, -1.0, 0.05, 0.2], "float32"), name="gamma")
    plain = pruning.ISTA(0.1, l1_penalty=1.0, penalties={gamma.path: 2.0})
    plain.build([gamma])
    assert plain.penalty_scale is None and "adaptive" not in plain.get_config()
    optimizer = pruning.ISTA(0.1, l1_penalty=1.0, penalties={gamma.path: 2.0}, adaptive=True)
    optimizer.build([gamma])
    optimizer.penalty_scale.assign(1.5)
    optimizer.apply([tf.zeros(4)], [gamma])  # zero gradient: only the proximal step
    # threshold = lr * rho * lambda * scale = 0.1 * 2 * 1 * 1.5 = 0.3
    np.testing.assert_allclose(gamma.numpy(), [0.7, -0.7, 0.0, 0.0], rtol=1e-6)
    path = tf.train.Checkpoint(optimizer=optimizer).write(str(tmp_path / "c"))
    again = pruning.ISTA(0.1, l1_penalty=1.0, penalties={gamma.path: 2.0}, adaptive=True)
    again.build([gamma])
    tf.train.Checkpoint(optimizer=again).read(path).assert_existing_objects_matched()
    assert float(again.penalty_scale.numpy()) == 1.5
    assert pruning.ISTA.from_config(optimizer.get_config()).adaptive
    # Held: the masked zero stays zero whatever its gradient; the rest, the other zero too,
    # take the plain step without the threshold.
    optimizer.hold(7, {gamma.path: [False, False, True, False]})
    optimizer.apply([tf.constant([2.0, -1.0, 3.0, 4.0])], [gamma])
    np.testing.assert_allclose(gamma.numpy(), [0.7 - 0.2, -0.7 + 0.1, 0.0, -0.4], rtol=1e-6)
    with pytest.raises(ValueError, match="not penalized"):
        optimizer.hold(7, {"other/gamma": [True]})
    with pytest.raises(ValueError, match="adaptive=True"):
        plain.hold(7, {})
    path = tf.train.Checkpoint(optimizer=optimizer).write(str(tmp_path / "held"))
    tf.train.Checkpoint(optimizer=again).read(path).assert_existing_objects_matched()
    assert float(again.zeros_held_since.numpy()) == 7.0


def test_between_checks_a_watch_sees_the_budget_met():
    """check_every 100, watch_every 5: zeros that meet the budget at step 3 are seen at step 5
    (the first watch), not at the check of step 100; a watch that finds it unmet says nothing
    and leaves lambda alone."""
    model = tiny_model()
    budget, optimizer, lines = adaptive_budget(model, target_macs=0.7, max_steps=1000,
                                               check_every=100, watch_every=5)
    budget.on_train_begin()  # the check of step 0
    assert len(lines) == 1 and budget.met_at is None
    scale = float(optimizer.penalty_scale.numpy())
    optimizer.iterations.assign(5)
    budget.on_train_batch_end(0)
    assert len(lines) == 1 and float(optimizer.penalty_scale.numpy()) == scale
    zero(model, "bn0", range(7))  # conv0 keeps 1 of 8 channels: far below 70% by hand count
    assert hand_macs(pruning.compress(model)) <= 0.7 * hand_macs(tiny_model())
    for step in (8, 9):  # fewer than 5 steps since the last watch
        optimizer.iterations.assign(step)
        budget.on_train_batch_end(0)
        assert len(lines) == 1 and budget.met_at is None
    optimizer.iterations.assign(10)
    budget.on_train_batch_end(0)
    assert budget.met_at == 10 and lines[-1].startswith("budget met at step 10:"), lines


def test_budget_refuses_bad_input():
    model = tiny_model()
    for bad in (0, 1.5, -0.2, True, "0.5"):
        with pytest.raises(ValueError, match=r"target_macs must be a fraction in \(0, 1\]"):
            pruning.Budget(target_macs=bad)
    with pytest.raises(ValueError, match="target_macs or target_params"):
        pruning.Budget()
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"aim must be a fraction in \(0, 1\]"):
            pruning.Budget(target_macs=0.5, aim=bad)
    for name in ("check_every", "watch_every", "channel_multiple"):
        for bad in (0, 2.5, True):
            with pytest.raises(ValueError, match="%s must be a whole number" % name):
                pruning.Budget(target_macs=0.5, **{name: bad})
    plain = pruning.ISTA(0.1, l1_penalty=0.01, penalties=pruning.penalties(model))
    plain.build(model.trainable_variables)
    budget = pruning.Budget(target_params=0.5, optimizer=plain, max_steps=10)
    budget.set_model(model)
    with pytest.raises(ValueError, match="adaptive=True"):
        budget.on_train_begin()
    sizeless = keras.Model(*(lambda i: (i, L.BatchNormalization()(L.Conv2D(4, 3)(i))))(
        keras.Input((None, None, 3))))
    budget, _, _ = adaptive_budget(sizeless, target_macs=0.5, max_steps=10)
    with pytest.raises(ValueError, match="input size"):
        budget.on_train_begin()


def parse_train(*args):
    fv = flags.FlagValues()
    define_train_flags(fv)
    fv(["train"] + list(args))
    return fv


def test_train_flags_of_the_budget():
    fv = parse_train("--target_macs", "0.5", "--target_params", "1")
    assert (fv.target_macs, fv.target_params, fv.prune_block_outputs) == (0.5, 1.0, False)
    assert parse_train("--budget_meet_by", "0.25").budget_meet_by == 0.25
    assert parse_train().budget_channel_multiple == 1
    assert parse_train("--budget_channel_multiple", "16").budget_channel_multiple == 16
    with pytest.raises(flags.IllegalFlagValueError, match="budget_channel_multiple"):
        parse_train("--budget_channel_multiple", "0")
    for bad in ("0", "1.5"):
        with pytest.raises(flags.IllegalFlagValueError, match="budget_meet_by must be"):
            parse_train("--budget_meet_by", bad)
    with pytest.raises(flags.IllegalFlagValueError, match="in \\(0, 1\\]"):
        parse_train("--target_macs", "1.5")
    with pytest.raises(flags.IllegalFlagValueError, match="in \\(0, 1\\]"):
        parse_train("--target_params", "0")
    with pytest.raises(flags.IllegalFlagValueError, match="l1_penalty > 0"):
        parse_train("--target_macs", "0.5", "--l1_penalty", "0")


@pytest.mark.slow  # two training runs: 1-7 min on two cores, by load
def test_a_budget_ends_the_stage_and_a_rerun_keeps_it(tiny_data, tmp_path):
    base = str(tmp_path / "cifar10_train")  # the layout the report reads
    args = ["--data_dir", tiny_data, "--train_dir", base, "--batch_size", 10, "--log_frequency",
            2, "--seed", 1, "--max_steps", 60, "--l1_penalty", 0.5, "--target_macs", 0.8]
    out = run_cli("train", *args).stdout
    met = re.search(r"budget met at step (\d+): the current zeros leave [\d.]+% of the dense "
                    r"multiply-adds \(target 80.0%\); the stage stops sparsifying and trains on "
                    r"with \d+ of the \d+ channels they remove held at zero \(those that cost "
                    r"most, enough for ([\d.]+)% of the dense multiply-adds\)", out)
    assert met and int(met.group(1)) < 60, out[-3000:]
    assert "step 60 (end of stage)" in out  # trained on to --max_steps
    assert "budget: step 2, the current zeros leave" in out
    with open(os.path.join(base + "_1", "architecture.json")) as f:
        record = json.load(f)
    spec = ArchSpec.from_record(record)
    flops = costs.conv_flops(models.build_model(spec))
    assert flops <= 0.8 * costs.conv_flops(models.build_model(ArchSpec.dense("resnet20")))
    # The held channels go; the zeros not held were restarted and stay.
    assert flops / 41599616 <= float(met.group(2)) / 100 + 5e-4
    assert record["trained_with"]["budget_met_at_step"] == int(met.group(1))
    assert record["trained_with"]["budget_channel_multiple"] == 1
    # The report says it (by default the budget is meant to be met half-way: step 30 of 60).
    assert ("Stage 0 budget: at most 80.0%% of the dense conv multiply-adds, to be met by step "
            "30 of 60: met at step %s; final lambda" % met.group(1)) \
        in report.markdown(report.collect(str(tmp_path)))
    # The same command again: the stage is over, and the compression already written is kept.
    again = run_cli("train", *args).stdout
    assert ", loss" not in again
    assert "already holds the compression" in again


def test_a_coupled_group_needs_the_lambda_of_its_norm():
    """Two batch norms summed by an Add, thresholded as one (ISTA coupled): past its deadline the
    controller sets lambda for the channel that must go to reach zero by the next check, from the
    channel's norm over both members and their rho summed (by hand: norm / 10 / (lr * rho))."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    a = L.BatchNormalization(name="bn_a")(L.Conv2D(6, 3, padding="same", name="conv_a")(inputs))
    b = L.BatchNormalization(name="bn_b")(L.Conv2D(6, 1, name="conv_b")(inputs))
    x = L.ReLU()(L.Add()([a, b]))
    x = L.Conv2D(20, 3, padding="same", name="reader")(x)  # the cost that the channels carry
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    penalties = pruning.penalties(model)
    coupled = pruning.coupled(model, penalties)
    assert len(coupled) == 1 and len(coupled[0]) == 2
    optimizer = pruning.ISTA(0.1, l1_penalty=0.1, penalties=penalties, adaptive=True,
                             coupled=coupled)
    optimizer.build(model.trainable_variables)
    lines = []
    budget = pruning.Budget(optimizer=optimizer, log=lines.append, target_macs=0.9,
                            max_steps=100, check_every=10, max_scale=1e6)
    budget.set_model(model)
    budget.dense = pruning.estimate(model)  # the gammas are all 1 yet
    gamma_a = 3 * np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1.0], "float32")
    gamma_b = 3 * np.array([0.05, 0.9, 0.02, 0.1, 0.3, 0.0], "float32")
    model.get_layer("bn_a").gamma.assign(gamma_a)
    model.get_layer("bn_b").gamma.assign(gamma_b)
    # One channel of six (the reader's inputs) takes the multiply-adds below 90%: channel 0 has
    # the smallest norm.
    norms = np.sqrt(gamma_a ** 2 + gamma_b ** 2)
    assert np.argmin(norms) == 0
    rho = sum(penalties[model.get_layer(n).gamma.path] for n in ("bn_a", "bn_b"))
    lines.append(budget.check(150))
    expected = norms[0] / 10 / (0.1 * rho)
    assert expected > 0.1  # raised, not held
    assert float(optimizer.penalty_scale.numpy()) * 0.1 == pytest.approx(expected, rel=1e-5)
    assert "1 more channel must go" in lines[-1], lines[-1]
