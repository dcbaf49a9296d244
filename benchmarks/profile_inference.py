#!/usr/bin/env python
"""Where the exported SavedModel's inference time goes, layer by layer, dense vs slim.

    python benchmarks/profile_inference.py --batch_size 125 --calls 20
    python benchmarks/profile_inference.py --batch_size 1 --calls 200 --nofold

Exports a freshly initialized dense resnet20 and a slim one (every prunable layer at
`--slim_fraction` of its width) with `export.export_saved_model`, runs `--calls` calls of each
`serving_default` signature under `tf.profiler.experimental`, and reads the TensorFlow op events
of the trace (the `tf_Compute` threads of the host plane of the `.xplane.pb` file, parsed with
the XPlane protobuf that ships with TensorFlow, so no TensorBoard plugin is needed). It prints,
per layer and op type, the milliseconds per call for dense and slim, their ratio, and the ratio
of the layer's multiply-adds, plain and with output channels rounded up to 16 (the output-channel
block of oneDNN's AVX-512 convolutions). Times are summed over threads; the profiler adds its
own overhead, so compare the ratios, not the absolute times, with benchmark.py's.
"""
import argparse
import collections
import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from inference_speed import conv_macs_by_layer  # noqa: E402
from measuring import scaled_widths  # noqa: E402


def conv_macs(model):
    """{conv layer name: (multiply-adds per image, the same with output channels rounded up to
    16)}."""
    plain, padded = conv_macs_by_layer(model), conv_macs_by_layer(model, 16)
    return {name: (plain[name], padded[name]) for name in plain}


def op_ms_per_call(logdir, calls):
    """{"layer:op type": ms per call} from the tf_Compute threads of the trace in `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0],
              "rb") as f:
        space.ParseFromString(f.read())
    per_op = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                # Op events are named "<node name>:<op type>"; the node name holds the Keras
                # layer's name scope ("StatefulPartitionedCall/resnet20_1/<layer>_1/..."), which
                # is how time is attributed to layers.
                label = plane.event_metadata[event.metadata_id].name
                if ":" not in label:
                    continue
                node, op_type = label.rsplit(":", 1)
                if op_type in ("ReadVariableOp", "Process"):
                    continue
                scope = node.split("/")
                layer = scope[2] if len(scope) > 3 else scope[-1]
                if layer.endswith("_1"):
                    layer = layer[:-2]
                per_op["%s:%s" % (layer, op_type)] += event.duration_ps / 1e9 / calls
    return per_op


def profile_serving(path, images, calls, logdir):
    """`profile_inference`'s op times of `calls` calls of the SavedModel at `path`, after a
    warm-up."""
    import tensorflow as tf
    serve = tf.saved_model.load(path).signatures["serving_default"]
    for _ in range(5):  # warm-up: oneDNN primitives are created on first use
        serve(images=images)["logits"].numpy()
    tf.profiler.experimental.start(logdir)
    for _ in range(calls):
        serve(images=images)["logits"].numpy()
    tf.profiler.experimental.stop()
    return op_ms_per_call(logdir, calls)


def print_table(per_op, macs):
    """Per layer and op type above 1% of the dense total: dense and slim ms, their ratio and
    the layer's multiply-add ratios; then the totals."""
    d, s = per_op["dense"], per_op["slim"]
    print("%-36s %9s %9s %8s %8s %8s" % ("layer:op", "dense", "slim", "d/s time", "d/s MACs",
                                         "padded"))
    for key in sorted(set(d) | set(s), key=lambda k: -d.get(k, 0.0)):
        if max(d.get(key, 0.0), s.get(key, 0.0)) < 0.01 * sum(d.values()):
            continue
        # A fused conv's node is named after the last op fused in (the ReLU or residual add),
        # so map "g1b0add" / "g1b0c0_relu" back to their conv for the multiply-adds.
        layer = key.split(":")[0]
        conv = layer[:-len("_relu")] if layer.endswith("_relu") else (
            layer[:-len("add")] + "c1" if layer.endswith("add") else layer)
        ratio_macs = ratio_padded = ""
        if conv in macs["dense"] and conv in macs["slim"]:
            ratio_macs = "%.2f" % (macs["dense"][conv][0] / macs["slim"][conv][0])
            ratio_padded = "%.2f" % (macs["dense"][conv][1] / macs["slim"][conv][1])
        print("%-36s %9.3f %9.3f %8.2f %8s %8s"
              % (key, d.get(key, 0.0), s.get(key, 0.0),
                 d.get(key, 0.0) / max(s.get(key, 0.0), 1e-9), ratio_macs, ratio_padded))

    def total(m, i):
        return sum(v[i] for v in macs[m].values())
    print("all ops: dense %.2f ms, slim %.2f ms, dense/slim %.2f; conv MACs dense/slim %.2f, "
          "with outputs padded to 16 %.2f"
          % (sum(d.values()), sum(s.values()), sum(d.values()) / sum(s.values()),
             total("dense", 0) / total("slim", 0), total("dense", 1) / total("slim", 1)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", type=int, default=125)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--slim_fraction", type=float, default=0.6)
    p.add_argument("--nofold", action="store_true", help="export with batch norms kept")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from cifar10_prune import export, models
    from cifar10_prune.spec import ArchSpec

    dense = ArchSpec.dense("resnet20")
    slim = ArchSpec("resnet20", scaled_widths(dense.widths, args.slim_fraction))
    images = tf.constant(np.random.default_rng(0).integers(
        0, 256, (args.batch_size, 32, 32, 3)).astype(np.uint8))
    per_op, macs = {}, {}
    with tempfile.TemporaryDirectory(prefix="profile_inference-") as tmp:
        for name, spec in (("dense", dense), ("slim", slim)):
            model = models.build_model(spec)
            macs[name] = conv_macs(model)
            path = export.export_saved_model(model, os.path.join(tmp, name),
                                             fold_batch_norms=not args.nofold)
            per_op[name] = profile_serving(path, images, args.calls,
                                           os.path.join(tmp, name + "_trace"))
    print("batch %d, %d calls, batch norms %s; ms per call summed over threads"
          % (args.batch_size, args.calls, "kept" if args.nofold else "folded"))
    print_table(per_op, macs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
