"""Shared test helpers: tiny synthetic CIFAR-10 binary data and small models."""
import os
import subprocess
import sys

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
