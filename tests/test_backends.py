"""The library on every Keras 3 backend: TensorFlow, JAX and PyTorch give the same exact zeros.

Each backend runs tests/backend_check.py in a process of its own (Keras picks its backend at
import), on weights and batches made here with NumPy: `explain`, `penalties`, ISTA through
`fit` with `MovingAverage`, `compress`, `.keras` save; then every backend loads every backend's
`.keras` file. JAX and PyTorch are the `backends` extra (`pip install -e ".[backends]"`, which
.ci/run does); a missing one fails these tests, saying so.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import backend_check
from cifar10_prune import pruning

BACKENDS = ("tensorflow", "jax", "torch")
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_check.py")
# Per model: MobileNetV2 at random weights (1x1 maps at batch 8 in its last blocks) has gradients
# so large that at lr 0.01 three steps amplify the backends' rounding into gamma differences of
# 0.2 and 21-33 of 7,040 zeros that differ (seen here); at 1e-4 the steps stay in the linear range.
LEARNING_RATE = {"small": 0.01, "mobilenet_v2": 1e-4}
# Absolute tolerance of gammas between backends: even at lr 1e-4 the backends' MobileNetV2
# gammas differ by up to 6e-3 after three steps (one run here; its batch norms over
# batch 8 at 1x1 turn rounding into large gradient differences), while the exact zeros, widths
# and parameter counts agree; the small model agrees to 3e-8.
ATOL = {"small": 1e-5, "mobilenet_v2": 2e-2}
# Threshold per ISTA step of the penalized gamma with the smallest rho: far above what one
# gradient step moves a gamma (lr * |gradient|), so which gammas reach zero is decided by the
# weights below, not by rounding that differs between backends.
SMALLEST_THRESHOLD = 0.01
# (batches of 8, steps) per model: a few ISTA steps each, to keep the test short.
STEPS = {"small": 4, "mobilenet_v2": 3}


def _inputs(name, seed=0):
    """Weights and batches for `name`, made with NumPy: a quarter of each penalized batch norm's
    gammas start at 0.3 thresholds (ISTA zeroes them in its first step), the rest far enough
    from zero that the steps here leave them nonzero."""
    model = backend_check.MODELS[name]()
    rho = pruning.penalties(model)
    l1_penalty = SMALLEST_THRESHOLD / (LEARNING_RATE[name] * min(rho.values()))
    rng = np.random.RandomState(seed)
    weights = {}
    for i, v in enumerate(model.weights):
        shape, kind = tuple(v.shape), v.path.rsplit("/", 1)[-1]
        if kind == "gamma":
            threshold = LEARNING_RATE[name] * l1_penalty * rho.get(v.path, 0.0)
            small = rng.rand(*shape) < 0.25 if v.path in rho else np.zeros(shape, bool)
            size = np.where(small, 0.3 * threshold,
                            rng.uniform(0.5, 1.5, shape) + STEPS[name] * threshold)
            value = size * rng.choice([-1, 1], shape)
        elif kind == "beta":
            value = rng.normal(0, 0.3, shape)
        elif kind == "moving_mean":
            value = rng.normal(0, 0.3, shape)
        elif kind == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        elif kind == "bias":
            value = rng.normal(0, 0.1, shape)
        else:  # kernels: He-style scale
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        weights["weight_%d" % i] = value.astype("float32")
    size = model.input_shape[1]
    n = 8 * STEPS[name]
    return dict(weights, learning_rate=LEARNING_RATE[name], l1_penalty=l1_penalty, batch_size=8,
                coupled=name == "small",
                images=rng.normal(size=(n, size, size, 3)).astype("float32"),
                labels=rng.randint(0, 5, n),
                test_images=rng.normal(size=(4, size, size, 3)).astype("float32"))


def _run_everywhere(mode, directory, *names):
    """`tests/backend_check.py mode directory names...` under each backend, all at once."""
    missing = [b for b in BACKENDS if importlib.util.find_spec(b) is None]
    if missing:
        pytest.fail("backend(s) %s not installed: pip install -e \".[backends]\" (jax, "
                    "torch==2.13.0; .ci/run installs them)" % ", ".join(missing))
    procs = {}
    for backend in BACKENDS:
        # JAX and PyTorch run as where TensorFlow is not installed: the library must not need it.
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
                   CUDA_VISIBLE_DEVICES="", NO_TENSORFLOW=str(int(backend != "tensorflow")))
        procs[backend] = subprocess.Popen(
            [sys.executable, SCRIPT, mode, str(directory)] + list(names), env=env,
            cwd=str(directory), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for backend, proc in procs.items():
        _, err = proc.communicate(timeout=1200)  # JAX on two busy cores: ~10 min
        assert proc.returncode == 0, "%s failed:\n%s" % (backend, err[-4000:])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """run(name): the directory where `name` was trained, compressed and saved under each
    backend, and every backend's `.keras` file loaded under each backend (once per model)."""
    directory, done = tmp_path_factory.mktemp("backends"), set()

    def ran(name):
        if name not in done:
            np.savez(directory / (name + ".inputs.npz"), **_inputs(name))
            _run_everywhere("train", directory, name)
            _run_everywhere("load", directory, name)
            done.add(name)
        return directory
    return ran


