"""Long runs as a user lives with them: --seed repeats a stage, the log says how long is left,
and one stage is trained by one run at a time."""
import json
import os
import re
import signal
import socket
import subprocess

import numpy as np
import tensorflow as tf

from conftest import one_error_line, run_cli, start_training

TINY = ["--batch_size", 10, "--log_frequency", 2]


def train(data, base, *args, check=True):
    return run_cli("train", "--data_dir", data, "--train_dir", base, *TINY, *args, check=check)


def weights(path):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if name.startswith(("model/", "ema/", "optimizer/"))}


def test_seed_repeats_a_stage_and_another_seed_differs(tiny_data, tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        base = str(tmp_path / name)
        out = train(tiny_data, base, "--max_steps", 5, "--seed", seed, "--l1_penalty", 0.5).stdout
        assert "seed: %d" % seed in out
        runs[name] = weights(base + "_0/model.ckpt-5")
        assert json.load(open(base + "_1/architecture.json"))["trained_with"]["seed"] == seed
    assert len(runs["a"]) > 100
    for key in runs["a"]:  # bit for bit: the same initial weights, batches and augmentation
        np.testing.assert_array_equal(runs["a"][key], runs["b"][key], err_msg=key)
    kernels = [k for k, v in runs["a"].items() if getattr(v, "ndim", 0) == 4]
    assert len(kernels) >= 19 * 2  # resnet20's convs, trained and averaged
    assert all(not np.array_equal(runs["a"][k], runs["c"][k]) for k in kernels)


def test_log_shows_progress_time_left_and_the_last_step(tiny_data, tmp_path):
    out = train(tiny_data, str(tmp_path / "t"), "--max_steps", 5, "--squeeze_model=false").stdout
    progress = re.findall(r"^  progress: (\d+) of 5 steps done \(([\d.]+)%\), about (\d+) s left$",
                          out, re.M)
    assert [int(s) for s, _, _ in progress] == [2, 4, 5]
    assert [float(p) for _, p, _ in progress] == [40.0, 80.0, 100.0]
    assert progress[-1][2] == "0"
    # The original's line never shows the end of a stage (it logs steps before their update).
    assert re.search(r": step 5 \(end of stage\), loss of step 4 = [\d.]+, group lasso = [\d.]+, "
                     r"fake sparsity = [\d.]+$", out, re.M), out


def test_a_stage_in_use_is_refused_and_a_killed_runs_lock_taken_over(tiny_data, tmp_path):
    base = str(tmp_path / "busy")
    first = start_training(tiny_data, base, tmp_path, stderr=subprocess.DEVNULL)
    try:
        second = train(tiny_data, base, "--max_steps", 100000, check=False)
        one_error_line(second, base + "_0 is being trained by another run",
                       "pid %d on host %s" % (first.pid, socket.gethostname()))
        assert "stage 0 in" not in second.stdout  # refused before it touched anything
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    # A killed run released its lock (the kernel does), and left its record behind.
    out = train(tiny_data, base, "--max_steps", 4, "--squeeze_model=false").stdout
    assert "taking over the lock of %s_0 left by a run that has ended (pid %d" % (
        base, first.pid) in out
    assert not os.path.exists(base + "_0/.lock")  # a clean exit leaves no lock file
