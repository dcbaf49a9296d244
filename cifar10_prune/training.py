"""The training stage: compiled SGD/ISTA steps, the EMA, checkpoints, logs and summaries."""
import datetime
import math
import os
import time

import keras
import tensorflow as tf

from cifar10_prune import ista, precision, summaries
from cifar10_prune.ema import ExponentialMovingAverage

CHECKPOINT_NAME = "model.ckpt"
NUM_TRAIN_EXAMPLES = 50000
EPOCHS_PER_DECAY = 350


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN)."""


def learning_rate_schedule(learning_rate, batch_size):
    """The original's staircase decay: lr * 0.1 ** floor(step / int(50000 / batch_size * 350))."""
    decay_steps = int(NUM_TRAIN_EXAMPLES / batch_size * EPOCHS_PER_DECAY)
    return keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=decay_steps, decay_rate=0.1, staircase=True)


def make_checkpoint(model, ema, optimizer=None, gamma_rescale=None):
    """The one checkpoint layout every stage writes and reads: model (raw weights), ema
    (their averages), and when training, the optimizer (global step) and the gamma rescale."""
    parts = {"model": model, "ema": ema}
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if gamma_rescale is not None:
        parts["gamma_rescale"] = gamma_rescale
    return tf.train.Checkpoint(**parts)


def checkpoint_manager(checkpoint, directory, max_to_keep=5):
    """Checkpoints named `model.ckpt-<global step>`, as the original's."""
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep,
                                      checkpoint_name=CHECKPOINT_NAME)


def checkpoints_on_disk(directory):
    """The `model.ckpt-<step>` paths present in `directory`, oldest first (by global step),
    including a stage's preserved `model.ckpt-0`, which the checkpoint state no longer lists."""
    suffix = ".index"
    found = tf.io.gfile.glob(os.path.join(directory, "%s-*%s" % (CHECKPOINT_NAME, suffix)))
    paths = [p[:-len(suffix)] for p in found if p[:-len(suffix)].rsplit("-", 1)[1].isdigit()]
    return sorted(paths, key=lambda p: int(p.rsplit("-", 1)[1]))


class CheckpointError(ValueError):
    """A checkpoint is damaged or does not fit the model it is read into."""


