"""CIFAR-10 input pipeline (tf.data) for the channel-pruning experiments.

This reproduces the input side of the original TF1 ``cifar10_input.py`` (see
``docs/original.md`` section 2) with ``tf.data`` instead of queue runners:

* Data: the *binary* CIFAR-10 release (``cifar-10-batches-bin/data_batch_{1..5}.bin`` and
  ``test_batch.bin``). Each record is 3073 bytes: one label byte (0-9) followed by 3072 image
  bytes stored as three 32x32 planes (red, green, blue), each row-major. When the files are
  missing, ``cifar-10-binary.tar.gz`` is extracted from, or downloaded into, ``data_dir``.
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
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

import numpy as np
import tensorflow as tf

IMAGE_SIZE = 32
NUM_CLASSES = 10
LABEL_BYTES = 1
IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * 3  # 3072
RECORD_BYTES = LABEL_BYTES + IMAGE_BYTES  # 3073
NUM_EXAMPLES = {"train": 50000, "test": 10000}
DATA_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
SHUFFLE_BUFFER = 20000  # 0.4 of an epoch, as the original's min_after_dequeue

# Training distortion constants of the original (cifar10_input.distorted_inputs).
PAD_SIZE = 40  # zero-pad 32 -> 40, i.e. 4 pixels on each side
MAX_BRIGHTNESS_DELTA = 63.0
CONTRAST_LOWER = 0.2
CONTRAST_UPPER = 1.8

TAR_NAME = "cifar-10-binary.tar.gz"
EXTRACTED_DIR = "cifar-10-batches-bin"
SPLIT_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
ALL_FILES = SPLIT_FILES["train"] + SPLIT_FILES["test"]
EVAL_DATA_SPLITS = {"test": "test", "train_eval": "train"}
SOURCES = ("binary", "tfds")

__all__ = [
    "IMAGE_SIZE", "NUM_CLASSES", "LABEL_BYTES", "IMAGE_BYTES", "RECORD_BYTES", "NUM_EXAMPLES",
    "DATA_URL", "SHUFFLE_BUFFER", "DataError", "maybe_download_and_extract", "binary_files",
    "validate_binary_file", "decode_record", "augment", "augment_batch", "standardize",
    "raw_dataset", "train_dataset", "eval_dataset",
]


class DataError(ValueError):
    """A problem with the CIFAR-10 data on disk (missing, truncated, corrupt, undownloadable).

    Subclasses ValueError so callers that only expect "bad input" errors still catch it; the
    message always names the offending file or directory and says how to fix it.
    """


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


def _check_split(split):
    if split not in SPLIT_FILES:
        raise DataError(
            f"unknown split {split!r}: allowed values are {sorted(SPLIT_FILES)}")
    return split


def _check_source(source):
    if source not in SOURCES:
        raise ValueError(f"unknown data source {source!r}: allowed values are {list(SOURCES)}")
    return source


# --------------------------------------------------------------------------------------------
# Getting the files onto disk
# --------------------------------------------------------------------------------------------

def _placement_help(data_dir):
    """The fix for every 'files not there' error: where to put them by hand."""
    extracted = os.path.join(data_dir, EXTRACTED_DIR)
    return (f"Either put {TAR_NAME} (from {DATA_URL}) at {os.path.join(data_dir, TAR_NAME)}, "
            f"or put the extracted files {', '.join(ALL_FILES)} in {extracted}/ "
            f"(or pass another --data_dir).")


def _missing(directory, names):
    return [n for n in names if not os.path.isfile(os.path.join(directory, n))]


def _extract(tar_path, data_dir):
    """Extracts the binary files of ``tar_path`` into ``data_dir/cifar-10-batches-bin``.

    Extraction goes to a temporary directory first and the .bin files are moved into place
    only once the whole archive has been read, so a truncated or corrupt archive never leaves
    half-written .bin files that would later look like data.
    """
    print(f"Extracting {tar_path} into {data_dir}", flush=True)
    tmp = tempfile.mkdtemp(prefix=".cifar10-extract-", dir=data_dir)
    try:
        try:
            with tarfile.open(tar_path, "r:gz") as tar:
                if hasattr(tarfile, "data_filter"):
                    # "data" refuses absolute paths, '..', device files and links leaving the
                    # destination (PEP 706; Python >= 3.8.17/3.11.4).
                    tar.extractall(tmp, filter="data")
                else:  # pragma: no cover - old Pythons without extraction filters
                    root = os.path.realpath(tmp)
                    for member in tar.getmembers():
                        target = os.path.realpath(os.path.join(tmp, member.name))
                        if (not (member.isfile() or member.isdir())
                                or os.path.commonpath([root, target]) != root):
                            raise tarfile.TarError(f"unsafe member {member.name!r}")
                    tar.extractall(tmp)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(
                f"{tar_path} is corrupt or not the CIFAR-10 binary archive ({e}). Delete it and "
                f"download it again. {_placement_help(data_dir)}") from e
        src = os.path.join(tmp, EXTRACTED_DIR)
        missing = _missing(src, ALL_FILES)
        if missing:
            raise DataError(
                f"{tar_path} does not contain {EXTRACTED_DIR}/{missing[0]} (missing: "
                f"{', '.join(missing)}); it is not the CIFAR-10 *binary* archive "
                f"({TAR_NAME}). {_placement_help(data_dir)}")
        dest = os.path.join(data_dir, EXTRACTED_DIR)
        os.makedirs(dest, exist_ok=True)
        for name in os.listdir(src):
            os.replace(os.path.join(src, name), os.path.join(dest, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download(url, tar_path, data_dir):
    """Downloads ``url`` to ``tar_path`` via a ``.part`` file, renamed only on success."""
    part = tar_path + ".part"
    name = os.path.basename(tar_path)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            total = response.headers.get("Content-Length") if response.headers else None
            total = int(total) if total and total.isdigit() else 0
            done = 0
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if total:
                    msg = f"Downloading {name} {100.0 * done / total:.1f}%"
                else:
                    msg = f"Downloading {name} {done / 1e6:.1f} MB"
                sys.stdout.write("\r" + msg)
                sys.stdout.flush()
        sys.stdout.write("\n")
        if total and done != total:
            raise OSError(f"connection closed after {done} of {total} bytes")
        os.replace(part, tar_path)
    except (urllib.error.URLError, OSError, ValueError) as e:
        # ValueError: a malformed url. URLError is an OSError subclass, listed for clarity.
        try:
            os.remove(part)
        except OSError:
            pass
        raise DataError(
            f"CIFAR-10 is not in {os.path.join(data_dir, EXTRACTED_DIR)} and downloading it "
            f"from {url} failed ({e}). {_placement_help(data_dir)}") from e
    print(f"Downloaded {name} ({done} bytes)", flush=True)


def _ensure_files(data_dir, names, url):
    """Makes sure ``names`` exist in ``data_dir/cifar-10-batches-bin``; returns that dir."""
    data_dir = os.fspath(data_dir)
    extracted = os.path.join(data_dir, EXTRACTED_DIR)
    if not _missing(extracted, names):
        return extracted
    created = not os.path.exists(data_dir)
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create data_dir {data_dir} ({e}). {_placement_help(data_dir)}"
                        ) from e
    tar_path = os.path.join(data_dir, TAR_NAME)
    if not os.path.isfile(tar_path):
        try:
            _download(url, tar_path, data_dir)
        except DataError:
            if created:  # a run that fails leaves nothing behind
                os.rmdir(data_dir)
            raise
    _extract(tar_path, data_dir)
    missing = _missing(extracted, names)
    if missing:  # only reachable if something removed the files meanwhile
        raise DataError(f"{os.path.join(extracted, missing[0])} is missing after extracting "
                        f"{tar_path}. {_placement_help(data_dir)}")
    return extracted


def maybe_download_and_extract(data_dir, url=DATA_URL):
    """Makes the binary CIFAR-10 files available and returns ``data_dir/cifar-10-batches-bin``.

    Nothing is done if that directory already holds all six .bin files. Otherwise
    ``data_dir/cifar-10-binary.tar.gz`` is extracted, after downloading it from ``url`` if it
    is not there either.

    Raises:
      DataError: the download failed (e.g. offline) or the archive is corrupt; the message
        says where to put the archive or the extracted files by hand.
    """
    return _ensure_files(data_dir, ALL_FILES, url)


# --------------------------------------------------------------------------------------------
# Validating the files
# --------------------------------------------------------------------------------------------

# (realpath, size, mtime_ns) -> record count. Validation reads every label byte; datasets
# are built several times per run (train, eval, BN re-estimation), so remember the answer
# for files that have not changed.
_validated = {}


def validate_binary_file(path):
    """Checks one CIFAR-10 binary file and returns its number of records.

    Raises:
      DataError (naming the file) if it is missing, empty, not a whole number of 3073-byte
      records, or holds a label byte above 9.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"CIFAR-10 binary file {path} does not exist. "
                        f"{_placement_help(os.path.dirname(os.path.dirname(path)) or '.')}")
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key in _validated:
        return _validated[key]
    size = stat.st_size
    if size == 0:
        raise DataError(f"CIFAR-10 binary file {path} is empty; delete it (and re-extract "
                        f"{TAR_NAME}) or replace it with the real file.")
    if size % RECORD_BYTES:
        raise DataError(
            f"{path} is truncated or not a CIFAR-10 binary file: {size} bytes is not a "
            f"multiple of the {RECORD_BYTES}-byte record. Delete it and re-extract {TAR_NAME}.")
    n = size // RECORD_BYTES
    # A read-only memmap viewed as [n, 3073]: column 0 is the label byte of each record, so
    # only the labels are gathered (strided) instead of decoding the file.
    records = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, RECORD_BYTES))
    labels = np.array(records[:, 0])
    del records
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path} is not a CIFAR-10 binary file: record {i} has label byte {labels[i]} "
            f"(labels must be 0-{NUM_CLASSES - 1}; {bad.size} bad record(s) in total). "
            f"Delete it and re-extract {TAR_NAME} (the CIFAR-100 binary format is different).")
    _validated[key] = n
    return n


def _files_and_counts(data_dir, split, url):
    split = _check_split(split)
    directory = _ensure_files(data_dir, SPLIT_FILES[split], url)
    files = [os.path.join(directory, name) for name in SPLIT_FILES[split]]
    return files, [validate_binary_file(f) for f in files]


def binary_files(data_dir, split, url=DATA_URL):
    """Returns the validated binary files of ``split`` ("train" or "test"), in file order.

    Missing files are extracted/downloaded as in :func:`maybe_download_and_extract`.
    """
    return _files_and_counts(data_dir, split, url)[0]


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
    _check_split(split)
    if source == "tfds":
        return _tfds_dataset(data_dir, split)
    files, counts = _files_and_counts(data_dir, split, url)
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
        files, _ = _files_and_counts(data_dir, "train", url)
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
