"""The training stage: compiled SGD/ISTA steps, the EMA, saving and resuming checkpoints (their
names and layout are stages.py's), the NaN stop, logs and summaries."""
import contextlib
import datetime
import math
import signal
import threading
import time

import keras
import tensorflow as tf

from cifar10_prune import distribute, mixed_precision, stages, storage, summaries
from cifar10_prune.pruning import ExponentialMovingAverage, ista

NUM_TRAIN_EXAMPLES = 50000
EPOCHS_PER_DECAY = 350


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN)."""


def learning_rate_schedule(learning_rate, batch_size):
    """The original's staircase decay: lr * 0.1 ** floor(step / int(50000 / batch_size * 350))."""
    decay_steps = int(NUM_TRAIN_EXAMPLES / batch_size * EPOCHS_PER_DECAY)
    return keras.optimizers.schedules.ExponentialDecay(
        learning_rate, decay_steps=decay_steps, decay_rate=0.1, staircase=True)


@contextlib.contextmanager
def _interruptible():
    """While training, SIGTERM (`kill`, job schedulers, container stops) and SIGINT end the run
    as Ctrl-C does: with a checkpoint saved first. A job started in the background (`nohup cmd
    &`) begins with SIGINT ignored, and by default SIGTERM kills without saving."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


class _Progress:
    """How far a stage is and how long it still needs, from the speed of this process's chunks
    (the first, which includes tracing the step function, is left out once others exist)."""

    def __init__(self, step, max_steps):
        self.max_steps = max_steps
        self.chunks = []  # (steps, seconds)
        self.step = step

    def done(self, step, seconds):
        self.chunks.append((step - self.step, seconds))
        self.step = step

    def line(self, step):
        timed = self.chunks[1:] or self.chunks
        steps, seconds = sum(n for n, _ in timed), sum(t for _, t in timed)
        left = (self.max_steps - step) * seconds / max(steps, 1)
        return "  progress: %d of %d steps done (%.1f%%), about %s left" % (
            step, self.max_steps, 100.0 * step / max(self.max_steps, 1),
            _duration(left))


def _duration(seconds):
    """`1 h 05 min`, `12 min`, `40 s`."""
    seconds = int(round(seconds))
    if seconds < 60:
        return "%d s" % seconds
    minutes = seconds // 60
    return "%d h %02d min" % divmod(minutes, 60) if minutes >= 60 else "%d min" % minutes


class Trainer:
    """Owns one stage's model, optimizer, EMA and checkpoints in `train_dir`.

    The global step is `optimizer.iterations`; it is saved, so a rerun resumes where the last
    checkpoint left off. Under a tf.distribute `strategy` (see distribute.py), `model` and
    `optimizer` must have been made in its scope; only the chief writes to `train_dir`.
    """

    def __init__(self, model, optimizer, train_dir, save_checkpoint_secs=600, log=print,
                 strategy=None):
        self.model, self.optimizer, self.train_dir = model, optimizer, train_dir
        self.log = log
        self.save_checkpoint_secs = save_checkpoint_secs
        self.strategy = strategy or tf.distribute.get_strategy()
        self.workdir = distribute.WorkerDirectory(self.strategy, train_dir)
        with self.strategy.scope():
            optimizer.build(model.trainable_variables)
            self.ema = ExponentialMovingAverage(model.trainable_variables)
            # The gamma-W rescaling factor in effect in the saved weights (1.0: none); see
            # rescale.py.
            self.gamma_rescale = tf.Variable(1.0, trainable=False, name="gamma_rescale")
        # A LossScaleOptimizer (float16) is saved as the optimizer it wraps, so that float32 and
        # mixed-precision runs write and read the same checkpoint layout.
        self.checkpoint = stages.make_checkpoint(model, self.ema,
                                                 mixed_precision.inner_optimizer(optimizer),
                                                 self.gamma_rescale)
        # {gamma path: rho_l} the logged sparsity metrics weigh (none for a plain optimizer).
        self.penalties = getattr(mixed_precision.inner_optimizer(optimizer), "penalties", {})
        self.manager = stages.checkpoint_manager(self.checkpoint, self.workdir.path)
        self._run = None
        self._dataset = self._iterator = None
        self._restored = None  # (path, step) of the checkpoint restore() resumed from

    @property
    def step(self):
        return int(self.optimizer.iterations.numpy())

    def restore(self):
        """Resume from the newest checkpoint in train_dir, if any; returns its path or None.
        Every worker of a cluster must resume from the same one (DistributionError if not)."""
        path = self._restore_newest()
        self._restored = (path, self.step) if path else None
        distribute.check_same_step(self.strategy, self.step)
        return path

    def _restore_newest(self):
        """Restore the newest checkpoint of train_dir that is whole.

        A checkpoint newer than the checkpoint state's latest is one whose save was cut off (by
        a kill or a crash): if damaged, it is passed over. Any other damaged checkpoint is a
        CheckpointError naming the newest intact one; nothing is deleted, so the user decides."""
        on_disk = stages.checkpoints_on_disk(self.train_dir)
        state = tf.train.get_checkpoint_state(self.train_dir)
        recorded = stages.checkpoint_step(state.model_checkpoint_path) if state else None
        # Newest file first, not the state file's record: after the user moves a damaged
        # checkpoint away, as the error below advises, the next run resumes from the one before.
        for i in reversed(range(len(on_disk))):
            path = on_disk[i]
            try:
                # A stage's step-0 checkpoint (written by compression) has no optimizer state.
                stages.read_checkpoint(self.checkpoint, path, self.model.name)
                return path
            except stages.CheckpointError as e:
                if stages.intact(path):
                    raise
                if recorded is not None and stages.checkpoint_step(path) > recorded:
                    self.log("passing over %s: its save was interrupted (it is newer than the "
                             "last completed save, %s)" % (path, state.model_checkpoint_path))
                    continue
                older = [p for p in reversed(on_disk[:i]) if stages.intact(p)]
                hint = ("The newest intact checkpoint is %s: move %s.* out of %s and rerun to "
                        "resume from it." % (older[0], path, self.train_dir)) if older else (
                    "No older intact checkpoint is left in %s; move %s.* away to start the "
                    "stage again." % (self.train_dir, path))
                raise stages.CheckpointError("%s. %s" % (e, hint)) from None
        return None

    def path(self, step):
        """The checkpoint path of global step `step` where this process saves (train_dir, or a
        non-chief worker's scratch directory)."""
        return stages.checkpoint_file(self.workdir.path, step)

    def save(self):
        """Save a checkpoint of the current step; a failed write (e.g. a full disk) is a
        storage.WriteError, and the checkpoints saved before stay usable."""
        if self._restored is not None and self._restored[1] == self.step:
            # Nothing trained since the restore: saving again would hand the file to the
            # manager, which deletes it five saves later, also a stage's preserved model.ckpt-0.
            return self._restored[0]
        previous = self.manager.latest_checkpoint
        intact = ("The last checkpoint, %s, is intact: rerun the same command to resume from "
                  "it once the problem is fixed." % previous) if previous else (
            "No checkpoint of this stage was saved before.")
        path = self.path(self.step)
        try:
            with storage.writing("checkpoint " + path, intact):
                return self.manager.save(checkpoint_number=self.step)
        except storage.WriteError:
            # TensorFlow writes a checkpoint's parts into `<path>_temp` first and leaves it
            # behind when that fails; on a full disk, the space is better given back.
            for leftover in tf.io.gfile.glob(path + "_temp*"):
                tf.io.gfile.rmtree(leftover)
            raise

    def _compile(self, batch_size):
        model, optimizer, ema, strategy = self.model, self.optimizer, self.ema, self.strategy
        xent = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=None)

        def replica_step(images, labels):
            # This replica's share of the loss of the global batch: the replicas' shares sum to
            # the loss one device computes on the whole batch, and so do their gradients, which
            # `optimizer.apply` sums across replicas.
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = tf.nn.compute_average_loss(xent(labels, logits),
                                                  global_batch_size=batch_size)
                if model.losses:  # resnet20's weight decay
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                # Loss scaling (float16 only): the identity unless optimizer is a
                # LossScaleOptimizer, whose apply divides the gradients by the same scale
                # before the ISTA step.
                scaled_loss = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled_loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        def one_step(batch):
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM,
                                   strategy.run(replica_step, args=batch), axis=None)
            ema.update(optimizer.iterations)  # once, on the variables every replica shares
            return loss

        with tf.init_scope():
            self._stop = tf.Variable(False, trainable=False, name="stop_requested")

        @tf.function
        def run(iterator, num_steps):
            # Several steps per call keep Python out of the loop; stop at the first bad loss,
            # or after the current step when a signal asked to (`_call`).
            first = one_step(next(iterator))
            last = first
            for _ in tf.range(num_steps - 1):
                if tf.logical_or(self._stop, tf.logical_not(tf.math.is_finite(last))):
                    break
                last = one_step(next(iterator))
            return first, last

        return run

    def _call(self, iterator, num_steps):
        """`self._run` in a worker thread, the main thread waiting for it: Python runs signal
        handlers on the main thread between bytecodes only, so while a compiled chunk of up to
        `log_frequency` steps ran there, Ctrl-C or SIGTERM waited for its end (100 steps are
        minutes on a slow CPU, longer than a job scheduler's grace period before SIGKILL). On
        KeyboardInterrupt the loop is asked to stop after its current step, and the interrupt
        goes on once it has, so the variables hold the state of a whole step."""
        result, done = {}, threading.Event()

        def work():
            try:
                result["value"] = self._run(iterator, tf.constant(num_steps))
            except BaseException as e:  # re-raised on the main thread
                result["error"] = e
            finally:
                done.set()

        interrupt = None
        threading.Thread(target=work, name="training-chunk", daemon=True).start()
        while True:
            # A signal's KeyboardInterrupt can arrive at any bytecode of this loop, so every
            # line of it is inside the try; a second signal while stopping changes nothing.
            # (An Event, not Thread.join: a join interrupted this way can leave is_alive()
            # False while the thread still runs, on Python 3.11 at least.)
            try:
                if interrupt is not None:
                    self._stop.assign(True)
                while not done.wait(0.25):
                    pass
                break
            except KeyboardInterrupt as e:
                interrupt = interrupt or e
        self._stop.assign(False)
        if "error" in result:
            raise result["error"]
        if interrupt is not None:
            raise interrupt
        return result["value"]

    def fit(self, dataset, max_steps, log_frequency, batch_size, callbacks=(),
            steps_per_execution=None):
        """Train until the global step reaches `max_steps`, logging every `log_frequency` steps
        the original's line (loss, group lasso and fake sparsity are those of the logged step,
        before its update). Saves at the end and every `save_checkpoint_secs`.

        `callbacks` are Keras callbacks (e.g. `pruning.Budget`): `on_train_begin`, then
        `on_train_batch_end(global step)` after every `steps_per_execution` steps (as in Keras:
        one compiled call runs that many; by default `log_frequency`, so once per log line),
        and `on_train_end` unless interrupted; one that sets `model.stop_training` ends the
        stage there, also before its first step (a resumed stage whose budget is already met)."""
        if self._run is None:
            self._run = self._compile(batch_size)
        writer = (tf.summary.create_file_writer(self.train_dir) if self.workdir.chief
                  else tf.summary.create_noop_writer())
        if dataset is not self._dataset:
            # One iterator per dataset across fit calls: a new one refills the shuffle buffer,
            # and tearing one down can block on tf.data's autotuner for seconds. The strategy
            # splits each global batch between the replicas (and shards the files between the
            # workers of a cluster).
            self._dataset = dataset
            if isinstance(dataset, tf.data.Dataset):
                dataset = distribute.distribute_dataset(self.strategy, dataset)
            self._iterator = iter(dataset)  # anything else is taken as already distributed
        iterator = self._iterator
        clock = _Progress(self.step, max_steps)
        last = None
        hooks = keras.callbacks.CallbackList(list(callbacks), model=self.model)
        self.model.stop_training = False
        hooks.on_train_begin()
        with _interruptible():
            try:
                last_save = time.time()
                while self.step < max_steps and not self.model.stop_training:
                    last = self._chunk(iterator, max_steps, log_frequency, batch_size, clock,
                                       writer, hooks, steps_per_execution or log_frequency)
                    if time.time() - last_save >= self.save_checkpoint_secs:
                        self.save()
                        last_save = time.time()
            except KeyboardInterrupt as e:
                # `_call` let the chunk finish its current step first: the variables hold the
                # state of a whole step, wherever in the loop the signal arrived.
                path = self.save()
                raise TrainingError("interrupted%s at step %d; saved %s, rerun the same command "
                                    "to resume" % (" (%s)" % e if str(e) else "", self.step,
                                                   path)) from None
        hooks.on_train_end()
        if last is not None:
            # The original logs only steps before an update, so the stage's end went unlogged.
            lasso, fake, _ = ista.sparsity(self.model, self.penalties)
            self.log("%s: step %d (end of stage), loss of step %d = %.2f, group lasso = %.2f, "
                     "fake sparsity = %.2f" % (datetime.datetime.now(), self.step,
                                               self.step - 1, last, lasso, fake))
        if self.manager.latest_checkpoint != self.path(self.step):
            self.save()
        return self.step

    def _chunk(self, iterator, max_steps, log_frequency, batch_size, clock, writer, hooks,
               per_call):
        """Train up to the next multiple of log_frequency (so every chunk but a resumed run's
        first starts on a logged step; that first one is logged too), in calls of at most
        `per_call` steps with the callbacks' `on_train_batch_end` after each, and stopping
        early if one sets `model.stop_training`; log it and write its summaries. Returns the
        loss of its last step."""
        step = self.step
        end = min(step + log_frequency - step % log_frequency, max_steps)
        lasso, fake, zeros = ista.sparsity(self.model, self.penalties)
        lr = float(self.optimizer.learning_rate)
        start, first = time.time(), None
        while self.step < end and not self.model.stop_training:
            head, last = (float(v) for v in self._call(iterator, min(per_call, end - self.step)))
            if not (math.isfinite(head) and math.isfinite(last)):
                good = self.manager.latest_checkpoint or "none yet"
                bad = last if math.isfinite(head) else head
                raise TrainingError("loss is %s at step %d; training stopped. The last good "
                                    "checkpoint is %s" % (bad, self.step - 1, good))
            first = head if first is None else first
            hooks.on_train_batch_end(self.step)
        duration = time.time() - start
        num = self.step - step
        clock.done(self.step, duration)
        self.log("%s: step %d, loss = %.2f, group lasso = %.2f, fake sparsity = %.2f, "
                 "(%.1f examples/sec; %.3f sec/batch)"
                 % (datetime.datetime.now(), step, first, lasso, fake,
                    num * batch_size / duration, duration / num))
        if zeros:
            self.log(ista.format_zeros(zeros))
        self.log(clock.line(self.step))
        values = {"loss": first, "learning_rate": lr, "group_lasso": lasso, "fake_sparsity": fake}
        values.update({"zero_gammas/" + u: z for u, (z, _) in zeros.items()})
        with storage.writing("summaries to " + self.train_dir, "Checkpoints are intact."):
            summaries.scalars(writer, step, values)
        return last