def intact(path):
    """Whether every tensor of checkpoint `path` can be read in full."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (ValueError, IndexError, tf.errors.OpError):
        return False
    return True


def read_checkpoint(checkpoint, path, model_name="this"):
    """`checkpoint.read(path)`, turning what can go wrong with the file into CheckpointError:
    damaged (cut short, unreadable) or made for another architecture."""
    damaged = mismatch = None
    try:
        checkpoint.read(path).expect_partial()
    except (IndexError, tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
        damaged = str(e)
    except (ValueError, tf.errors.OpError) as e:
        mismatch = str(e).strip().splitlines()[0]
    if damaged is not None:
        raise CheckpointError("%s is damaged (%s): it was cut short or corrupted, e.g. by a full "
                              "disk or a copy that broke off" % (path, damaged))
    if mismatch is not None:
        raise CheckpointError("%s does not fit the %s architecture (%s); was architecture.json "
                              "edited or replaced, or is --is_compressed wrong for this stage?"
                              % (path, model_name, mismatch))


def restore_averaged(model, path):
    """Load checkpoint `path` into `model` and replace its trainable weights by their moving
    averages (this port always evaluates the averages; see the README's Faithfulness section).
    Returns the EMA object. Raises CheckpointError for a damaged or mismatched file."""
    ema = ExponentialMovingAverage(model.trainable_variables)
    read_checkpoint(make_checkpoint(model, ema), path, model.name)
    ema.copy_to_variables()
    return ema


class Trainer:
    """Owns one stage's model, optimizer, EMA and checkpoints in `train_dir`.

    The global step is `optimizer.iterations`; it is saved, so a rerun resumes where the last
    checkpoint left off.
    """

    def __init__(self, model, optimizer, train_dir, save_checkpoint_secs=600, log=print):
        self.model, self.optimizer, self.train_dir = model, optimizer, train_dir
        self.log = log
        self.save_checkpoint_secs = save_checkpoint_secs
        optimizer.build(model.trainable_variables)
        self.ema = ExponentialMovingAverage(model.trainable_variables)
        # The gamma-W rescaling factor in effect in the saved weights (1.0: none); see rescale.py.
        self.gamma_rescale = tf.Variable(1.0, trainable=False, name="gamma_rescale")
        # A LossScaleOptimizer (float16) is saved as the optimizer it wraps, so that float32 and
        # mixed-precision runs write and read the same checkpoint layout.
        self.checkpoint = make_checkpoint(model, self.ema, precision.inner_optimizer(optimizer),
                                          self.gamma_rescale)
        self.manager = checkpoint_manager(self.checkpoint, train_dir)
        self._run = None
        self._dataset = self._iterator = None

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def restore(self):
        """Resume from the newest checkpoint in train_dir, if any; returns its path or None.

        A damaged newest checkpoint is a CheckpointError naming the newest intact one; nothing
        is deleted, so the user decides."""
        on_disk = checkpoints_on_disk(self.train_dir)
        # The newest file, not the state file's record: after the user moves a damaged
        # checkpoint away, as the error below advises, the next run resumes from the one before.
        path = on_disk[-1] if on_disk else None
        if not path:
            return None
        try:
            # A stage's step-0 checkpoint (written by compression) has no optimizer state.
            read_checkpoint(self.checkpoint, path, self.model.name)
        except CheckpointError as e:
            if intact(path):
                raise
            older = [p for p in reversed(on_disk[:-1]) if intact(p)]
            hint = ("The newest intact checkpoint is %s: move %s.* out of %s and rerun to "
                    "resume from it." % (older[0], path, self.train_dir)) if older else (
                "No older intact checkpoint is left in %s; move %s.* away to start the stage "
                "again." % (self.train_dir, path))
            raise CheckpointError("%s. %s" % (e, hint)) from None
        return path

    def save(self):
        return self.manager.save(checkpoint_number=self.step)

    def _compile(self):
        model, optimizer, ema = self.model, self.optimizer, self.ema
        xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def one_step(images, labels):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = xent(labels, logits)
                if model.losses:  # resnet20's weight decay
                    loss += tf.add_n(model.losses)
                # Loss scaling (float16 only): the identity unless optimizer is a
                # LossScaleOptimizer, whose apply divides the gradients by the same scale
                # before the ISTA step.
                scaled_loss = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled_loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            ema.update(optimizer.iterations)
            return loss

        @tf.function
        def run(iterator, num_steps):
            # Several steps per call keep Python out of the loop; stop at the first bad loss.
            first = one_step(*next(iterator))
            last = first
            for _ in tf.range(num_steps - 1):
                if not tf.math.is_finite(last):
                    break
                last = one_step(*next(iterator))
            return first, last

        return run

    def fit(self, dataset, max_steps, log_frequency, batch_size):
        """Train until the global step reaches `max_steps`, logging every `log_frequency` steps
        the original's line (loss, group lasso and fake sparsity are those of the logged step,
        before its update). Saves at the end and every `save_checkpoint_secs`."""
        if self._run is None:
            self._run = self._compile()
        writer = tf.summary.create_file_writer(self.train_dir)
        if dataset is not self._dataset:
            # One iterator per dataset across fit calls: a new one refills the shuffle buffer,
            # and tearing one down can block on tf.data's autotuner for seconds.
            self._dataset, self._iterator = dataset, iter(dataset)
        iterator = self._iterator
        last_save = time.time()
        while self.step < max_steps:
            # A chunk runs up to the next multiple of log_frequency, so every chunk but a
            # resumed run's first starts on a logged step; that first one is logged too.
            step = self.step
            num = min(log_frequency - step % log_frequency, max_steps - step)
            lasso, fake, zeros = ista.sparsity(self.model)
            lr = float(self.optimizer.learning_rate)
            start = time.time()
            try:
                first, last = (float(v) for v in self._run(iterator, tf.constant(num)))
            except KeyboardInterrupt:
                # The compiled chunk ran to its end before Python saw Ctrl-C: a consistent state.
                path = self.save()
                raise TrainingError("interrupted at step %d; saved %s, rerun the same command to "
                                    "resume" % (self.step, path)) from None
            duration = time.time() - start
            if not (math.isfinite(first) and math.isfinite(last)):
                good = self.manager.latest_checkpoint or "none yet"
                bad = last if math.isfinite(first) else first
                raise TrainingError("loss is %s at step %d; training stopped. The last good "
                                    "checkpoint is %s" % (bad, self.step - 1, good))
            self.log("%s: step %d, loss = %.2f, group lasso = %.2f, fake sparsity = %.2f, "
                     "(%.1f examples/sec; %.3f sec/batch)"
                     % (datetime.datetime.now(), step, first, lasso, fake,
                        num * batch_size / duration, duration / num))
            if zeros:
                self.log(ista.format_zeros(zeros))
            values = {"loss": first, "learning_rate": lr, "group_lasso": lasso,
                      "fake_sparsity": fake}
            values.update({"zero_gammas/" + u: z for u, (z, _) in zeros.items()})
            summaries.scalars(writer, step, values)
            if time.time() - last_save >= self.save_checkpoint_secs:
                self.save()
                last_save = time.time()
        if self.manager.latest_checkpoint != os.path.join(
                self.train_dir, "%s-%d" % (CHECKPOINT_NAME, self.step)):
            self.save()
        return self.step
