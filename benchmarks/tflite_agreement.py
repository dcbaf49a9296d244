#!/usr/bin/env python
"""How far the exported TFLite models are from the SavedModel, on real CIFAR-10 test images.

    python benchmarks/tflite_agreement.py --checkpoint_dir /tmp/cifar10_train \
        --checkpoint_version 3 --data_dir /tmp/cifar10_data --num_images 1000

Exports the stage's checkpoint (averaged weights, as `cifar10_prune.export` does) three ways into
a temporary directory: the unfolded SavedModel, the folded SavedModel with a float32
`model.tflite`, and one with a dynamic-range `model.tflite`. On the first `--num_images` test
images it prints each one's precision @ 1, the largest logit difference from the unfolded
SavedModel, and the fraction of images on which each gives the same top-1 class as the folded
SavedModel. Target (issue 9): dynamic-range TFLite agrees on >= 99% of the images.
"""
import argparse
import json
import os
import sys
import tempfile


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint_dir", required=True, help="base of the stage directories")
    p.add_argument("--checkpoint_version", type=int, required=True)
    p.add_argument("--checkpoint_iter", type=int, default=-1)
    p.add_argument("--data_dir", default="/tmp/cifar10_data")
    p.add_argument("--num_images", type=int, default=1000)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np
    import tensorflow as tf

    from cifar10_prune import data, export, stages, tflite

    directory = stages.stage_dir(args.checkpoint_dir, args.checkpoint_version)
    spec = stages.spec_for_eval(directory, "resnet20", True)
    path = stages.checkpoint_path(directory, args.checkpoint_iter)
    model = stages.load_averaged(spec, path)
    raw, _ = data.raw_dataset(args.data_dir, "test")
    images, labels = next(iter(raw.batch(args.num_images).take(1)))
    images, labels = images.numpy().astype(np.uint8), labels.numpy().reshape(-1)

    with tempfile.TemporaryDirectory(prefix="tflite_agreement-") as tmp:
        unfolded = export.export_saved_model(model, os.path.join(tmp, "unfolded"),
                                             fold_batch_norms=False)
        folded = export.export_saved_model(model, os.path.join(tmp, "float"), tflite_file=True)
        dynamic = export.export_saved_model(model, os.path.join(tmp, "dynamic"),
                                            tflite_file=True, tflite_quantize="dynamic")

        def saved_model(d):
            fn = tf.saved_model.load(d).signatures["serving_default"]
            return np.concatenate([fn(images=tf.constant(images[i:i + 125]))["logits"].numpy()
                                   for i in range(0, len(images), 125)])

        logits = {"savedmodel_unfolded": saved_model(unfolded),
                  "savedmodel_folded": saved_model(folded),
                  "tflite_float32": tflite.runner(
                      os.path.join(folded, tflite.MODEL_FILE))(images)["logits"],
                  "tflite_dynamic": tflite.runner(
                      os.path.join(dynamic, tflite.MODEL_FILE))(images)["logits"]}
        sizes = {name: os.path.getsize(os.path.join(d, tflite.MODEL_FILE))
                 for name, d in (("tflite_float32", folded), ("tflite_dynamic", dynamic))}
    top1 = {k: v.argmax(1) for k, v in logits.items()}
    result = {
        "checkpoint": path, "widths": spec.widths, "num_images": len(labels),
        "precision_at_1": {k: float(np.mean(v == labels)) for k, v in top1.items()},
        "max_abs_logit_diff_vs_unfolded": {
            k: float(np.abs(v - logits["savedmodel_unfolded"]).max()) for k, v in logits.items()},
        "top1_agreement_with_folded_savedmodel": {
            k: float(np.mean(v == top1["savedmodel_folded"])) for k, v in top1.items()},
        "tflite_bytes": sizes,
        "interpreter": tflite._interpreter_class().__module__,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
