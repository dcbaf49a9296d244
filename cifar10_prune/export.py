"""Export a stage as a slim, self-contained SavedModel.

    python -m cifar10_prune.export --checkpoint_dir /tmp/cifar10_train --checkpoint_version 3 \
        --export_dir /tmp/cifar10_slim [--tflite [--tflite_quantize dynamic]]

The `serving_default` signature takes `images`, uint8 [batch, 32, 32, 3] raw RGB pixels
(per-image standardization happens inside), and returns `logits` and `probabilities`
[batch, 10]. It loads with plain `tf.saved_model.load`, without this package. Every batch norm
is folded into the conv before it (`fold.py`; `--nofold_batch_norms` keeps them). With
`--tflite` the export directory also holds `model.tflite`, the same signature for TFLite.
"""
from cifar10_prune import console

console.quiet_tensorflow()  # before TensorFlow loads; its start-up lines are not the user's

import os

import keras
import tensorflow as tf
from absl import flags

from cifar10_prune import cli, costs, data, fold, models, stages, storage, tflite
from cifar10_prune.flags.export import define_export_flags

FLAGS = flags.FLAGS


def export_saved_model(model, export_dir, fold_batch_norms=True, tflite_file=False,
                       tflite_quantize=None):
    """Write `model` (inference mode) as a SavedModel with the uint8 `serving_default`
    signature. Written through `storage.directory`, so a failure or a kill leaves nothing; an
    existing `export_dir` is an error, never overwritten.

    Args:
      model: a model built by `models.build_model`, holding the weights to serve.
      export_dir: the SavedModel directory to create.
      fold_batch_norms: serve the folded form (every batch norm folded into the conv before
        it; same outputs up to float rounding, faster). False serves `model` as it is.
      tflite_file: also write `export_dir/model.tflite`, converted from the SavedModel.
      tflite_quantize: None (float32) or "dynamic" (dynamic-range int8 weights); needs
        `tflite_file`.
    Returns the absolute `export_dir`.
    """
    tflite.check_quantize(tflite_quantize)
    if tflite_quantize is not None and not tflite_file:
        raise ValueError("tflite_quantize=%r needs tflite_file=True (--tflite_quantize needs "
                         "--tflite)" % tflite_quantize)
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir):
        raise FileExistsError("%s already exists; remove it or choose another --export_dir"
                              % export_dir)
    if fold_batch_norms:
        model = fold.fold_batch_norms(model)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        logits = model(data.standardize(images), training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec([None, data.IMAGE_SIZE, data.IMAGE_SIZE, 3], tf.uint8, name="images")])
    with storage.writing(export_dir, "Nothing was written there."), \
            storage.directory(export_dir) as tmp:
        archive.write_out(tmp, verbose=False)
        if tflite_file:
            # A file beside saved_model.pb is ignored by SavedModel loaders.
            with open(os.path.join(tmp, tflite.MODEL_FILE), "wb") as f:
                f.write(tflite.convert(tmp, tflite_quantize))
    return export_dir


def main(argv):
    del argv
    fv = FLAGS
    if os.path.exists(fv.export_dir):  # before any work, as export_saved_model would refuse
        raise FileExistsError("%s already exists; remove it or choose another --export_dir"
                              % os.path.abspath(fv.export_dir))
    directory = stages.stage_dir(fv.checkpoint_dir, fv.checkpoint_version)
    spec = stages.spec_for_eval(directory, fv.model, fv.is_compressed)
    path = stages.checkpoint_path(directory, fv.checkpoint_iter)
    model = stages.load_averaged(spec, path)
    dense = models.build_model(spec.unpruned())
    quantize = None if fv.tflite_quantize == "none" else fv.tflite_quantize
    export_saved_model(model, fv.export_dir, fold_batch_norms=fv.fold_batch_norms,
                       tflite_file=fv.tflite, tflite_quantize=quantize)
    print("exported %s to %s (batch norms %s)"
          % (path, fv.export_dir, "folded into the convs" if fv.fold_batch_norms else "kept"))
    if fv.tflite:
        print("TFLite model (%s): %s" % ("dynamic-range int8 weights" if quantize else "float32",
                                         os.path.join(fv.export_dir, tflite.MODEL_FILE)))
    print("total params: %d (dense %s: %d)" % (costs.param_count(model), spec.model,
                                              costs.param_count(dense)))
    print("conv multiply-adds per image: %d (dense: %d, %.1f%%)"
          % (costs.conv_flops(model), costs.conv_flops(dense),
             100.0 * costs.conv_flops(model) / costs.conv_flops(dense)))


def run():
    cli.run(main, define_export_flags)


if __name__ == "__main__":
    run()
