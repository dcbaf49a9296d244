"""`--seed`: one integer behind weight initialization, data order and augmentation.

Unseeded (None) is the original's behaviour: every run draws its own. With a seed, Keras'
global seed (Python, NumPy and TensorFlow) fixes the initial weights, and the input pipeline
gets its own seeds from `derive`.
"""
import keras
import numpy as np


def seed_everything(seed):
    """Set the global seeds from `seed` (None: leave them unset); returns the start-up line."""
    if seed is None:
        return "seed: none (every run draws its own, as the original)"
    keras.utils.set_random_seed(seed)
    return "seed: %d" % seed


def derive(seed, *parts):
    """A seed for one use of `seed`, e.g. derive(seed, stage, start_step) for the data of a
    stage resumed at start_step: equal parts give equal seeds, different parts independent
    ones. None stays None."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])
