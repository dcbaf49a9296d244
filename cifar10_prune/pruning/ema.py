"""The exponential moving average of the trainable variables that evaluation uses.

The original uses TF1's `tf.train.ExponentialMovingAverage(0.999, num_updates=global_step)`,
whose decay warms up as min(0.999, (1 + t) / (10 + t)). Keras' built-in `use_ema` has no warm-up
and copies the averages into the model at the end of `fit`, which would overwrite the exact zeros
that ISTA produces in the raw gammas; so the averages live here, beside the raw weights.
"""
import keras
import tensorflow as tf

DECAY = 0.999


def decay_at(step, decay=DECAY):
    """TF1's decay for update number `step` (the global step after the training update)."""
    step = tf.cast(step, tf.float32)
    return tf.minimum(decay, (1.0 + step) / (10.0 + step))


class ExponentialMovingAverage(tf.Module):
    """Shadow copies of `variables`, updated as shadow -= (1 - decay_t) * (shadow - value).

    The shadows start as the variables' current values (as TF1's do) and are saved in the same
    checkpoint as the model, under `ema/`.
    """

    def __init__(self, variables, decay=DECAY):
        super().__init__(name="ema")
        self.decay = decay
        self._variables = list(variables)
        self.shadows = [tf.Variable(_value(v), trainable=False, name=v.name + "_ema")
                        for v in self._variables]

    def update(self, step):
        """Fold the current variable values into the averages; `step` is the new global step."""
        rate = 1.0 - decay_at(step, self.decay)
        for var, shadow in zip(self._variables, self.shadows):
            shadow.assign_sub(tf.cast(rate, shadow.dtype) * (shadow - _value(var)))

    def averages(self):
        """{variable path: averaged value as numpy}."""
        return {v.path: s.numpy() for v, s in zip(self._variables, self.shadows)}

    def shadow_by_path(self):
        """{variable path: its shadow tf.Variable}."""
        return {v.path: s for v, s in zip(self._variables, self.shadows)}

    def copy_to_variables(self):
        """Overwrite the variables with their averages (for evaluation and export only)."""
        for var, shadow in zip(self._variables, self.shadows):
            var.assign(shadow)

    def reset_to_variables(self):
        """Make the averages equal the variables' current values."""
        for var, shadow in zip(self._variables, self.shadows):
            shadow.assign(_value(var))


def _value(variable):
    # Keras variables wrap a tf.Variable; reading `.value` works for both kinds.
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
        self.ema.update(self.model.optimizer.iterations)

    def averages(self):
        """{variable path: averaged value}."""
        return self.ema.averages()
