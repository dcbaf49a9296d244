"""Crash safety: a training run killed at any moment, or stopped by a full disk, loses at most the
steps since its last checkpoint, and a rerun of the same command finishes the stage."""
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from cifar10_prune import models, stages
from cifar10_prune.pruning import ExponentialMovingAverage, ista
from conftest import REPO, run_cli, one_error_line

MAX_STEPS = 300  # ~6 s of training at batch 10 here: several kills fit in a stage


def _train_args(data, base, *extra):
    return ["--data_dir", data, "--train_dir", base, "--batch_size", 10, "--log_frequency", 1,
            "--max_steps", MAX_STEPS, "--save_checkpoint_secs", 1, "--l1_penalty", 0.2] + list(extra)


def _start(args):
    return subprocess.Popen([sys.executable, "-m", "cifar10_prune.train"] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def _kill_after(proc, marker, delay):
    """SIGKILL `proc` `delay` seconds after it prints a line containing `marker` (or when it
    ends by itself). Returns the output seen."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            break
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    return "".join(seen)


def _expected_widths(stage0_dir, path):
    """The widths compressing checkpoint `path` must give, counted independently of rebuild.py:
    a unit keeps the channels whose raw gamma is not exactly zero."""
    model = models.build_model(stages.read_architecture(stage0_dir))
    ema = ExponentialMovingAverage(model.trainable_variables)
    stages.read_checkpoint(stages.make_checkpoint(model, ema), path)
    return {unit: n - zero for unit, (zero, n) in ista.sparsity(model, models.penalties(model))[2].items()}


@pytest.mark.slow
def test_kill_9_at_random_points_then_rerun(tiny_data, tmp_path):
    rng = random.Random(8)
    base = str(tmp_path / "crash")
    args = _train_args(tiny_data, base)
    # Killed at seeded random moments of the stage, counted from its first step (after which a
    # checkpoint is saved every second, so some kills land in a save), then once just as the
    # compressed next stage is being written.
    outs = [_kill_after(_start(args), ": step ", rng.uniform(1.2, 2.5)) for _ in range(3)]
    outs.append(_kill_after(_start(args), "compressed ", rng.uniform(0.0, 0.3)))
    assert "compressed" in outs[-1], outs[-1][-3000:]  # the stage was finished before this kill
    resumed = [int(s) for s in re.findall(r"resuming from \S+ \(step (\d+)\)", "".join(outs))]
    assert len(resumed) >= 2 and resumed == sorted(resumed), resumed  # killed mid-stage

    # What kills leave behind, planted for certain: a checkpoint whose save was cut off after
    # its index was written (newer than the state's record), TensorFlow's temporary parts, and
    # a half-written next stage in its hidden temporary directory.
    latest = tf.train.latest_checkpoint(base + "_0")
    step = int(latest.rsplit("-", 1)[1]) + 1
    cut = "%s_0/model.ckpt-%d" % (base, step)
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copyfile(latest + suffix, cut + suffix)
    with open(cut + ".data-00000-of-00001", "r+b") as f:
        f.truncate(100)
    os.makedirs(cut + "_temp")
    half = tmp_path / ".crash_1.tmp-planted"
    half.mkdir()
    (half / "architecture.json").write_text("{")
    if os.path.isdir(base + "_1"):
        shutil.rmtree(base + "_1")  # as if killed between removing a stale stage and the rename

    out = run_cli("train", *args).stdout
    assert "passing over %s" % cut in out
    assert "removed %s" % half in out
    assert "wrote stage 1 to %s_1" % base in out
    final = "%s_0/model.ckpt-%d" % (base, MAX_STEPS)
    assert tf.train.latest_checkpoint(base + "_0") == final
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]
    with open(base + "_1/architecture.json") as f:
        record = json.load(f)
    assert record["source"] == final
    assert record["widths"] == _expected_widths(base + "_0", final)
    assert sum(record["widths"].values()) < 16 * 3 + 32 * 3 + 64 * 3  # it did prune

    proc = run_cli("eval", "--data_dir", tiny_data, "--checkpoint_dir", base, "--batch_size", 10,
                   "--eval_dir", str(tmp_path / "eval"))
    assert "precision @ 1 = " in proc.stdout
    # A rerun of the finished command changes nothing.
    before = os.listdir(base + "_1")
    assert "already holds the compression" in run_cli("train", *args).stdout
    assert os.listdir(base + "_1") == before


def _limit_file_size(limit):
    """A subprocess preexec_fn: writes beyond `limit` bytes per file fail (EFBIG) instead of
    killing the process, which is how a write into a full disk fails (ENOSPC)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _run_full(module, *args):
    """Run an entry point on a 'disk' where no file may grow past 256 KB (a checkpoint of
    resnet20 is 2.3 MB, its SavedModel's variables 1.1 MB, an events file ~1 KB)."""
    return subprocess.run([sys.executable, "-m", "cifar10_prune." + module] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=REPO, timeout=600,
                          preexec_fn=_limit_file_size(256 * 1024))


def _files(directory):
    return {n: open(os.path.join(directory, n), "rb").read() for n in os.listdir(directory)
            if not n.startswith("events.")}


@pytest.mark.slow
def test_full_disk_is_a_clear_error_and_loses_nothing(tiny_data, tmp_path):
    base = str(tmp_path / "full")
    args = _train_args(tiny_data, base, "--log_frequency", 2)
    run_cli("train", *args, "--max_steps", 2, "--squeeze_model=false")
    before = _files(base + "_0")

    # The disk fills while training: the checkpoint of step 4 cannot be written.
    proc = _run_full("train", *args, "--max_steps", 4, "--squeeze_model=false")
    one_error_line(proc, "could not write checkpoint %s_0/model.ckpt-4" % base, "disk full",
                    "%s_0/model.ckpt-2, is intact" % base)
    assert _files(base + "_0") == before  # nothing changed, no temporary parts left
    out = run_cli("train", *args, "--max_steps", 4, "--squeeze_model=false").stdout
    assert "resuming from %s_0/model.ckpt-2 (step 2)" % base in out

    # ... while the next stage is being written: no stage 1, nothing half-written.
    proc = _run_full("train", *args, "--max_steps", 4)
    one_error_line(proc, "could not write stage 1 to %s_1" % base, "disk full")
    assert sorted(os.listdir(tmp_path)) == ["full_0"]
    run_cli("train", *args, "--max_steps", 4)

    # ... while exporting: nothing at the export path.
    target = tmp_path / "slim"
    proc = _run_full("export", "--checkpoint_dir", base, "--export_dir", target)
    one_error_line(proc, "could not write %s" % target, "disk full", "Nothing was written")
    assert sorted(os.listdir(tmp_path)) == ["full_0", "full_1"]
