"""Rows 5-6 of benchmark.py: inference speed of a dense and a slim resnet20 as export writes
them (folded SavedModel and float32 TFLite) and unfolded, dense and slim alternating. TensorFlow
and the package are imported inside the functions, so that importing this module stays cheap."""
import os
import time

from measuring import median, progress, scaled_widths, spread, verdict

# Issue 9: slim / dense images/s of the exported SavedModel at batch --batch_size at least 0.8 x
# the ratio of their conv multiply-adds, and at batch 1 no worse than dense.
TARGET_SLIM_VS_MACS = 0.8
TARGET_SLIM_VS_DENSE_BATCH1 = 1.0
INFER_FORMATS = ("savedmodel_folded", "savedmodel_unfolded", "tflite_float32")


def conv_macs_by_layer(model, block=1):
    """{conv layer name: multiply-adds per image}, each conv's output channels rounded up to a
    multiple of `block` (1: as they are)."""
    import keras  # only when measuring, like the rest of TensorFlow
    macs = {}
    for layer in model.operations:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            macs[layer.name] = h * w * kh * kw * layer.input.shape[-1] * (-(-cout // block) * block)
    return macs


def padded_conv_macs(model, block=16):
    """Conv multiply-adds per image with every conv's output channels rounded up to `block`.

    oneDNN's CPU convolutions compute output channels in vector-wide blocks (16 float32 with
    AVX-512), so a conv with 19 outputs costs about as much as one with 32: this is the work
    the narrowed widths actually save on such a CPU (a diagnostic, not a target)."""
    return int(sum(conv_macs_by_layer(model, block).values()))


def export_models(args, tmp_dir):
    """Builds the dense resnet20 and the slim one (every prunable width x `--slim_fraction`)
    and exports each as the folded SavedModel with its TFLite file (what export writes) and as
    the unfolded SavedModel, under `tmp_dir`.

    Returns their sizes {name: ...}, the runners {(format, name): (call on a batch, conversion
    of a uint8 numpy batch to its input)} and the loaded SavedModels, which must outlive the
    runners."""
    import numpy as np
    import tensorflow as tf
    from cifar10_prune import costs, export, models, tflite
    from cifar10_prune.spec import ArchSpec
    if args.slim_architecture:
        with open(args.slim_architecture) as f:
            slim_spec = ArchSpec.from_json(f.read(), origin=args.slim_architecture)
        dense_spec = slim_spec.unpruned()
    else:
        dense_spec = ArchSpec.dense("resnet20")
        slim_spec = ArchSpec("resnet20", scaled_widths(dense_spec.widths, args.slim_fraction))
    progress("exporting dense and slim (%s) %s: folded SavedModel + TFLite, unfolded "
             "SavedModel" % (", ".join("%s %d" % kv for kv in slim_spec.widths.items()),
                             slim_spec.model))
    models_info, runners, keep = {}, {}, []
    for name, spec in (("dense", dense_spec), ("slim", slim_spec)):
        model = models.build_model(spec)
        models_info[name] = {"params": costs.param_count(model),
                             "conv_macs": costs.conv_flops(model),
                             "conv_macs_out_padded_16": padded_conv_macs(model),
                             "widths": spec.widths}
        for fmt, fold in (("savedmodel_folded", True), ("savedmodel_unfolded", False)):
            path = export.export_saved_model(
                model, os.path.join(tmp_dir, "%s_%s" % (name, fmt)),
                fold_batch_norms=fold, tflite_file=fold)
            loaded = tf.saved_model.load(path)
            keep.append(loaded)  # the signature needs its object alive
            fn = loaded.signatures["serving_default"]
            runners[(fmt, name)] = (lambda x, fn=fn: fn(images=x)["logits"].numpy(),
                                    tf.constant)
            if fold:
                run = tflite.runner(os.path.join(path, tflite.MODEL_FILE))
                runners[("tflite_float32", name)] = (lambda x, run=run: run(x)["logits"],
                                                     np.asarray)
    return models_info, runners, keep


def sample_images(data_dir, bs):
    """The first `bs` CIFAR-10 test images, uint8 numpy, as the serving signature takes them:
    real images rather than noise."""
    import numpy as np
    from cifar10_prune import data
    raw, _ = data.raw_dataset(data_dir, "test")
    images, _ = next(iter(raw.batch(bs, drop_remainder=True).take(1)))
    images = images.numpy().astype(np.uint8)
    assert images.shape == (bs, 32, 32, 3), images.shape
    return images


def time_inference(runners, images, batches, args):
    """Times every runner on the first `batch` of `images` in blocks of `calls` calls, for each
    (batch, calls) of `batches`, after `--warmup_steps` checked calls; `--infer_rounds` rounds,
    dense and slim alternating which goes first. Returns images/s and process CPU microseconds
    per image, each {(format, batch, model): [one per round]}."""
    import numpy as np
    from cifar10_prune import models
    rates, cpu_us = {}, {}
    for batch, calls in batches:
        inputs = {fmt: convert(images[:batch]) for (fmt, _), (_, convert) in runners.items()}
        for (fmt, name), (fn, _) in runners.items():
            for _ in range(args.warmup_steps):
                out = fn(inputs[fmt])
            assert out.shape == (batch, models.NUM_CLASSES) and np.all(np.isfinite(out))
        for rnd in range(args.infer_rounds):
            for fmt in INFER_FORMATS:
                for name in ("dense", "slim") if rnd % 2 == 0 else ("slim", "dense"):
                    fn = runners[(fmt, name)][0]
                    x = inputs[fmt]
                    c0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(calls):
                        fn(x)
                    dt = time.perf_counter() - t0
                    rates.setdefault((fmt, batch, name), []).append(calls * batch / dt)
                    # Process CPU time (all threads) per image: less sensitive than wall
                    # time to other processes taking the cores.
                    cpu_us.setdefault((fmt, batch, name), []).append(
                        1e6 * (time.process_time() - c0) / (calls * batch))
            progress("inference batch %d round %d: %s" % (batch, rnd + 1, ", ".join(
                "%s dense %.0f slim %.0f" % (fmt, rates[(fmt, batch, "dense")][-1],
                                             rates[(fmt, batch, "slim")][-1])
                for fmt in INFER_FORMATS)))
    return rates, cpu_us


def inference_speedups(rates, cpu_us, batches):
    """Slim / dense (from images/s and from CPU time) and folded / unfolded, per round."""
    speedups = {}
    for batch, _ in batches:
        for fmt in INFER_FORMATS:
            speedups["slim_vs_dense/%s/batch%d" % (fmt, batch)] = [
                s / d for d, s in zip(rates[(fmt, batch, "dense")],
                                      rates[(fmt, batch, "slim")])]
            speedups["cpu_time_slim_vs_dense/%s/batch%d" % (fmt, batch)] = [
                d / s for d, s in zip(cpu_us[(fmt, batch, "dense")],
                                      cpu_us[(fmt, batch, "slim")])]
        for name in ("dense", "slim"):
            speedups["folded_vs_unfolded/%s/batch%d" % (name, batch)] = [
                f / u for u, f in zip(rates[("savedmodel_unfolded", batch, name)],
                                      rates[("savedmodel_folded", batch, name)])]
    return speedups


def measure_inference(args, tmp_dir):
    """Rows 5-6: the dense and the slim resnet20 exported as the folded SavedModel (what
    export writes), the unfolded SavedModel (batch norms kept) and float32 TFLite, each at
    batch `--batch_size` and batch 1, dense and slim alternating block by block."""
    from cifar10_prune import tflite
    bs = args.batch_size
    models_info, runners, keep = export_models(args, tmp_dir)
    images = sample_images(args.data_dir, bs)
    batches = ((bs, args.infer_calls), (1, args.infer_calls_batch1))
    rates, cpu_us = time_inference(runners, images, batches, args)
    speedups = inference_speedups(rates, cpu_us, batches)
    mac_ratio = models_info["dense"]["conv_macs"] / models_info["slim"]["conv_macs"]
    padded_ratio = (models_info["dense"]["conv_macs_out_padded_16"]
                    / models_info["slim"]["conv_macs_out_padded_16"])
    need = TARGET_SLIM_VS_MACS * mac_ratio
    medians = {k: median(v) for k, v in speedups.items()}
    checks = {
        "slim_vs_dense_savedmodel_batch%d" % bs:
            medians["slim_vs_dense/savedmodel_folded/batch%d" % bs] >= need,
        "slim_vs_dense_tflite_batch%d" % bs:
            medians["slim_vs_dense/tflite_float32/batch%d" % bs] >= need,
        "slim_vs_dense_savedmodel_batch1":
            medians["slim_vs_dense/savedmodel_folded/batch1"] >= TARGET_SLIM_VS_DENSE_BATCH1,
    }
    del keep
    return {"models": models_info, "batches": [b for b, _ in batches],
            "calls": {str(b): c for b, c in batches},
            "images_per_sec": {"%s/batch%d/%s" % k: v for k, v in rates.items()},
            "median_images_per_sec": {"%s/batch%d/%s" % k: median(v) for k, v in rates.items()},
            "cpu_us_per_image": {"%s/batch%d/%s" % k: v for k, v in cpu_us.items()},
            "median_cpu_us_per_image": {"%s/batch%d/%s" % k: median(v)
                                        for k, v in cpu_us.items()},
            "speedups_per_round": speedups, "speedup_medians": medians,
            "mac_ratio_dense_vs_slim": mac_ratio,
            "padded_mac_ratio_dense_vs_slim": padded_ratio,
            "target_slim_vs_dense_batch_bs": need,
            "checks": checks, "tflite_interpreter": tflite._interpreter_class().__module__}


# Inference rows: 5 = SavedModel as export writes it (folded), 5u = unfolded, 6 = TFLite.
INFER_LABELS = {"savedmodel_folded": ("5", "SavedModel, BN folded (export's default)"),
                "savedmodel_unfolded": ("5u", "SavedModel, BN kept (`--nofold_batch_norms`)"),
                "tflite_float32": ("6", "TFLite float32 (`--tflite`)")}


def inference_rows(infer, checks, bs):
    """Table rows 5-6 (images/s, slim / dense, folded / unfolded, per batch size), then the
    models' parameter counts and multiply-adds, from `measure_inference`."""
    lines = []
    rate_rounds, sp, sp_med = (infer["images_per_sec"], infer["speedups_per_round"],
                               infer["speedup_medians"])
    for batch in infer["batches"]:
        for fmt in INFER_FORMATS:
            row, what = INFER_LABELS[fmt]
            for name in ("dense", "slim"):
                values = rate_rounds["%s/batch%d/%s" % (fmt, batch, name)]
                lines.append("| %s%s | %s, %s, batch %d | %.0f | %s | | |"
                             % (row, "a" if name == "dense" else "b", what, name, batch,
                                median(values), spread(values)))
            key = "slim_vs_dense/%s/batch%d" % (fmt, batch)
            target, verdict_text = "", ""
            if fmt == "savedmodel_folded":  # the formats the targets are set on
                target = (">= %.2fx (0.8 x MACs)" % infer["target_slim_vs_dense_batch_bs"]
                          if batch == bs else ">= 1.0x")
                verdict_text = verdict(checks["slim_vs_dense_savedmodel_batch%d" % batch])
            elif fmt == "tflite_float32" and batch == bs:
                target = ">= %.2fx (0.8 x MACs)" % infer["target_slim_vs_dense_batch_bs"]
                verdict_text = verdict(checks["slim_vs_dense_tflite_batch%d" % batch])
            lines.append("| %sb/%sa | %s: slim / dense, batch %d | %.2fx | %s | %s | %s |"
                         % (row, row, what, batch, sp_med[key], spread(sp[key], "%.2f"), target,
                            verdict_text))
            key = "cpu_time_slim_vs_dense/%s/batch%d" % (fmt, batch)
            lines.append("| | the same from CPU time per image (dense / slim) | %.2fx | %s | | |"
                         % (sp_med[key], spread(sp[key], "%.2f")))
        for name in ("dense", "slim"):
            key = "folded_vs_unfolded/%s/batch%d" % (name, batch)
            lines.append("| 5/5u | BN folding speed-up, %s, batch %d | %.2fx | %s | | |"
                         % (name, batch, sp_med[key], spread(sp[key], "%.2f")))
    return lines + model_rows(infer)


def model_rows(infer):
    """The table rows of the dense and slim models' parameter counts and conv multiply-adds."""
    dense, slim = infer["models"]["dense"], infer["models"]["slim"]
    return [
        "| | Params dense / slim (as trained, BNs included) | %d / %d (%.1f%%) | | | |"
        % (dense["params"], slim["params"], 100.0 * slim["params"] / dense["params"]),
        "| | Conv multiply-adds per image dense / slim | %d / %d (%.1f%%; dense/slim %.3fx) "
        "| | | |" % (dense["conv_macs"], slim["conv_macs"],
                     100.0 * slim["conv_macs"] / dense["conv_macs"],
                     infer["mac_ratio_dense_vs_slim"]),
        "| | The same with each conv's output channels rounded up to 16 (oneDNN's AVX-512 "
        "block) | %d / %d (dense/slim %.3fx) | | | |"
        % (dense["conv_macs_out_padded_16"], slim["conv_macs_out_padded_16"],
           infer["padded_mac_ratio_dense_vs_slim"]),
    ]
