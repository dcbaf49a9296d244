"""The training stage in-process: log line, resume, NaN stop, ISTA zeros, EMA, summaries."""
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar10_prune import models, rebuild, summaries, training
from cifar10_prune.pruning import ExponentialMovingAverage, ista
from cifar10_prune.spec import ArchSpec

SPEC = ArchSpec("resnet20", {"g%db%dc0" % (g, b): 4 for g in (1, 2, 3) for b in range(3)})
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: step (\d+), loss = ([\d.]+|nan), "
                  r"group lasso = ([\d.]+), fake sparsity = ([\d.]+), "
                  r"\(([\d.]+) examples/sec; ([\d.]+) sec/batch\)$")


def _dataset(batch=8, n=32, poison_after=None):
    rng = np.random.RandomState(0)
    x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    y = rng.randint(0, 10, n).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch)
    if poison_after is not None:  # batches after this many are NaN
        ds = ds.enumerate().map(lambda i, b: (tf.where(i >= poison_after, np.nan, b[0]), b[1]))
    return ds


def _trainer(train_dir, l1=0.0, lr=0.1, spec=SPEC):
    model = models.build_model(spec)
    opt = ista.ISTA(training.learning_rate_schedule(lr, 8), l1, models.penalties(model))
    lines = []
    return training.Trainer(model, opt, str(train_dir), log=lines.append), lines


def _penalized_layers(trainer):
    """[(batch norm, rho_l)] of the gammas the trainer's optimizer penalizes."""
    return [(layer, trainer.penalties[layer.gamma.path]) for layer in trainer.model.layers
            if getattr(layer, "gamma", None) is not None and layer.gamma.path in trainer.penalties]


def _parsed(lines):
    return [LINE.match(l).groups() for l in lines if LINE.match(l)]


def test_log_line_and_resume(tmp_path):
    trainer, lines = _trainer(tmp_path)
    assert trainer.restore() is None
    trainer.fit(_dataset(), 5, 2, 8)
    steps = [int(p[0]) for p in _parsed(lines)]
    assert steps == [0, 2, 4]
    assert float(_parsed(lines)[0][2]) == pytest.approx(ista.sparsity(
        models.build_model(SPEC), trainer.penalties)[0], abs=0.005)  # group lasso before the first update
    assert [os.path.basename(p) for p in trainer.manager.checkpoints] == ["model.ckpt-5"]

    again, lines = _trainer(tmp_path)
    assert again.restore().endswith("model.ckpt-5") and again.step == 5
    for a, b in zip(trainer.model.weights + trainer.ema.shadows, again.model.weights + again.ema.shadows):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    again.fit(_dataset(), 7, 2, 8)
    assert [int(p[0]) for p in _parsed(lines)] == [5, 6]  # the global step goes on
    assert again.step == 7 and again.manager.latest_checkpoint.endswith("model.ckpt-7")
    again.fit(_dataset(), 7, 2, 8)  # already at max_steps: nothing to do
    assert again.step == 7


