"""CIFAR-10 input pipeline (tf.data) for the channel-pruning experiments.

This reproduces the input side of the original TF1 ``cifar10_input.py`` (see
``docs/original.md`` section 2) with ``tf.data`` instead of queue runners:

* Data: the *binary* CIFAR-10 release (``cifar-10-batches-bin/data_batch_{1..5}.bin`` and
  ``test_batch.bin``), found, extracted or downloaded and validated by ``data_files`` (whose
  names this module re-exports). Each record is 3073 bytes: one label byte (0-9) followed by
  3072 image bytes stored as three 32x32 planes (red, green, blue), each row-major.
  Alternatively ``source="tfds"`` reads the same images through ``tensorflow_datasets``.
* Training images, in exactly this order: cast to float32; zero-pad to 40x40 (4 px each side);
  random 32x32 crop; random left-right flip; random brightness (max delta 63); random contrast
  (factor in [0.2, 1.8)); per-image standardization. Each epoch reads the five training files
  in a new random order (the original's ``string_input_producer``); examples are shuffled with
  a buffer of 20,000 (0.4 of an epoch, the original's ``min_after_dequeue``) that, like the
  original's queue, runs across epoch ends.
* Evaluation images: per-image standardization only, in file order, every example exactly
  once: the last partial batch is kept (the TF1 tutorial code the original derives from ran
  ``ceil(num_examples / batch_size)`` full batches, re-reading some examples whenever
  ``batch_size`` does not divide ``num_examples``).

Speed / design choice
---------------------
:func:`augment` is the per-example reference implementation built from the ``tf.image`` ops
the original used. :func:`train_dataset` does *not* map it per example: it shuffles the raw
3073-byte records, batches them, then decodes each batch and applies :func:`augment_batch`,
which draws the same random variables per example (crop offset, flip, brightness delta,
contrast factor) and applies the same arithmetic to the whole batch with vectorized ops. The
results are identical in distribution (and, for equal draws, numerically;
``tests/test_data.py`` checks this against the ``tf.image`` ops). Measured on the 2-core
development machine, real CIFAR-10, batch 125, after filling the shuffle buffer:

* batched (this module): ~33,000-41,000 images/s, ~45 CPU-microseconds per image
  (~18,700 images/s pinned to one core);
* per-example ``map(augment)`` then ``batch``: ~11,000-14,000 images/s, ~125-150
  CPU-microseconds per image (~9,400 images/s on one core).

Both exceed the ~250 images/s the model trains at on that machine; the batched one was kept
because it leaves about three times more CPU to the training step sharing those two cores.

Randomness is stateless: every batch gets a seed from ``tf.data.Dataset.random``, so with
``seed`` set the augmented stream is reproducible regardless of ``tf.data`` parallelism.
"""

from __future__ import annotations

import operator
import os

import tensorflow as tf

# The files on disk, re-exported: `data.DataError`, `data.binary_files` ... are the API.
from cifar10_prune.data_files import (  # noqa: F401
    ALL_FILES, DATA_URL, IMAGE_BYTES, IMAGE_SIZE, LABEL_BYTES, NUM_CLASSES, NUM_EXAMPLES,
    RECORD_BYTES, SPLIT_FILES, DataError, binary_files, check_split, files_and_counts,
    maybe_download_and_extract, validate_binary_file)

SHUFFLE_BUFFER = 20000  # 0.4 of an epoch, as the original's min_after_dequeue

# Training distortion constants of the original (cifar10_input.distorted_inputs).
PAD_SIZE = 40  # zero-pad 32 -> 40, i.e. 4 pixels on each side
MAX_BRIGHTNESS_DELTA = 63.0
CONTRAST_LOWER = 0.2
CONTRAST_UPPER = 1.8

EVAL_DATA_SPLITS = {"test": "test", "train_eval": "train"}
SOURCES = ("binary", "tfds")

__all__ = [
    "IMAGE_SIZE", "NUM_CLASSES", "LABEL_BYTES", "IMAGE_BYTES", "RECORD_BYTES", "NUM_EXAMPLES",
    "DATA_URL", "SHUFFLE_BUFFER", "DataError", "maybe_download_and_extract", "binary_files",
    "validate_binary_file", "decode_record", "augment", "augment_batch", "standardize",
    "raw_dataset", "train_dataset", "eval_dataset",
]


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------

