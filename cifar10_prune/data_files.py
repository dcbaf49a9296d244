"""The binary CIFAR-10 release on disk: where its six files are, extracting or downloading them
when they are missing, and validating each before it is read (`data` builds the input pipeline
on them).

The files: ``cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``, each a run of
3073-byte records (one label byte 0-9, then the red, green and blue 32x32 planes, each
row-major). When they are missing, ``cifar-10-binary.tar.gz`` is extracted from, or downloaded
into, ``data_dir``; every failure is a `DataError` that names the file and says where to put
the archive or the files by hand.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

import numpy as np

IMAGE_SIZE = 32
NUM_CLASSES = 10
LABEL_BYTES = 1
IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * 3  # 3072
RECORD_BYTES = LABEL_BYTES + IMAGE_BYTES  # 3073
NUM_EXAMPLES = {"train": 50000, "test": 10000}
DATA_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
TAR_NAME = "cifar-10-binary.tar.gz"
EXTRACTED_DIR = "cifar-10-batches-bin"
SPLIT_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}
ALL_FILES = SPLIT_FILES["train"] + SPLIT_FILES["test"]


class DataError(ValueError):
    """A problem with the CIFAR-10 data on disk (missing, truncated, corrupt, undownloadable).

    Subclasses ValueError so callers that only expect "bad input" errors still catch it; the
    message always names the offending file or directory and says how to fix it.
    """


def check_split(split):
    if split not in SPLIT_FILES:
        raise DataError(
            f"unknown split {split!r}: allowed values are {sorted(SPLIT_FILES)}")
    return split


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


def files_and_counts(data_dir, split, url):
    split = check_split(split)
    directory = _ensure_files(data_dir, SPLIT_FILES[split], url)
    files = [os.path.join(directory, name) for name in SPLIT_FILES[split]]
    return files, [validate_binary_file(f) for f in files]


def binary_files(data_dir, split, url=DATA_URL):
    """Returns the validated binary files of ``split`` ("train" or "test"), in file order.

    Missing files are extracted/downloaded as in :func:`maybe_download_and_extract`.
    """
    return files_and_counts(data_dir, split, url)[0]
