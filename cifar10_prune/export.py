"""Export a stage as a slim, self-contained SavedModel.

    python -m cifar10_prune.export --checkpoint_dir /tmp/cifar10_train --checkpoint_version 3 \
        --export_dir /tmp/cifar10_slim

The `serving_default` signature takes `images`, uint8 [batch, 32, 32, 3] raw RGB pixels
(per-image standardization happens inside), and returns `logits` and `probabilities`
[batch, 10]. It loads with plain `tf.saved_model.load`, without this package.
"""
from cifar10_prune import logs

logs.quiet_tensorflow()  # before TensorFlow loads; its start-up lines are not the user's

import os

import keras
import tensorflow as tf
from absl import flags

from cifar10_prune import cli, costs, data, models, stages, storage
from cifar10_prune.flags.export import define_export_flags
from cifar10_prune.spec import ArchSpec

FLAGS = flags.FLAGS


def export_saved_model(model, export_dir):
    """Write `model` (inference mode) as a SavedModel with the uint8 `serving_default`
    signature. Written through `storage.directory`, so a failure or a kill leaves nothing; an
    existing `export_dir` is an error, never overwritten."""
    export_dir = os.path.abspath(export_dir)
    if os.path.exists(export_dir):
        raise FileExistsError("%s already exists; remove it or choose another --export_dir"
                              % export_dir)
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
    dense = models.build_model(ArchSpec.dense(spec.model))
    export_saved_model(model, fv.export_dir)
    print("exported %s to %s" % (path, fv.export_dir))
    print("total params: %d (dense %s: %d)" % (costs.param_count(model), spec.model,
                                              costs.param_count(dense)))
    print("conv multiply-adds per image: %d (dense: %d, %.1f%%)"
          % (costs.conv_flops(model), costs.conv_flops(dense),
             100.0 * costs.conv_flops(model) / costs.conv_flops(dense)))


def run():
    cli.run(main, define_export_flags)


if __name__ == "__main__":
    run()