class _Steps(keras.callbacks.Callback):
    """Records the global step of each on_train_batch_end; stops training at `stop_at`."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.steps, self.stop_at = [], stop_at

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(batch)
        if batch == self.stop_at:
            self.model.stop_training = True


def test_steps_per_execution_calls_back_between_log_lines(tmp_path):
    trainer, lines = _trainer(tmp_path)
    steps = _Steps()
    trainer.fit(_dataset(), 7, 4, 8, callbacks=[steps], steps_per_execution=3)
    assert steps.steps == [3, 4, 7]  # calls of 3, 1 (up to the log line at 4) and 3 steps
    assert [int(p[0]) for p in _parsed(lines)] == [0, 4] and trainer.step == 7

    trainer, lines = _trainer(tmp_path / "stopped")
    steps = _Steps(stop_at=2)
    trainer.fit(_dataset(), 7, 4, 8, callbacks=[steps], steps_per_execution=1)
    assert steps.steps == [1, 2] and trainer.step == 2
    assert [int(p[0]) for p in _parsed(lines)] == [0]
    assert trainer.manager.latest_checkpoint.endswith("model.ckpt-2")


def test_summaries_written(tmp_path):
    trainer, _ = _trainer(tmp_path, l1=0.01)
    trainer.fit(_dataset(), 4, 2, 8)
    logged = summaries.read_scalars(str(tmp_path))
    assert [s for s, _ in logged["loss"]] == [0, 2]
    assert logged["learning_rate"][0][1] == pytest.approx(0.1)
    assert {"group_lasso", "fake_sparsity", "zero_gammas/g1b0c0"} <= set(logged)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer, lines = _trainer(tmp_path)
    trainer.fit(_dataset(), 2, 1, 8)  # saved as model.ckpt-2
    good = [v.numpy() for v in trainer.model.weights]
    # A fresh iterator from step 2: its 4th batch (step 5) is NaN. Its loss may still be finite
    # (the CPU's fused batch norm + ReLU maps NaN to 0), but the weights it updated are not, so
    # the loss is NaN at step 6 at the latest.
    with pytest.raises(training.TrainingError, match=r"at step [56]; .*model\.ckpt-2"):
        trainer.fit(_dataset(poison_after=3), 10, 5, 8)
    assert os.path.basename(tf.train.latest_checkpoint(str(tmp_path))) == "model.ckpt-2"
    restored, _ = _trainer(tmp_path)
    restored.restore()
    for a, b in zip(good, restored.model.weights):
        np.testing.assert_array_equal(a, b.numpy())
    assert all(np.all(np.isfinite(v.numpy())) for v in restored.model.weights)


def test_ista_zeros_survive_and_log_matches_checkpoint(tmp_path):
    trainer, lines = _trainer(tmp_path, l1=50.0)
    trainer.fit(_dataset(), 3, 1, 8)
    fake = [float(p[3]) for p in _parsed(lines)]
    assert fake[0] == 0.0 and fake[-1] == 1.0
    zero_line = [l for l in lines if l.startswith("zero gammas:")][-1]
    assert "g3b2c0 4/4" in zero_line

    # The next run starts at step 3: its first line reports the gammas saved in model.ckpt-3.
    again, lines = _trainer(tmp_path, l1=50.0)
    path = again.restore()
    again.fit(_dataset(), 4, 1, 8)
    logged = float(_parsed(lines)[0][3])
    from_disk, _ = _trainer(tmp_path)
    from_disk.checkpoint.read(path).expect_partial()
    zero_cost = total_cost = 0.0
    for layer, rho in _penalized_layers(from_disk):
        gamma = layer.gamma.numpy()
        zero_cost += rho * np.sum(gamma == 0)
        total_cost += rho * gamma.size
    assert logged == pytest.approx(round(zero_cost / total_cost, 2))
    # The EMA keeps averaging but never writes into the raw gammas.
    shadows = again.ema.shadow_by_path()
    for unit in rebuild.kept_channels(again.model).values():
        assert unit.size == 0
    gamma_shadow = shadows[again.model.get_layer("g1b0c0_bn").gamma.path].numpy()
    assert np.all(gamma_shadow != 0)


def test_zero_penalty_keeps_all_gammas(tmp_path):
    trainer, lines = _trainer(tmp_path, l1=0.0)
    trainer.fit(_dataset(), 4, 1, 8)
    assert {float(p[3]) for p in _parsed(lines)} == {0.0}
    assert all(k.size == 4 for k in rebuild.kept_channels(trainer.model).values())


def test_logged_fake_sparsity_matches_checkpoint_count(tmp_path):
    trainer, _ = _trainer(tmp_path, l1=0.001)
    trainer.fit(_dataset(), 2, 1, 8)
    rng = np.random.RandomState(5)
    for layer, _ in _penalized_layers(trainer):  # exact zeros in some channels of some layers
        gamma = layer.gamma.numpy()
        gamma[rng.rand(gamma.size) < 0.4] = 0.0
        layer.gamma.assign(gamma)
    path = trainer.save()

    reader = _trainer(tmp_path)[0]
    reader.checkpoint.read(path).expect_partial()
    counted = [(rho * np.sum(l.gamma.numpy() == 0), rho * l.gamma.shape[0])
               for l, rho in _penalized_layers(reader)]
    expected = sum(c for c, _ in counted) / sum(t for _, t in counted)
    assert 0.05 < expected < 0.95

    again, lines = _trainer(tmp_path, l1=0.001)
    again.restore()
    again.fit(_dataset(), 3, 1, 8)
    step, _, _, fake, _, _ = _parsed(lines)[0]
    assert int(step) == 2 and float(fake) == pytest.approx(round(expected, 2))


def test_gamma_rescale_applied_once_per_stage_and_undone(tmp_path):
    from cifar10_prune import rescale
    trainer, _ = _trainer(tmp_path)
    gamma = trainer.model.get_layer("g2b1c0_bn").gamma
    start = gamma.numpy().copy()
    x = _dataset().take(1).get_single_element()[0]
    before = trainer.model(x, training=False).numpy()
    rescale.begin_stage(trainer, 0.1, log=lambda _: None)
    np.testing.assert_allclose(gamma.numpy(), 0.1 * start, rtol=1e-6)
    np.testing.assert_allclose(trainer.model(x, training=False).numpy(), before, rtol=1e-4, atol=1e-4)
    trainer.save()

    resumed, _ = _trainer(tmp_path)
    resumed.restore()
    notes = []
    rescale.begin_stage(resumed, 0.1, log=notes.append)  # already applied: not again
    resumed_gamma = resumed.model.get_layer("g2b1c0_bn").gamma
    np.testing.assert_allclose(resumed_gamma.numpy(), 0.1 * start, rtol=1e-6)
    assert float(resumed.gamma_rescale.numpy()) == pytest.approx(0.1) and not notes
    rescale.end_stage(resumed, log=notes.append)
    np.testing.assert_allclose(resumed_gamma.numpy(), start, rtol=1e-5)
    assert float(resumed.gamma_rescale.numpy()) == 1.0 and "undone" in notes[0]


def test_compressed_starting_checkpoint_is_kept(tmp_path):
    """model.ckpt-0 of a stage (written by compression) outlives more than five later saves,
    as the original's did, so `eval --checkpoint_iter 0` can always re-measure it."""
    from cifar10_prune import stages
    base = str(tmp_path / "train")
    trainer, _ = _trainer(stages.stage_dir(base, 0), l1=0.01)
    trainer.fit(_dataset(), 2, 1, 8)
    end = stages.StageEnd(SPEC, trainer.model, trainer.ema.averages(),
                          trainer.manager.latest_checkpoint)
    stages.write_compressed(base, 0, end, stages.Compression(0.0005), log=lambda _: None)
    stage1 = stages.stage_dir(base, 1)
    start = stages.checkpoint_path(stage1, 0)
    # What the original's eval reads for a compressed stage (raw variables) is what ours reads
    # (averages): in the checkpoint compression writes they are equal.
    model = models.build_model(stages.read_architecture(stage1))
    ema = stages.restore_averaged(model, start)  # the model now holds the averages
    raw = models.build_model(stages.read_architecture(stage1))
    stages.make_checkpoint(raw, ExponentialMovingAverage(raw.trainable_variables)).read(
        start).expect_partial()
    for a, b in zip(model.weights, raw.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(ema.shadows) == len(raw.trainable_variables)

    later, _ = _trainer(stage1, l1=0.01, spec=stages.read_architecture(stage1))
    assert later.restore() == start
    # Interrupted before its first step, the stage saves: model.ckpt-0 must stay preserved.
    assert later.save() == start
    for steps in range(1, 8):  # seven saves: five are kept, plus model.ckpt-0
        later.fit(_dataset(), steps, 1, 8)
    names = sorted(os.path.basename(p)[:-len(".index")] for p in tf.io.gfile.glob(
        os.path.join(stage1, "model.ckpt-*.index")))
    assert names == ["model.ckpt-%d" % i for i in (0, 3, 4, 5, 6, 7)]
    assert stages.checkpoint_path(stage1, 0) == start
    assert later.manager.latest_checkpoint.endswith("model.ckpt-7")


def test_a_signal_stops_a_long_compiled_chunk_after_its_current_step(tmp_path):
    """Ctrl-C or SIGTERM in the middle of a chunk (here all 400 steps, one compiled call) stops
    it after the step under way and saves that step, instead of waiting for the chunk's end."""
    import signal
    import threading
    trainer, _ = _trainer(tmp_path / "train")
    steps = trainer.optimizer.iterations

    def interrupt_once_training():
        while int(steps.numpy()) < 3:  # read from this thread while the chunk runs
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=interrupt_once_training, daemon=True).start()
    with pytest.raises(training.TrainingError, match=r"interrupted \(SIGTERM\) at step (\d+)") as e:
        trainer.fit(_dataset(), 400, 400, 8)
    step = int(re.search(r"at step (\d+)", str(e.value)).group(1))
    assert 3 <= step < 400, step
    assert trainer.manager.latest_checkpoint.endswith("-%d" % step), trainer.manager.latest_checkpoint
    # The stop request is cleared: the same trainer trains on.
    assert trainer.fit(_dataset(), step + 2, 400, 8) == step + 2
