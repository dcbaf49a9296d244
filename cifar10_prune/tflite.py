"""The exported SavedModel as a TensorFlow Lite (LiteRT) flatbuffer, and a runner for it.

Conversion uses `tf.lite.TFLiteConverter`, which ships with TensorFlow (this package's only
heavy dependency) and is not deprecated; it writes the same `.tflite` format that LiteRT, its
successor runtime, executes. Only TensorFlow's Python *interpreter* is deprecated in favour of
LiteRT's (`ai_edge_litert.interpreter.Interpreter`, the same API), so `runner` uses LiteRT's
when the `ai-edge-litert` package is installed (the optional extra `cifar10-prune[litert]`) and
TensorFlow's otherwise.
"""
import warnings

import numpy as np
import tensorflow as tf

from cifar10_prune import console

MODEL_FILE = "model.tflite"
SIGNATURE = "serving_default"

# Quantization modes of `convert`: None is float32; "dynamic" is dynamic-range quantization
# (weights stored as int8, activations quantized on the fly), which needs no calibration data.
QUANTIZE_MODES = ("dynamic",)


def check_quantize(quantize):
    """Raise ValueError unless `quantize` is None or one of QUANTIZE_MODES."""
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ValueError("unknown TFLite quantization %r; choose one of %s (or none for float32)"
                         % (quantize, ", ".join(QUANTIZE_MODES)))


def convert(saved_model_dir, quantize=None):
    """The `serving_default` signature of `saved_model_dir` as TFLite flatbuffer bytes.

    The signature's uint8 `images` input and `logits` / `probabilities` outputs are kept, with
    their names, and per-image standardization stays inside, as in the SavedModel.

    Args:
      saved_model_dir: a SavedModel written by `export.export_saved_model`.
      quantize: None for float32, "dynamic" for dynamic-range int8 weights.
    """
    check_quantize(quantize)
    # The converter logs about ten C++ lines on success (reading the SavedModel, the MLIR
    # passes); TF_CPP_MIN_LOG_LEVEL would hide them only if set before TensorFlow loads, and
    # then for the whole process. They are held back here; a failed conversion shows them all.
    with console.quiet_cpp():
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                             signature_keys=[SIGNATURE])
        if quantize == "dynamic":
            # Optimize.DEFAULT without a representative dataset is dynamic-range quantization.
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter  # LiteRT, when installed
        return Interpreter
    except ImportError:
        return tf.lite.Interpreter


def runner(model_path, num_threads=None):
    """A function `images (uint8 [B, 32, 32, 3]) -> {"logits", "probabilities"}` (NumPy) running
    the TFLite model at `model_path`, resizing the input to each call's batch.

    `num_threads` is the interpreter's thread count (None: the runtime's default).
    """
    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it is deprecated in favour of LiteRT's, which is used
        # instead when installed; the warning says nothing about this model.
        warnings.simplefilter("ignore")
        interpreter = _interpreter_class()(model_path=model_path, num_threads=num_threads)
    signature = interpreter.get_signature_runner(SIGNATURE)

    def run(images):
        # The signature runner resizes the input tensor (and reallocates) when the batch
        # size changes, so one runner serves any batch size.
        return signature(images=np.asarray(images, np.uint8))

    return run
