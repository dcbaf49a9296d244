#!/usr/bin/env python
"""How much faster can a narrower resnet20 get here? The floor that width cuts cannot go below.

    python benchmarks/inference_floor.py                 # ~2 min on 2 CPU cores
    python benchmarks/inference_floor.py --rounds 2 --calls 3
    python benchmarks/inference_floor.py --block_outputs_fraction 0.7   # + block outputs pruned

The recipe (like the original) prunes only the first conv of each residual block (`c0`): the
second conv still writes all 16/32/64 channels, and the shortcuts, residual adds, stem and
classifier stay as they are. So besides the multiply-adds that shrink with the widths, a slim
model pays for work that does not. This script measures it: it exports four freshly initialized
resnet20s (`export.export_saved_model`, batch norms folded, with `model.tflite`), dense, slim
(every prunable width x `--slim_fraction`, as benchmark.py's slim model), "floor" (every
prunable layer at width 1: almost no multiply-adds in the blocks' convs, but every full-width
output still written) and "blocks pruned" (width 0: each block is its shortcut plus a
constant), and times them in turns, at batch `--batch_size`, as the SavedModel and as TFLite
with 1 and 2 threads. A straight line through dense and floor (time = fixed + k * conv
multiply-adds) predicts what the slim model could run at if its convs scaled perfectly with
their multiply-adds; the predicted and measured slim / dense ratios are printed next to the
multiply-add ratio and issue 9's target (0.8 x that ratio). With `--block_outputs_fraction F`
a fifth model is timed with them, "slim, block outputs": resnet20 with `--prune_block_outputs`
and every width, the residual stream's included, x F (issue 17; 0.7 gives ~49% of the dense
multiply-adds), and its speed against dense is printed under the table with issue 17's target.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measuring import machine_info, median, progress, scaled_widths  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", type=int, default=125)
    p.add_argument("--calls", type=int, default=10, help="calls per timed block")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--slim_fraction", type=float, default=0.6)
    p.add_argument("--block_outputs_fraction", type=float, default=None,
                   help="also time resnet20 with its block outputs pruned, every width x this")
    p.add_argument("--output", default=None, help="JSON file for every measurement")
    return p.parse_args(argv)


def floor_specs(args):
    """{name: ArchSpec} of the models timed: dense, slim, floor, blocks pruned and, with
    `--block_outputs_fraction`, slim with its block outputs pruned."""
    from cifar10_prune.spec import ArchSpec
    dense = ArchSpec.dense("resnet20").widths
    specs = {name: ArchSpec("resnet20", widths) for name, widths in (
        ("dense", dense), ("slim", scaled_widths(dense, args.slim_fraction)),
        ("floor", dict.fromkeys(dense, 1)), ("blocks pruned", dict.fromkeys(dense, 0)))}
    if args.block_outputs_fraction:
        wide = ArchSpec.dense("resnet20", block_outputs=True).widths
        specs["slim, block outputs"] = ArchSpec(
            "resnet20", scaled_widths(wide, args.block_outputs_fraction), block_outputs=True)
    return specs


def export_runners(specs, images, work_dir, keep):
    """Exports each spec's freshly initialized model (SavedModel with `model.tflite`); returns
    ({(runtime, name): call on `images`}, {name: conv multiply-adds}). The loaded SavedModels
    are appended to `keep`: their signatures need them alive."""
    import tensorflow as tf
    from cifar10_prune import costs, export, models, tflite
    runners, macs = {}, {}
    for name, spec in specs.items():
        model = models.build_model(spec)
        macs[name] = costs.conv_flops(model)
        path = export.export_saved_model(model, os.path.join(work_dir, name.replace(" ", "_")),
                                         tflite_file=True)
        loaded = tf.saved_model.load(path)
        keep.append(loaded)
        serve, x = loaded.signatures["serving_default"], tf.constant(images)
        runners[("SavedModel", name)] = lambda serve=serve, x=x: serve(images=x)["logits"].numpy()
        for threads in (1, 2):
            run = tflite.runner(os.path.join(path, tflite.MODEL_FILE), num_threads=threads)
            runners[("TFLite %d thread%s" % (threads, "s"[:threads > 1]), name)] = (
                lambda run=run: run(images)["logits"])
    return runners, macs


def time_rounds(runners, args):
    """{key: [images/s per round]}: `--calls` calls of each runner per round, after one warm-up
    call each, in an order reversed every other round."""
    rates = {key: [] for key in runners}
    for fn in runners.values():
        fn()
    for rnd in range(args.rounds):
        order = list(runners) if rnd % 2 == 0 else list(reversed(list(runners)))
        for key in order:
            start = time.perf_counter()
            for _ in range(args.calls):
                runners[key]()
            rates[key].append(args.calls * args.batch_size / (time.perf_counter() - start))
        progress("round %d done" % (rnd + 1))
    return rates


def floor_table(rates, macs, runtimes, names):
    """Prints the table (a row per runtime) and returns {runtime: its results}: the rates, the
    measured slim / dense speed and the one the line through dense and floor predicts."""
    mac_ratio = macs["dense"] / macs["slim"]
    print("\n| runtime | dense | slim | floor (width 1) | blocks pruned (width 0) | slim / dense "
          "measured | predicted by the line through dense and floor | target (0.8 x %.3f MACs) |"
          % mac_ratio)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for fmt in runtimes:
        rate = {name: median(rates[(fmt, name)]) for name in names}
        # Seconds per image = fixed + k * multiply-adds, through dense and floor.
        k = (1 / rate["dense"] - 1 / rate["floor"]) / (macs["dense"] - macs["floor"])
        fixed = 1 / rate["floor"] - k * macs["floor"]
        predicted = (1 / rate["dense"]) / (fixed + k * macs["slim"])
        measured = median([s / d for d, s in zip(rates[(fmt, "dense")], rates[(fmt, "slim")])])
        results[fmt] = {"images_per_sec": rate, "slim_vs_dense": measured,
                        "predicted_slim_vs_dense": predicted,
                        "fixed_share_of_dense": fixed * rate["dense"]}
        print("| %s | %.0f | %.0f | %.0f | %.0f | %.2fx | %.2fx (fixed share of dense %.0f%%) "
              "| %.2fx |" % (fmt, rate["dense"], rate["slim"], rate["floor"],
                             rate["blocks pruned"], measured, predicted,
                             100 * fixed * rate["dense"], 0.8 * mac_ratio))
    return results


def block_outputs_lines(rates, macs, results):
    """Prints the block-outputs model's speed against dense per runtime, into `results`."""
    name = "slim, block outputs"
    ratio = macs["dense"] / macs[name]
    print("\nslim, block outputs: %.2f M multiply-adds (%.1f%% of dense); target 0.8 x %.2f = "
          "%.2fx" % (macs[name] / 1e6, 100 / ratio, ratio, 0.8 * ratio))
    for fmt in results:
        speed = median([s / d for d, s in zip(rates[(fmt, "dense")], rates[(fmt, name)])])
        results[fmt]["slim_block_outputs_vs_dense"] = speed
        print("  %s: %.0f images/s, %.2fx dense" % (fmt, median(rates[(fmt, name)]), speed))


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    specs = floor_specs(args)
    images = np.random.RandomState(0).randint(0, 256, (args.batch_size, 32, 32, 3)).astype(
        np.uint8)
    keep = []
    with tempfile.TemporaryDirectory(prefix="inference_floor-") as tmp:
        runners, macs = export_runners(specs, images, tmp, keep)
        progress("exported %s; timing %d rounds x %d calls at batch %d"
                 % (", ".join(specs), args.rounds, args.calls, args.batch_size))
        rates = time_rounds(runners, args)

    print("\nconv multiply-adds per image: " + ", ".join("%s %.2f M" % (n, m / 1e6)
                                                         for n, m in macs.items()))
    results = floor_table(rates, macs, list(dict.fromkeys(f for f, _ in runners)), specs)
    if "slim, block outputs" in specs:
        block_outputs_lines(rates, macs, results)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"machine": machine_info(), "config": vars(args), "conv_macs": macs,
                       "images_per_sec_per_round": {"%s/%s" % k: v for k, v in rates.items()},
                       "results": results}, f, indent=2)
        progress("wrote %s" % args.output)


if __name__ == "__main__":
    main()
