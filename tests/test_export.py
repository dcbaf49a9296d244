"""The exported SavedModel (folded batch norms) and its TFLite conversion, against the Keras model."""
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from cifar10_prune import data, export, console, models, stages, tflite
from cifar10_prune.pruning import ExponentialMovingAverage
from conftest import REPO, randomize_batch_norms, run_cli
from test_fold import narrowed


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)


def keras_logits(model, batch):
    """The independent reference: the unfolded Keras model on standardized images."""
    return model(data.standardize(batch), training=False).numpy()


def serve(export_dir, batch):
    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    return {k: v.numpy() for k, v in signature(images=tf.constant(batch)).items()}


@pytest.fixture(scope="module")
def narrow_resnet():
    # Narrowed, one block's c0 pruned away entirely (its c1 becomes an empty conv).
    spec = narrowed("resnet20", g1b0c0=0, g1b1c0=10, g2b0c0=19, g2b2c0=1, g3b1c0=38)
    return randomize_batch_norms(models.build_model(spec), seed=7)


def test_folded_savedmodel_and_float_tflite_match_keras(narrow_resnet, tmp_path):
    batch = images(20)
    expected = keras_logits(narrow_resnet, batch)
    assert np.abs(expected).max() > 0.5
    path = export.export_saved_model(narrow_resnet, str(tmp_path / "m"), tflite_file=True)
    served = serve(path, batch)
    np.testing.assert_allclose(served["logits"], expected, rtol=0, atol=1e-4)
    lite = tflite.runner(os.path.join(path, tflite.MODEL_FILE))
    for n in (20, 1, 3):  # the runner resizes the input to each batch
        got = lite(batch[:n])
        np.testing.assert_allclose(got["logits"], served["logits"][:n], rtol=0, atol=1e-4)
        np.testing.assert_allclose(got["probabilities"], served["probabilities"][:n], atol=1e-5)
    # The folded SavedModel holds no batch-norm variables; the unfolded one serves the same.
    names = [v.name for v in tf.saved_model.load(path).variables]
    assert names and not any("moving" in n or "gamma" in n for n in names)
    unfolded = export.export_saved_model(narrow_resnet, str(tmp_path / "u"),
                                         fold_batch_norms=False)
    assert any("moving" in v.name for v in tf.saved_model.load(unfolded).variables)
    np.testing.assert_allclose(serve(unfolded, batch)["logits"], expected, rtol=0, atol=1e-4)
    assert not os.path.exists(os.path.join(unfolded, tflite.MODEL_FILE))


def test_folded_cnn4_savedmodel_matches_keras(tmp_path):
    model = randomize_batch_norms(models.build_model(narrowed("cnn4", conv2=40, fc1=100)), 5)
    batch = images(8, seed=1)
    path = export.export_saved_model(model, str(tmp_path / "c"))
    np.testing.assert_allclose(serve(path, batch)["logits"], keras_logits(model, batch),
                               rtol=0, atol=1e-4)


def test_dynamic_range_tflite_stays_close(narrow_resnet, tmp_path):
    """Dynamic-range quantization changes the numbers, so only closeness can be tested here.
    The real criterion (same top-1 as the float model on >= 99% of real test images) needs a
    trained model and real images; benchmarks/README.md reports it. On this random model and
    random images: logits within 5% of their range, and the same top-1 on >= 90% of 64 images."""
    float_dir = str(tmp_path / "f")
    quant_dir = str(tmp_path / "q")
    export.export_saved_model(narrow_resnet, float_dir, tflite_file=True)
    export.export_saved_model(narrow_resnet, quant_dir, tflite_file=True,
                              tflite_quantize="dynamic")
    float_file = os.path.join(float_dir, tflite.MODEL_FILE)
    quant_file = os.path.join(quant_dir, tflite.MODEL_FILE)
    # int8 weights: about a quarter of the float file (the smallest tensors stay float).
    assert os.path.getsize(quant_file) < 0.4 * os.path.getsize(float_file)
    batch = images(64, seed=2)
    reference = tflite.runner(float_file)(batch)["logits"]
    got = tflite.runner(quant_file)(batch)["logits"]
    assert 0 < np.abs(got - reference).max() <= 0.05 * np.abs(reference).max()
    assert np.mean(got.argmax(1) == reference.argmax(1)) >= 0.9


def test_export_is_atomic_and_checks_its_arguments(narrow_resnet, tmp_path, monkeypatch):
    target = str(tmp_path / "x")
    with pytest.raises(ValueError, match="needs tflite_file"):
        export.export_saved_model(narrow_resnet, target, tflite_quantize="dynamic")
    with pytest.raises(ValueError, match="unknown TFLite quantization 'int4'"):
        export.export_saved_model(narrow_resnet, target, tflite_file=True,
                                  tflite_quantize="int4")

    def broken(*args, **kwargs):
        raise RuntimeError("converter failed")

    # A conversion failing after the SavedModel was written leaves nothing behind.
    monkeypatch.setattr(tflite, "convert", broken)
    with pytest.raises(RuntimeError, match="converter failed"):
        export.export_saved_model(narrow_resnet, target, tflite_file=True)
    assert os.listdir(str(tmp_path)) == []
    os.makedirs(target)
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_saved_model(narrow_resnet, target)
    assert os.listdir(target) == []


