"""Tests of cifar10_prune.data on tiny hand-made CIFAR-10 binary files (never the network)."""

import io
import os
import socket
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from cifar10_prune import data

# Labels of the tiny files: 12 training records over the 5 files (file order matters), 7 test.
TRAIN_LABELS = {
    "data_batch_1.bin": [3, 1, 4],
    "data_batch_2.bin": [1, 5],
    "data_batch_3.bin": [9, 2],
    "data_batch_4.bin": [6, 5, 3, 0],
    "data_batch_5.bin": [8],
}
TEST_LABELS = [7, 0, 2, 9, 4, 4, 1]
ALL_TRAIN_LABELS = [l for name in data.SPLIT_FILES["train"] for l in TRAIN_LABELS[name]]
UNREACHABLE = "file:///nonexistent/cifar.tar.gz"  # fails at once, offline, no network involved


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Makes any Python-level network connection fail loudly instead of downloading."""
    def refuse(*args, **kwargs):
        raise AssertionError("tests must not touch the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def make_image(k):
    """A uint8 HWC image, unique per index k, whose R, G and B planes all differ."""
    i, j = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    r = (7 * k + i) % 256
    g = (3 * j + 11 * k + 100) % 256
    b = (i * j + 5 * k + 200) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def record_bytes(image, label):
    # CIFAR layout: label byte, then the R, G, B planes (CHW), each row-major.
    return bytes([label]) + np.ascontiguousarray(image.transpose(2, 0, 1)).tobytes()


def write_cifar(root, train=TRAIN_LABELS, test=TEST_LABELS):
    """Writes tiny binary files into root/cifar-10-batches-bin; returns {name: [(image, label)]}."""
    d = os.path.join(root, "cifar-10-batches-bin")
    os.makedirs(d, exist_ok=True)
    files = dict(train)
    files["test_batch.bin"] = test
    k = 0
    written = {}
    for name, labels in files.items():
        recs = []
        for label in labels:
            recs.append((make_image(k), label))
            k += 1
        with open(os.path.join(d, name), "wb") as f:
            f.write(b"".join(record_bytes(im, l) for im, l in recs))
        written[name] = recs
    return written


def expected(written, split):
    recs = [r for name in data.SPLIT_FILES[split] for r in written[name]]
    return np.stack([im for im, _ in recs]), np.array([l for _, l in recs])


def np_standardize(x):
    x = np.asarray(x, np.float64)
    return (x - x.mean()) / max(x.std(), 1.0 / np.sqrt(x.size))


def make_tar(path, written, prefix="cifar-10-batches-bin/"):
    with tarfile.open(path, "w:gz") as tar:
        for name, recs in written.items():
            payload = b"".join(record_bytes(im, l) for im, l in recs)
            info = tarfile.TarInfo(prefix + name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def cifar(tmp_path):
    return str(tmp_path), write_cifar(str(tmp_path))


# ----------------------------------------------------------------------------------------------
# Decoding and raw datasets
# ----------------------------------------------------------------------------------------------

def test_constants():
    assert data.RECORD_BYTES == data.LABEL_BYTES + data.IMAGE_BYTES == 3073
    assert data.NUM_EXAMPLES == {"train": 50000, "test": 10000}
    assert issubclass(data.DataError, ValueError)


def test_decode_record_is_hwc():
    image = np.zeros([32, 32, 3], np.uint8)
    image[..., 0] = 10  # red plane
    image[..., 1] = 20  # green plane
    image[..., 2] = np.arange(32)[None, :]  # blue plane varies along the row (width)
    image[5, 7, 0] = 99  # one distinctive red pixel at row 5, column 7
    decoded, label = data.decode_record(tf.constant(record_bytes(image, 6)))
    assert decoded.dtype == tf.uint8 and decoded.shape == (32, 32, 3)
    assert label.dtype == tf.int32 and int(label) == 6
    np.testing.assert_array_equal(decoded.numpy(), image)
    assert decoded[5, 7, 0] == 99 and decoded[7, 5, 0] == 10


def test_decode_record_batch():
    images = [make_image(1), make_image(2)]
    recs = tf.constant([record_bytes(images[0], 1), record_bytes(images[1], 8)])
    decoded, labels = data.decode_record(recs)
    np.testing.assert_array_equal(decoded.numpy(), np.stack(images))
    np.testing.assert_array_equal(labels.numpy(), [1, 8])


@pytest.mark.parametrize("split", ["train", "test"])
def test_raw_dataset_binary_file_order(cifar, split):
    root, written = cifar
    ds, n = data.raw_dataset(root, split, url=UNREACHABLE)
    images, labels = expected(written, split)
    assert n == len(labels)
    got = list(ds.as_numpy_iterator())
    assert len(got) == n
    np.testing.assert_array_equal(np.stack([g[0] for g in got]), images)
    np.testing.assert_array_equal([g[1] for g in got], labels)
    assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.int32


def test_binary_files_in_order(cifar):
    root, _ = cifar
    d = os.path.join(root, "cifar-10-batches-bin")
    assert data.binary_files(root, "train", url=UNREACHABLE) == [
        os.path.join(d, f"data_batch_{i}.bin") for i in range(1, 6)]
    assert data.binary_files(root, "test", url=UNREACHABLE) == [os.path.join(d, "test_batch.bin")]
    assert data.maybe_download_and_extract(root, url=UNREACHABLE) == d  # present: no download


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------

def test_missing_data_and_failed_download(tmp_path):
    root = str(tmp_path / "nothing_here")
    with pytest.raises(data.DataError) as e:
        data.maybe_download_and_extract(root, url=UNREACHABLE)
    msg = str(e.value)
    assert "download" in msg and UNREACHABLE in msg
    assert os.path.join(root, "cifar-10-binary.tar.gz") in msg  # where to put the archive
    assert os.path.join(root, "cifar-10-batches-bin") in msg  # or the extracted files
    assert "data_batch_1.bin" in msg
    assert not os.path.exists(os.path.join(root, "cifar-10-binary.tar.gz.part"))
    assert not os.path.exists(os.path.join(root, "cifar-10-binary.tar.gz"))
    with pytest.raises(data.DataError):
        data.train_dataset(root, 4, url=UNREACHABLE)


def test_truncated_file(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(data.DataError, match="not a multiple of the 3073-byte record") as e:
        data.validate_binary_file(str(path))
    assert str(path) in str(e.value) and "6151 bytes" in str(e.value)


def test_empty_and_missing_file(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(data.DataError, match="empty") as e:
        data.validate_binary_file(str(path))
    assert str(path) in str(e.value)
    with pytest.raises(data.DataError, match="does not exist") as e:
        data.validate_binary_file(str(tmp_path / "absent.bin"))
    assert "absent.bin" in str(e.value)


def test_bad_label(tmp_path):
    path = tmp_path / "labels.bin"
    path.write_bytes(record_bytes(make_image(0), 3) + record_bytes(make_image(1), 12))
    with pytest.raises(data.DataError) as e:
        data.validate_binary_file(str(path))
    msg = str(e.value)
    assert str(path) in msg and "record 1" in msg and "label byte 12" in msg


def test_validate_counts_records(tmp_path):
    path = tmp_path / "ok.bin"
    path.write_bytes(b"".join(record_bytes(make_image(k), k) for k in range(4)))
    assert data.validate_binary_file(str(path)) == 4


def test_bad_file_in_data_dir_is_reported_by_datasets(cifar):
    root, _ = cifar
    bad = os.path.join(root, "cifar-10-batches-bin", "data_batch_3.bin")
    with open(bad, "ab") as f:
        f.write(b"xyz")  # now truncated
    with pytest.raises(data.DataError) as e:
        data.binary_files(root, "train", url=UNREACHABLE)
    assert bad in str(e.value)
    with pytest.raises(data.DataError):
        data.train_dataset(root, 4, url=UNREACHABLE)
    data.eval_dataset(root, 4, url=UNREACHABLE)  # the test split is still fine


def test_bad_arguments(cifar):
    root, _ = cifar
    with pytest.raises(ValueError, match="'train'.*'test'|'test'.*'train'"):
        data.raw_dataset(root, "validation", url=UNREACHABLE)
    with pytest.raises(ValueError, match="validation"):
        data.binary_files(root, "validation", url=UNREACHABLE)
    with pytest.raises(ValueError, match="eval_data.*'test'.*'train_eval'"):
        data.eval_dataset(root, 4, eval_data="train", url=UNREACHABLE)
    with pytest.raises(ValueError, match="source.*'binary'.*'tfds'"):
        data.raw_dataset(root, "train", source="jpeg", url=UNREACHABLE)
    with pytest.raises(ValueError, match="source"):
        data.train_dataset(root, 4, source="jpeg", url=UNREACHABLE)
    with pytest.raises(ValueError, match="batch_size"):
        data.train_dataset(root, 0, url=UNREACHABLE)
    with pytest.raises(ValueError, match="batch_size"):
        data.eval_dataset(root, 0, url=UNREACHABLE)
    with pytest.raises(ValueError, match="batch_size"):
        data.eval_dataset(root, 2.5, url=UNREACHABLE)
    with pytest.raises(ValueError, match="num_examples"):
        data.eval_dataset(root, 4, num_examples=0, url=UNREACHABLE)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        data.train_dataset(root, 4, shuffle_buffer=0, url=UNREACHABLE)
    with pytest.raises(ValueError, match="augment"):
        data.augment(tf.zeros([28, 28, 3]))


# ----------------------------------------------------------------------------------------------
# Extraction and download
# ----------------------------------------------------------------------------------------------

def test_extracts_existing_tar(tmp_path, capsys):
    src = tmp_path / "src"
    written = write_cifar(str(src))
    root = tmp_path / "data"
    root.mkdir()
    make_tar(str(root / "cifar-10-binary.tar.gz"), written)
    d = data.maybe_download_and_extract(str(root), url=UNREACHABLE)
    assert d == str(root / "cifar-10-batches-bin")
    assert sorted(os.listdir(d)) == sorted(data.ALL_FILES)
    assert "Extracting" in capsys.readouterr().out
    assert [p for p in os.listdir(root) if p.startswith(".")] == []  # temp dir cleaned up
    ds, n = data.raw_dataset(str(root), "test", url=UNREACHABLE)
    images, labels = expected(written, "test")
    got = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([g[0] for g in got]), images)
    np.testing.assert_array_equal([g[1] for g in got], labels)


def test_download_from_url(tmp_path, capsys):
    # A file:// url exercises the download path (progress, .part file, rename) offline.
    written = write_cifar(str(tmp_path / "src"))
    make_tar(str(tmp_path / "mirror.tar.gz"), written)
    root = tmp_path / "data"
    ds, n = data.raw_dataset(str(root), "train", url=(tmp_path / "mirror.tar.gz").as_uri())
    assert n == len(ALL_TRAIN_LABELS)
    assert [int(l) for _, l in ds] == ALL_TRAIN_LABELS
    assert "Downloading cifar-10-binary.tar.gz 100.0%" in capsys.readouterr().out
    assert (root / "cifar-10-binary.tar.gz").is_file()
    assert not (root / "cifar-10-binary.tar.gz.part").exists()


def test_corrupt_tar(tmp_path):
    written = write_cifar(str(tmp_path / "src"))
    good = tmp_path / "good.tar.gz"
    make_tar(str(good), written)
    root = tmp_path / "data"
    root.mkdir()
    tar_path = root / "cifar-10-binary.tar.gz"
    tar_path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated gzip
    with pytest.raises(data.DataError, match="corrupt") as e:
        data.maybe_download_and_extract(str(root), url=UNREACHABLE)
    assert str(tar_path) in str(e.value)
    # Nothing half-extracted is left to be mistaken for data later.
    assert not (root / "cifar-10-batches-bin").exists()
    assert sorted(os.listdir(root)) == ["cifar-10-binary.tar.gz"]

    tar_path.write_bytes(b"this is not a gzip file at all")
    with pytest.raises(data.DataError, match="corrupt"):
        data.maybe_download_and_extract(str(root), url=UNREACHABLE)


def test_tar_without_expected_files_and_unsafe_members(tmp_path):
    written = write_cifar(str(tmp_path / "src"))
    root = tmp_path / "data"
    root.mkdir()
    make_tar(str(root / "cifar-10-binary.tar.gz"), written, prefix="wrong-dir/")
    with pytest.raises(data.DataError, match="does not contain"):
        data.maybe_download_and_extract(str(root), url=UNREACHABLE)
    make_tar(str(root / "cifar-10-binary.tar.gz"), written, prefix="../")
    with pytest.raises(data.DataError, match="cifar-10-binary.tar.gz"):
        data.maybe_download_and_extract(str(root), url=UNREACHABLE)
    assert not (tmp_path / "test_batch.bin").exists()  # nothing escaped data_dir


# ----------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------

def test_standardize_matches_numpy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=[3, 32, 32, 3]).astype(np.uint8)
    for im in images:
        out = data.standardize(im)
        assert out.dtype == tf.float32 and out.shape == (32, 32, 3)
        np.testing.assert_allclose(out.numpy(), np_standardize(im), rtol=1e-4, atol=1e-4)
    batch = data.standardize(images).numpy()  # each image of a batch on its own
    np.testing.assert_allclose(batch, np.stack([np_standardize(im) for im in images]),
                               rtol=1e-4, atol=1e-4)


def test_standardize_std_floor():
    # One pixel differs by 1: std = sqrt(p(1-p)) with p = 1/3072 is just below the floor
    # 1/sqrt(3072), so the floor (not the std) must be the divisor.
    im = np.full([32, 32, 3], 50, np.uint8)
    im[0, 0, 0] = 51
    x = im.astype(np.float64)
    assert x.std() < 1 / np.sqrt(3072)
    out = data.standardize(im).numpy()
    np.testing.assert_allclose(out, (x - x.mean()) * np.sqrt(3072), rtol=1e-3, atol=1e-4)
    assert not np.allclose(out, (x - x.mean()) / x.std(), rtol=1e-3)
    # A constant image gives zeros, not NaN.
    np.testing.assert_array_equal(data.standardize(np.full([32, 32, 3], 9, np.uint8)), 0.0)


def test_augment_output_statistics():
    rng = np.random.default_rng(1)
    im = rng.integers(0, 256, size=[32, 32, 3]).astype(np.uint8)
    for seed in [None, tf.constant([1, 2])]:
        out = data.augment(im, seed=seed)
        assert out.dtype == tf.float32 and out.shape == (32, 32, 3)
        assert abs(float(tf.reduce_mean(out))) < 1e-4
        assert abs(float(tf.math.reduce_std(out)) - 1.0) < 1e-3
    # Constant image (zeros): everything after padding is constant, so only the std floor
    # 1/sqrt(3072) keeps the standardization finite; float rounding of the brightness shift
    # (~1e-5) is amplified by at most sqrt(3072) ~ 55, not blown up by a zero std.
    for seed in [tf.constant([3, 4]), None]:
        out = data.augment(np.zeros([32, 32, 3], np.uint8), seed=seed).numpy()
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, 0.0, atol=1e-2)
    out = data.augment_batch(np.zeros([5, 32, 32, 3], np.uint8), seed=[3, 4]).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, 0.0, atol=1e-2)


def _infer_offsets_and_flip(out):
    """From the augmented 'white square with horizontal ramp' image, recovers the crop offset
    (dy, dx in -4..4 relative to the centre) and whether it was flipped.

    Brightness, contrast (factor > 0) and standardization preserve the order of pixel values,
    so the zero-padding is exactly the set of pixels holding the image minimum.
    """
    pad = np.isclose(out[..., 1], out[..., 1].min(), atol=1e-5)  # green plane: 0 pad vs >= 128
    pad_rows = np.flatnonzero(pad.all(axis=1))
    pad_cols = np.flatnonzero(pad.all(axis=0))
    top = int(np.sum(pad_rows < 16))
    bottom = int(np.sum(pad_rows >= 16))
    left = int(np.sum(pad_cols < 16))
    right = int(np.sum(pad_cols >= 16))
    dy = bottom - top  # offset_y - 4
    dx = right - left  # (offset_x - 4), sign-flipped if the image was mirrored
    flipped = out[16, 12, 0] > out[16, 20, 0]  # red ramp increases left to right unless flipped
    return dy, (-dx if flipped else dx), bool(flipped)


RAMP = np.zeros([32, 32, 3], np.uint8)
RAMP[..., 0] = (np.arange(32) * 8)[None, :]  # red increases along the row
RAMP[..., 1] = 200  # green constant and bright: the zero padding stands out
RAMP[..., 2] = 128


def _check_distortion_statistics(outs):
    draws = [_infer_offsets_and_flip(o) for o in outs]
    dys = {d[0] for d in draws}
    dxs = {d[1] for d in draws}
    # All 9 offsets of a 32-crop of the 40-padded image occur (miss probability ~1e-9 each).
    assert dys == set(range(-4, 5)) and dxs == set(range(-4, 5))
    flips = np.mean([d[2] for d in draws])
    assert 0.35 < flips < 0.65
    assert any(np.abs(o - outs[0]).max() > 1e-3 for o in outs[1:])


def test_augment_crop_shifts_and_flips():
    seeds = tf.data.Dataset.range(300).map(lambda i: tf.stack([i, i * 7 + 1]))
    outs = list(seeds.map(lambda s: data.augment(RAMP, seed=s)).as_numpy_iterator())
    _check_distortion_statistics(outs)
    # Stateless seeding is reproducible.
    np.testing.assert_array_equal(data.augment(RAMP, seed=[5, 6]), data.augment(RAMP, seed=[5, 6]))


def test_augment_batch_crop_shifts_and_flips():
    outs = data.augment_batch(np.stack([RAMP] * 300), seed=[7, 8]).numpy()
    assert outs.dtype == np.float32 and outs.shape == (300, 32, 32, 3)
    _check_distortion_statistics(list(outs))


def test_augment_batch_draws_match_tf_image_distributions():
    d = {k: v.numpy() for k, v in data._draw_distortions(4000, tf.constant([1, 2])).items()}
    for key in ["offset_y", "offset_x"]:
        assert d[key].dtype == np.int32 and set(d[key]) == set(range(9))
        counts = np.bincount(d[key], minlength=9)
        assert counts.min() > 4000 / 9 * 0.75
    assert 0.45 < d["flip"].mean() < 0.55
    assert d["delta"].min() >= -63 and d["delta"].max() < 63
    assert d["delta"].min() < -60 and d["delta"].max() > 60 and abs(d["delta"].mean()) < 3
    assert d["factor"].min() >= 0.2 and d["factor"].max() < 1.8
    assert d["factor"].min() < 0.23 and d["factor"].max() > 1.77
    assert abs(d["factor"].mean() - 1.0) < 0.03
    assert np.corrcoef(d["offset_y"], d["offset_x"])[0, 1] < 0.1  # independent draws


def np_distort(image, oy, ox, flip, delta, factor):
    """NumPy reference of the tf.image training pipeline with given draws."""
    x = np.pad(image.astype(np.float64), [(4, 4), (4, 4), (0, 0)])
    x = x[oy:oy + 32, ox:ox + 32]
    if flip:
        x = x[:, ::-1]
    x = x + delta
    m = x.mean(axis=(0, 1), keepdims=True)
    x = (x - m) * factor + m
    return np_standardize(x)


def test_distort_batch_matches_tf_image_ops_and_numpy():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=[6, 32, 32, 3]).astype(np.uint8)
    oy = np.array([0, 8, 4, 2, 7, 0], np.int32)
    ox = np.array([8, 0, 4, 5, 1, 0], np.int32)
    flip = np.array([False, True, False, True, True, False])
    delta = np.array([-63.0, 10.5, 0.0, 62.9, -5.0, 30.0], np.float32)
    factor = np.array([0.2, 1.79, 1.0, 0.5, 1.3, 0.25], np.float32)
    got = data._distort_batch(tf.constant(images), tf.constant(oy), tf.constant(ox),
                              tf.constant(flip), tf.constant(delta), tf.constant(factor)).numpy()
    for b in range(6):
        # The per-example tf.image ops, in the original's order.
        x = tf.image.resize_with_crop_or_pad(tf.cast(images[b], tf.float32), 40, 40)
        x = tf.image.crop_to_bounding_box(x, int(oy[b]), int(ox[b]), 32, 32)
        if flip[b]:
            x = tf.image.flip_left_right(x)
        x = tf.image.adjust_brightness(x, float(delta[b]))
        x = tf.image.adjust_contrast(x, float(factor[b]))
        ref = tf.image.per_image_standardization(x).numpy()
        np.testing.assert_allclose(got[b], ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[b], np_distort(images[b], oy[b], ox[b], flip[b],
                                                      delta[b], factor[b]), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Eval and train datasets (binary)
# ----------------------------------------------------------------------------------------------

def test_eval_dataset_every_example_once(cifar):
    root, written = cifar
    images, labels = expected(written, "test")
    ds, n = data.eval_dataset(root, 3, num_examples=100, url=UNREACHABLE)
    assert n == 7
    batches = list(ds.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
    got = np.concatenate([b[0] for b in batches])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.stack([np_standardize(im) for im in images]),
                               rtol=1e-4, atol=1e-4)
    assert [len(b[1]) for b in ds.as_numpy_iterator()] == [3, 3, 1]  # re-iterable, same again

    ds, n = data.eval_dataset(root, 3, num_examples=5, url=UNREACHABLE)
    assert n == 5
    got = list(ds.as_numpy_iterator())
    assert [len(b[1]) for b in got] == [3, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), labels[:5])


def test_eval_dataset_train_eval(cifar):
    root, _ = cifar
    ds, n = data.eval_dataset(root, 5, eval_data="train_eval", url=UNREACHABLE)
    assert n == 12
    labels = np.concatenate([b[1] for b in ds.as_numpy_iterator()])
    np.testing.assert_array_equal(labels, ALL_TRAIN_LABELS)


def test_train_dataset(cifar):
    root, _ = cifar
    ds = data.train_dataset(root, 4, seed=0, url=UNREACHABLE)
    assert ds.element_spec[0].shape == (4, 32, 32, 3)  # static: drop_remainder=True
    assert ds.element_spec[0].dtype == tf.float32 and ds.element_spec[1].dtype == tf.int32
    batches = list(ds.take(30).as_numpy_iterator())
    for images, labels in batches:
        assert images.shape == (4, 32, 32, 3) and labels.shape == (4,)
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    # The buffer runs across epochs (as the original's queue), so 120 examples are not 10
    # permutations; but every label is drawn, and not in the files' order.
    labels = np.concatenate([b[1] for b in batches])
    assert set(labels) == set(ALL_TRAIN_LABELS)
    assert list(labels[:12]) != ALL_TRAIN_LABELS
    # Same seed, same stream; batch size that does not divide the data still gives full batches.
    again = list(data.train_dataset(root, 4, seed=0, url=UNREACHABLE).take(2).as_numpy_iterator())
    np.testing.assert_array_equal(again[0][0], batches[0][0])
    ds5 = data.train_dataset(root, 5, url=UNREACHABLE)
    assert ds5.element_spec[0].shape[0] == 5
    assert [b[1].shape for b in ds5.take(4).as_numpy_iterator()] == [(5,)] * 4


def test_train_dataset_reads_the_files_in_a_new_order_every_epoch(cifar):
    root, _ = cifar
    ds = data.train_dataset(root, 4, shuffle_buffer=1, seed=3, url=UNREACHABLE)
    labels = [int(l) for b in ds.take(60).as_numpy_iterator() for l in b[1]]  # 20 epochs
    files = [TRAIN_LABELS[name] for name in data.SPLIT_FILES["train"]]
    orders = []
    for e in range(20):
        epoch, order = labels[12 * e:12 * e + 12], []
        while epoch:  # without a shuffle buffer, each epoch is the five files, each whole
            i = next(i for i, f in enumerate(files) if i not in order and epoch[:len(f)] == f)
            order.append(i)
            epoch = epoch[len(files[i]):]
        orders.append(tuple(order))
    assert len(set(orders)) > 5  # 120 orders are possible
    again = data.train_dataset(root, 4, shuffle_buffer=1, seed=3, url=UNREACHABLE)
    assert [int(l) for b in again.take(60).as_numpy_iterator() for l in b[1]] == labels


# ----------------------------------------------------------------------------------------------
# TFDS source (mocked: nothing is downloaded or prepared)
# ----------------------------------------------------------------------------------------------

def test_tfds_source(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    root = str(tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=7):
        ds, n = data.raw_dataset(root, "train", source="tfds")
        assert n == 50000  # the mock keeps the builder's split info (documented caveat)
        assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[0].shape == (32, 32, 3)
        assert ds.element_spec[1].dtype == tf.int32
        raw_labels = [int(l) for _, l in ds]
        assert len(raw_labels) == 7 and all(0 <= l < 10 for l in raw_labels)

        ev, n = data.eval_dataset(root, 3, num_examples=100, source="tfds")
        batches = list(ev.as_numpy_iterator())
        assert [len(b[1]) for b in batches] == [3, 3, 1]  # the 7 mocked examples, once each
        assert batches[0][0].dtype == np.float32
        ev, n = data.eval_dataset(root, 3, num_examples=5, source="tfds")
        assert n == 5 and [len(b[1]) for b in ev.as_numpy_iterator()] == [3, 2]

        tr = data.train_dataset(root, 4, source="tfds", seed=1)
        images, labels = next(iter(tr))
        assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
        assert labels.dtype == tf.int32 and set(labels.numpy()) <= set(raw_labels)
    # Nothing was downloaded into data_dir.
    assert not os.path.exists(root) or not any(
        f.endswith((".tar.gz", ".zip", ".tfrecord")) for _, _, fs in os.walk(root) for f in fs)