def _result(directory, name, backend):
    return dict(np.load(directory / ("%s.%s.npz" % (name, backend))))


# The small model in the default suite; the keras.applications one, op by op on JAX (an XLA
# compilation per new shape), takes minutes, so it runs with the slow tests.
MODEL_PARAMS = ["small", pytest.param("mobilenet_v2", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_same_exact_zeros_on_every_backend(run, name):
    runs = run(name)
    results = {b: _result(runs, name, b) for b in BACKENDS}
    reference = results["tensorflow"]
    gammas = [k for k in reference if k.startswith("gamma/")]
    zeros = sum(int(np.sum(reference[k] == 0)) for k in gammas)
    assert 0 < zeros < sum(reference[k].size for k in gammas)
    scale = np.max(np.abs(reference["dense_outputs"]))
    for backend, result in results.items():
        # The library never needs TensorFlow: JAX and PyTorch run where it cannot be imported.
        assert bool(result["tensorflow_imported"]) == (backend == "tensorflow")
        for key in ("explanation", "penalties", "widths", "parameters"):
            assert result[key] == reference[key], (backend, key)
        for k in gammas:
            np.testing.assert_array_equal(result[k] == 0, reference[k] == 0, err_msg=backend + k)
            np.testing.assert_allclose(result[k], reference[k], rtol=1e-4, atol=ATOL[name],
                                       err_msg=backend + " " + k)
        if name == "mobilenet_v2":
            # Its kernels (and so their averages and the outputs) move far more than its gammas
            # under those gradients (0.02 apart seen in one kernel entry): only the zeros, the
            # gammas, the widths and each backend's exact compression are compared.
            np.testing.assert_allclose(result["raw_outputs"], result["dense_outputs"],
                                       atol=1e-5 * scale, err_msg=backend)
            continue
        for k in (k for k in reference if k.startswith("average/")):
            np.testing.assert_allclose(result[k], reference[k], rtol=1e-4, atol=ATOL[name],
                                       err_msg=backend + " " + k)
        # Compression is exact on each backend, and the backends agree.
        np.testing.assert_allclose(result["raw_outputs"], result["dense_outputs"],
                                   atol=1e-5 * scale, err_msg=backend)
        np.testing.assert_allclose(result["outputs"], reference["outputs"],
                                   atol=1e-4 * scale, err_msg=backend)
    if name == "small":  # its Add's members, thresholded as one: no member zero alone
        np.testing.assert_array_equal(reference["gamma/stem_bn"] == 0,
                                      reference["gamma/b1c2_bn"] == 0)
    # ISTA's zeros are what compress removes: fewer channels than the dense model.
    assert reference["parameters"] < reference["dense_parameters"]


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_keras_file_from_any_backend_loads_on_every_backend(run, name):
    runs = run(name)
    for saved_by in BACKENDS:
        saved = _result(runs, name, saved_by)
        scale = np.max(np.abs(saved["outputs"]))
        for loaded_by in BACKENDS:
            loaded = dict(np.load(runs / ("%s.%s.loaded_by_%s.npz" % (name, saved_by,
                                                                     loaded_by))))
            assert loaded["widths"] == saved["widths"], (saved_by, loaded_by)
            np.testing.assert_allclose(loaded["outputs"], saved["outputs"], atol=1e-5 * scale,
                                       err_msg="saved by %s, loaded by %s" % (saved_by,
                                                                              loaded_by))
            assert bool(loaded["tensorflow_imported"]) == (loaded_by == "tensorflow")