@pytest.mark.parametrize("args, ok", [
    ([], True), (["--tflite"], True), (["--tflite", "--tflite_quantize", "dynamic"], True),
    (["--tflite", "--tflite_quantize", "none"], True), (["--nofold_batch_norms"], True),
    (["--tflite_quantize", "dynamic"], False), (["--tflite", "--tflite_quantize", "int4"], False),
])
def test_export_flags(args, ok):
    from cifar10_prune.flags.export import define_export_flags
    fv = flags.FlagValues()
    define_export_flags(fv)
    argv = ["export", "--export_dir", "/nonexistent"] + args
    if ok:
        fv(argv)
        assert fv.fold_batch_norms == ("--nofold_batch_norms" not in args)
        assert fv.tflite == ("--tflite" in args)
    else:
        with pytest.raises(flags.IllegalFlagValueError, match="tflite_quantize"):
            fv(argv)


@pytest.fixture(scope="module")
def exported_by_command(narrow_resnet, tmp_path_factory):
    """`python -m cifar10_prune.export --tflite` run on a stage holding `narrow_resnet` (its
    averages are its weights): (the CompletedProcess, export_dir)."""
    tmp = tmp_path_factory.mktemp("stage")
    base = str(tmp / "cifar10_train")
    directory = stages.stage_dir(base, 1)
    os.makedirs(directory)
    stages.write_architecture(directory, models.spec_of(narrow_resnet))
    ema = ExponentialMovingAverage(narrow_resnet.trainable_variables)
    stages.checkpoint_manager(stages.make_checkpoint(narrow_resnet, ema),
                              directory).save(checkpoint_number=0)
    export_dir = str(tmp / "slim_lite")
    proc = run_cli("export", "--checkpoint_dir", base, "--checkpoint_version", 1,
                   "--export_dir", export_dir, "--tflite")
    return proc, export_dir


def test_export_tflite_command_prints_no_converter_log(exported_by_command):
    """The converter's C++ progress notes (`Reading SavedModel from: ...`, `Ignored
    output_format.`, about ten a conversion) are held back like TensorFlow's start-up lines:
    the command prints its own lines only."""
    proc, export_dir = exported_by_command
    assert os.path.getsize(os.path.join(export_dir, tflite.MODEL_FILE)) > 0
    assert "TFLite model (float32): %s" % os.path.join(export_dir, tflite.MODEL_FILE) in proc.stdout
    output = proc.stdout + proc.stderr
    noise = [l for l in output.splitlines() if console.start_up_noise(l)]
    assert not noise, noise[:3]
    for note in ("Reading SavedModel", "Ignored output_format", "SavedModel bundle", "MLIR"):
        assert note not in output, output[-3000:]


def test_failed_conversion_keeps_its_log(tmp_path, monkeypatch, capfd):
    """What the converter prints when it fails is passed on, C++ lines included."""
    class Failing:
        def convert(self):
            os.write(2, b"E0000 00:00:1.000000  42 convert.cc:7] op MyOp could not be legalized\n")
            raise RuntimeError("conversion failed")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", lambda *a, **k: Failing())
    with pytest.raises(RuntimeError, match="conversion failed"):
        tflite.convert(str(tmp_path))
    assert "op MyOp could not be legalized" in capfd.readouterr().err


def _readme_serving_snippets():
    """The Python blocks of the README's "Export and serving" section, as written."""
    with open(os.path.join(REPO, "README.md")) as f:
        section = f.read().split("## Export and serving", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


@pytest.mark.parametrize("litert", ["absent", "as installed"])
def test_readme_serving_lines_run(exported_by_command, narrow_resnet, litert, monkeypatch):
    """The README's SavedModel and TFLite lines, run as they stand on the command's export,
    with LiteRT absent (TensorFlow's interpreter) and as installed here."""
    _, export_dir = exported_by_command
    saved_model, lite = _readme_serving_snippets()
    if litert == "absent":
        monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import fails
        monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    expected = keras_logits(narrow_resnet, np.zeros([8, 32, 32, 3], np.uint8))
    scope = {}
    exec(compile(saved_model.replace("/tmp/cifar10_slim", export_dir), "README.md", "exec"),
         scope)
    np.testing.assert_allclose(scope["probabilities"].numpy(), tf.nn.softmax(expected).numpy(),
                               atol=1e-5)
    scope = {}
    exec(compile(lite.replace("/tmp/cifar10_slim_lite", export_dir), "README.md", "exec"), scope)
    np.testing.assert_allclose(scope["logits"], expected, rtol=0, atol=1e-4)
