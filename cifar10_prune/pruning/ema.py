"""The exponential moving average of the trainable variables that evaluation uses.

The original uses TF1's `tf.train.ExponentialMovingAverage(0.999, num_updates=global_step)`,
whose decay warms up as min(0.999, (1 + t) / (10 + t)). Keras' built-in `use_ema` has no warm-up
and copies the averages into the model at the end of `fit`, which would overwrite the exact zeros
that ISTA produces in the raw gammas; so the averages live here, beside the raw weights.

Written with `keras.Variable` and `keras.ops` only, so it runs on every Keras backend (TensorFlow,
JAX, PyTorch). Under TensorFlow the shadows are `tf.Variable`s inside, usable in `tf.function`
and `tf.distribute`; the recipe puts them in its checkpoints (`stages.make_checkpoint`).
"""
import keras
from keras import ops

DECAY = 0.999


def decay_at(step, decay=DECAY):
    """TF1's decay for update number `step` (the global step after the training update)."""
    step = ops.cast(step, "float32")
    return ops.minimum(decay, (1.0 + step) / (10.0 + step))


class ExponentialMovingAverage:
    """Shadow copies of `variables`, updated as shadow -= (1 - decay_t) * (shadow - value).

    The shadows (`keras.Variable`s, not trainable) start as the variables' current values, as
    TF1's do.
    """

    def __init__(self, variables, decay=DECAY):
        self.decay = decay
        self._variables = list(variables)
        # A copy: given a tf.Variable, keras.Variable would wrap that same variable.
        # autocast=False: a shadow keeps its variable's dtype even when read inside a
        # mixed-precision scope; aggregation "none" is what a plain tf.Variable has.
        self.shadows = [keras.Variable(ops.copy(_value(v)), dtype=v.dtype, trainable=False,
                                       autocast=False, aggregation="none",
                                       name=v.name + "_ema")
                        for v in self._variables]

    def update(self, step):
        """Fold the current variable values into the averages; `step` is the new global step."""
        rate = 1.0 - decay_at(step, self.decay)
        for var, shadow in zip(self._variables, self.shadows):
            shadow.assign_sub(ops.cast(rate, shadow.dtype) * (_value(shadow) - _value(var)))

    def averages(self):
        """{variable path: averaged value as numpy}."""
        return {v.path: ops.convert_to_numpy(s) for v, s in zip(self._variables, self.shadows)}

    def shadow_by_path(self):
        """{variable path: its shadow `keras.Variable`}."""
        return {v.path: s for v, s in zip(self._variables, self.shadows)}

    def copy_to_variables(self):
        """Overwrite the variables with their averages (for evaluation and export only)."""
        for var, shadow in zip(self._variables, self.shadows):
            var.assign(_value(shadow))

    def reset_to_variables(self):
        """Make the averages equal the variables' current values."""
        for var, shadow in zip(self._variables, self.shadows):
            shadow.assign(_value(var))


def _value(variable):
    # A Keras variable's backend value (a tf.Variable, jax.Array or torch tensor); anything
    # else (a plain tf.Variable) is used as it is.
    return variable.value if hasattr(variable, "value") else variable


class MovingAverage(keras.callbacks.Callback):
    """The TF1-style moving average of the trainable weights (`ExponentialMovingAverage`,
    decay 0.999 with warm-up), kept beside the model during `fit`, so ISTA's exact zeros in the
    raw gammas survive. Pass `callback.averages()` to `compress` to keep the averaged weights, as
    the recipe does."""

    def __init__(self, decay=DECAY):
        super().__init__()
        self.decay = decay
        self.ema = None

    def on_train_begin(self, logs=None):
        if self.ema is None:  # a second fit continues the same averages
            self.ema = ExponentialMovingAverage(self.model.trainable_variables, self.decay)

    def on_train_batch_end(self, batch, logs=None):
        # JAX's fit keeps the new weights outside the model until the epoch ends; the average
        # needs them after every step.
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        self.ema.update(self.model.optimizer.iterations)

    def averages(self):
        """{variable path: averaged value}."""
        return self.ema.averages()