def _positive_int(value, name):
    """Returns ``value`` as an int, or raises ValueError naming ``name`` if it is not >= 1."""
    # bool is an int subclass, but batch_size=True is certainly a mistake.
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)  # accepts int and NumPy integers, refuses 2.5 and "8"
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value}")
    return value


def _check_source(source):
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}: allowed values are {list(SOURCES)}")
    return source


# --------------------------------------------------------------------------------------------
# Decoding and preprocessing
# --------------------------------------------------------------------------------------------

def decode_record(record):
    """Decodes CIFAR-10 binary record(s) into ``(uint8 image [32, 32, 3], int32 label)``.

    ``record`` is a scalar string of 3073 bytes (label byte, then the red, green and blue
    32x32 planes, each row-major) or a 1-D batch of such strings, giving images
    ``[B, 32, 32, 3]`` and labels ``[B]``.
    """
    record = tf.convert_to_tensor(record, dtype=tf.string)
    raw = tf.io.decode_raw(record, tf.uint8)  # [..., 3073]
    label = tf.cast(raw[..., 0], tf.int32)
    planes = raw[..., LABEL_BYTES:RECORD_BYTES]
    if record.shape.rank == 0:
        image = tf.transpose(tf.reshape(planes, [3, IMAGE_SIZE, IMAGE_SIZE]), [1, 2, 0])
    elif record.shape.rank == 1:
        # A static batch size (from batch(drop_remainder=True)) is kept in the output shape.
        batch = record.shape[0] if record.shape[0] is not None else -1
        image = tf.transpose(tf.reshape(planes, [batch, 3, IMAGE_SIZE, IMAGE_SIZE]), [0, 2, 3, 1])
    else:
        raise ValueError(f"decode_record expects a scalar or 1-D string tensor, got shape "
                         f"{record.shape}")
    return image, label


def _check_image_shape(image, rank, what):
    expected = [IMAGE_SIZE, IMAGE_SIZE, 3]
    shape = image.shape
    if shape.rank is not None and (shape.rank != rank
                                   or not shape[-3:].is_compatible_with(expected)):
        raise ValueError(f"{what} expects {'[B, ' if rank == 4 else '['}32, 32, 3] images, "
                         f"got shape {shape}")


