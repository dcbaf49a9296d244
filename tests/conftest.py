"""Shared test helpers: tiny synthetic CIFAR-10 binary data and small models."""
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_cifar_binary(data_dir, n_train=40, n_test=30, seed=0):
    """Random records in the original layout under data_dir/cifar-10-batches-bin."""
    rng = np.random.RandomState(seed)
    out = os.path.join(data_dir, "cifar-10-batches-bin")
    os.makedirs(out, exist_ok=True)
    names = [("data_batch_%d.bin" % i, n_train) for i in range(1, 6)] + [("test_batch.bin", n_test)]
    for name, n in names:
        labels = rng.randint(0, 10, (n, 1))
        pixels = rng.randint(0, 256, (n, 3072))
        np.concatenate([labels, pixels], axis=1).astype(np.uint8).tofile(os.path.join(out, name))
    return data_dir


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return write_cifar_binary(str(tmp_path_factory.mktemp("cifar")))


def run_cli(module, *args, check=True, env=None):
    """Run `python -m cifar10_prune.<module> args...`; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "cifar10_prune." + module] + [str(a) for a in args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError("%s %s failed (%d):\n%s\n%s" % (module, args, proc.returncode,
                                                          proc.stdout, proc.stderr[-4000:]))
    return proc


def start_training(data_dir, base, cwd, stderr=subprocess.PIPE, **popen_kwargs):
    """Start a resnet20 `train` stage that would run for ever (batch 10, a log line every step)
    and return its Popen once it has logged step 2, so it has trained and is in its loop."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar10_prune.train", "--data_dir", data_dir, "--train_dir", base,
         "--batch_size", "10", "--log_frequency", "1", "--max_steps", "100000"],
        stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=str(cwd), **popen_kwargs)
    for line in proc.stdout:
        if re.search(r": step ([2-9]|\d{2,}), loss = ", line):
            break
    return proc


def randomize_batch_norms(model, seed=0):
    """Give every batch norm of `model` random statistics, beta and gamma (of both signs), and
    return it: a freshly built one is almost the identity, too tame to catch mistakes."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, c))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))
            layer.beta.assign(rng.normal(0, 0.5, c))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c))
    return model


def rho_by_unit(model):
    """{unit: rho_l} of a recipe model, as its optimizer gets them (models.penalties)."""
    from cifar10_prune import models
    from cifar10_prune.pruning import ista
    return {unit: rho for unit, rho, _ in ista.penalized(model, models.penalties(model))}


def one_error_line(proc, *needles):
    """Assert that a CLI run failed with exit status 1 and exactly one stderr line,
    `error: ...`, containing every one of `needles`."""
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