def standardize(image):
    """Eval preprocessing: cast to float32 and apply per-image standardization only.

    Works on one image [32, 32, 3] or a batch [B, 32, 32, 3] (each image standardized on its
    own): ``(x - mean) / max(std, 1 / sqrt(3072))``.
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank not in (None, 3, 4):
        raise ValueError(f"standardize expects [32, 32, 3] or [B, 32, 32, 3], got {image.shape}")
    return tf.image.per_image_standardization(tf.cast(image, tf.float32))


def augment(image, seed=None):
    """Training distortion of one image, the per-example reference (see module docstring).

    In exactly the original's order: cast to float32; zero-pad to 40x40; random 32x32x3 crop;
    random left-right flip; random brightness (max delta 63); random contrast (0.2 to 1.8);
    per-image standardization.

    Args:
      image: [32, 32, 3] image of any real dtype (uint8 as decoded).
      seed: optional shape-[2] int seed. With it, stateless ops make the result a pure function
        of (image, seed); without it, the stateful ``tf.image.random_*`` ops are used.
    Returns:
      float32 [32, 32, 3].

    Note: adding one brightness delta to every pixel shifts the mean but not the standard
    deviation, so the final per-image standardization cancels it (up to float rounding);
    random brightness has no effect in this order. It is kept because the original does it.
    """
    image = tf.convert_to_tensor(image)
    _check_image_shape(image, 3, "augment")
    x = tf.cast(image, tf.float32)
    x = tf.image.resize_with_crop_or_pad(x, PAD_SIZE, PAD_SIZE)
    size = [IMAGE_SIZE, IMAGE_SIZE, 3]
    if seed is None:
        x = tf.image.random_crop(x, size)
        x = tf.image.random_flip_left_right(x)
        x = tf.image.random_brightness(x, max_delta=MAX_BRIGHTNESS_DELTA)
        x = tf.image.random_contrast(x, lower=CONTRAST_LOWER, upper=CONTRAST_UPPER)
    else:
        s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
        x = tf.image.stateless_random_crop(x, size, seed=s[0])
        x = tf.image.stateless_random_flip_left_right(x, seed=s[1])
        x = tf.image.stateless_random_brightness(x, MAX_BRIGHTNESS_DELTA, seed=s[2])
        x = tf.image.stateless_random_contrast(x, CONTRAST_LOWER, CONTRAST_UPPER, seed=s[3])
    return tf.image.per_image_standardization(x)


def _distort_batch(images, offset_y, offset_x, flip, delta, factor):
    """Applies given per-example distortion parameters to a batch [B, 32, 32, 3].

    Same arithmetic as :func:`augment` with the draws made explicit (this is what the tests
    compare against the ``tf.image`` ops):
      offset_y, offset_x: int32 [B] in [0, 8], top-left corner of the crop in the padded image.
      flip: bool [B], mirror left-right after cropping.
      delta: float32 [B], added to every pixel (tf.image.adjust_brightness on floats).
      factor: float32 [B], contrast factor about each channel's mean (adjust_contrast).
    """
    x = tf.cast(images, tf.float32)
    pad = (PAD_SIZE - IMAGE_SIZE) // 2
    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])  # zeros, like resize_with_crop_or_pad
    r = tf.range(IMAGE_SIZE, dtype=tf.int32)
    rows = offset_y[:, None] + r[None, :]  # [B, 32]
    # Cropping then flipping column j equals reading column (offset + 31 - j) of the padded
    # image, so crop and flip become a single gather.
    cols = tf.where(flip[:, None], offset_x[:, None] + (IMAGE_SIZE - 1) - r[None, :],
                    offset_x[:, None] + r[None, :])
    x = tf.gather(x, rows, axis=1, batch_dims=1)  # [B, 32, 40, 3]
    x = tf.gather(x, cols, axis=2, batch_dims=1)  # [B, 32, 32, 3]
    x = x + delta[:, None, None, None]
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)  # per image and channel
    x = (x - mean) * factor[:, None, None, None] + mean
    return tf.image.per_image_standardization(x)


def augment_batch(images, seed):
    """Batched :func:`augment`: independent random distortion of every image of a batch.

    Draws, per example, exactly the random variables of the ``tf.image`` ops (crop offsets
    uniform in {0..8}, flip with probability 1/2, brightness delta uniform in [-63, 63),
    contrast factor uniform in [0.2, 1.8)) and applies them with vectorized ops.

    Args:
      images: [B, 32, 32, 3] of any real dtype.
      seed: shape-[2] int seed; the output is a pure function of (images, seed).
    Returns:
      float32 [B, 32, 32, 3].
    """
    images = tf.convert_to_tensor(images)
    _check_image_shape(images, 4, "augment_batch")
    # The static batch size, when known (drop_remainder=True), keeps the output's shape static
    # for Keras; the gathers of _distort_batch would otherwise lose it.
    batch_size = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
    return _distort_batch(images, **_draw_distortions(batch_size, seed))


def _draw_distortions(batch_size, seed):
    """Per-example random draws of augment_batch, distributed as in the tf.image ops."""
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    limit = PAD_SIZE - IMAGE_SIZE + 1  # 9 possible offsets, 0..8, as tf.image.random_crop
    offsets = tf.random.stateless_uniform([2, batch_size], s[0], minval=0, maxval=limit,
                                          dtype=tf.int32)
    return dict(
        offset_y=offsets[0],
        offset_x=offsets[1],
        flip=tf.random.stateless_uniform([batch_size], s[1]) < 0.5,  # as random_flip_left_right
        delta=tf.random.stateless_uniform([batch_size], s[2], -MAX_BRIGHTNESS_DELTA,
                                          MAX_BRIGHTNESS_DELTA),
        factor=tf.random.stateless_uniform([batch_size], s[3], CONTRAST_LOWER, CONTRAST_UPPER),
    )


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------

def _tfds_dataset(data_dir, split):
    import tensorflow_datasets as tfds  # imported lazily: slow, and only this source needs it

    try:
        ds, info = tfds.load("cifar10", split=split, data_dir=os.fspath(data_dir),
                             as_supervised=True, shuffle_files=False, with_info=True)
    except Exception as e:  # tfds raises many types (download, checksum, missing files)
        raise DataError(
            f"tensorflow_datasets could not load 'cifar10' split {split!r} from data_dir "
            f"{data_dir} ({type(e).__name__}: {e}). Prepare it there once with network access, "
            f"or use source='binary'.") from e
    try:
        n = int(info.splits[split].num_examples)
    except (KeyError, TypeError, ValueError):
        n = 0
    n = n or NUM_EXAMPLES[split]
    ds = ds.map(lambda image, label: (image, tf.cast(label, tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds, n


def raw_dataset(data_dir, split, source="binary", url=DATA_URL):
    """Undistorted examples of ``split`` in file order.

    Args:
      data_dir: directory holding ``cifar-10-batches-bin`` (binary) or the TFDS data (tfds).
      split: "train" or "test".
      source: "binary" (the original's files) or "tfds" (``tfds.load("cifar10")``).
      url: where to download the binary archive from if it is missing.
    Returns:
      (dataset of (uint8 [32, 32, 3], int32 label), number of examples).
    """
    _check_source(source)
    check_split(split)
    if source == "tfds":
        return _tfds_dataset(data_dir, split)
    files, counts = files_and_counts(data_dir, split, url)
    # num_parallel_reads unset: files are read one after the other, keeping file order.
    ds = tf.data.FixedLengthRecordDataset(files, RECORD_BYTES)
    ds = ds.map(decode_record, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds, int(sum(counts))


def train_dataset(data_dir, batch_size, source="binary", shuffle_buffer=SHUFFLE_BUFFER,
                  seed=None, url=DATA_URL):
    """Endless, shuffled, distorted training batches ``(float32 [B,32,32,3], int32 [B])``.

    Reads the training files in a new random order every epoch, forever, shuffles the raw
    records (buffer ``shuffle_buffer``, across epoch ends), batches with ``drop_remainder=True`` (static batch shape), decodes and
    applies :func:`augment_batch` to each batch in parallel, then prefetches. An integer
    ``seed`` makes both the order and the distortions reproducible.
    """
    batch_size = _positive_int(batch_size, "batch_size")
    shuffle_buffer = _positive_int(shuffle_buffer, "shuffle_buffer")
    if seed is not None:
        try:
            seed = operator.index(seed)
        except TypeError:
            raise ValueError(f"seed must be an integer or None, got {seed!r}") from None
    _check_source(source)
    # Three random streams (file order, example order, distortions) drawn from one seed but
    # not equal to each other.
    seeds = [None] * 3 if seed is None else [seed, seed + 1, seed + 2]
    if source == "binary":
        # As the original's string_input_producer: every epoch reads the five files in a new
        # random order, each one front to back. Shuffling the raw 3073-byte records and
        # decoding whole batches keeps per-example decoding, the most expensive step of the
        # pipeline, out (see the module docstring).
        files = binary_files(data_dir, "train", url)
        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(
            len(files), seed=seeds[0], reshuffle_each_iteration=True).repeat()
        ds = ds.flat_map(lambda f: tf.data.FixedLengthRecordDataset(f, RECORD_BYTES))
        decode = decode_record
    else:
        ds, _ = raw_dataset(data_dir, "train", source=source, url=url)
        ds = ds.repeat()
        decode = None
    # After repeat, as the original's shuffle_batch queue: the buffer runs across epoch ends.
    ds = ds.shuffle(shuffle_buffer, seed=seeds[1])
    ds = ds.batch(batch_size, drop_remainder=True)
    # One stateless seed per batch.
    batch_seeds = tf.data.Dataset.random(seed=seeds[2]).batch(2, drop_remainder=True)

    def distort(batch, batch_seed):
        images, labels = decode(batch) if decode is not None else batch
        return augment_batch(images, batch_seed), labels

    ds = tf.data.Dataset.zip((ds, batch_seeds)).map(distort, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(data_dir, batch_size, eval_data="test", num_examples=10000, source="binary",
                 url=DATA_URL):
    """Standardized evaluation batches in file order, each example exactly once.

    Args:
      eval_data: "test" (test_batch.bin) or "train_eval" (the five training files).
      num_examples: evaluate the first ``min(num_examples, size of the split)`` examples.
    Returns:
      (dataset of (float32 [b,32,32,3], int32 [b]) with b = batch_size except a smaller last
      batch, number of examples n).
    """
    batch_size = _positive_int(batch_size, "batch_size")
    num_examples = _positive_int(num_examples, "num_examples")
    if eval_data not in EVAL_DATA_SPLITS:
        raise ValueError(f"unknown eval_data {eval_data!r} (flag --eval_data): allowed values "
                         f"are {list(EVAL_DATA_SPLITS)}")
    ds, size = raw_dataset(data_dir, EVAL_DATA_SPLITS[eval_data], source=source, url=url)
    n = min(num_examples, size)
    ds = ds.take(n).batch(batch_size)  # the last, partial batch is kept
    # standardize works per image on a batch, so one vectorized call per batch.
    ds = ds.map(lambda images, labels: (standardize(images), labels),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE), n
