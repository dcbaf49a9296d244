"""Results of a staged run as a table (Markdown + JSON) and a picture of the channels kept.

    python -m cifar10_prune.report --train_dir /tmp/cifar10_experiment

reads what `run_experiments.sh` leaves in train_dir: the stages `cifar10_train_<v>` (their
architecture.json records how the stage before was trained), the evals `eval_<v>` (TensorBoard
scalars written by eval) and, with --time_saved_models, the SavedModels `saved_model_dense`
and `saved_model`, whose batch inference speed it measures side by side.
"""
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import flags

from cifar10_prune import cli, costs, models, summaries
from cifar10_prune.flags.report import define_report_flags
from cifar10_prune.stages import StageError
from cifar10_prune.spec import ARCHITECTURE_FILE, ArchSpec, read_extra

STAGE_PREFIX = "cifar10_train"


def collect(train_dir):
    """One row per compressed stage version v >= 1 found in train_dir."""
    rows, version = [], 1
    while os.path.exists(os.path.join(train_dir, "%s_%d" % (STAGE_PREFIX, version), ARCHITECTURE_FILE)):
        stage_dir = os.path.join(train_dir, "%s_%d" % (STAGE_PREFIX, version))
        record = read_extra(stage_dir)
        spec = ArchSpec.load(stage_dir)
        model = models.build_model(spec)
        trained = record.get("trained_with", {})
        row = {"stage": version - 1, "version": version, "l1_penalty": trained.get("l1_penalty"),
               "learning_rate": trained.get("learning_rate"), "steps": trained.get("max_steps"),
               "total_params": costs.param_count(model), "flops": costs.conv_flops(model),
               "widths": spec.widths}
        scalars = summaries.read_scalars(os.path.join(train_dir, "eval_%d" % version))
        for key in ("precision_at_1", "test_loss"):
            row[key] = scalars[key][-1][1] if key in scalars else None
        rows.append(row)
        version += 1
    return rows


def time_saved_models(paths, batch_size=125, rounds=7, reps=10):
    """{name: images/s} of each SavedModel's serving_default on one uint8 batch.

    The models take turns, in an order reversed every round so that neither always runs first,
    and each reports its median round; the machine's noise is shared instead of biasing one.
    """
    images = tf.constant(np.random.RandomState(0).randint(0, 256, (batch_size, 32, 32, 3)), tf.uint8)
    serve = {name: tf.saved_model.load(path).signatures["serving_default"] for name, path in paths.items()}
    for fn in serve.values():
        for _ in range(3):  # warm-up
            fn(images=images)["logits"].numpy()
    rates = {name: [] for name in serve}
    order = list(serve)
    for _ in range(rounds):
        for name in order:
            start = time.perf_counter()
            for _ in range(reps):
                serve[name](images=images)["logits"].numpy()
            rates[name].append(reps * batch_size / (time.perf_counter() - start))
        order.reverse()
    return {name: float(np.median(r)) for name, r in rates.items()}


def markdown(rows, speed=None):
    def fmt(value, pattern):
        return "-" if value is None else pattern % value
    lines = ["| stage | l1_penalty | steps | total params | conv multiply-adds | precision @ 1 | test loss |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %d -> v%d | %s | %s | %d | %.2f M | %s | %s |" % (
            r["stage"], r["version"], fmt(r["l1_penalty"], "%g"), fmt(r["steps"], "%d"),
            r["total_params"], r["flops"] / 1e6, fmt(r["precision_at_1"], "%.4f"),
            fmt(r["test_loss"], "%.4f")))
    if rows:
        last = rows[-1]
        lines += ["", "Channels kept in the last stage: " + ", ".join(
            "%s %d" % kv for kv in last["widths"].items())]
    if speed:
        lines += ["", "| SavedModel | images/s (batch 125) |", "|---|---|"]
        lines += ["| %s | %.0f |" % kv for kv in speed.items()]
        if {"dense", "slim"} <= set(speed):
            lines.append("\nslim / dense inference speed: %.2fx" % (speed["slim"] / speed["dense"]))
    return "\n".join(lines) + "\n"


def widths_svg(rows, dense):
    """A bar chart: per prunable layer, the dense width and the width kept after each stage."""
    units = list(dense.widths)
    colors = ["#9ecae1", "#4292c6", "#08519c", "#08306b"]
    bar, gap, height, margin = 8, 14, 160, 32
    group = bar * (len(rows) + 1) + gap
    width = 60 + group * len(units)
    top = max(dense.widths.values())
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="10">' % (width, height + margin + 70)]
    out.append('<text x="5" y="12">labels: kept/dense; channels kept per prunable layer (grey: dense; blue: after '
               'stages %s)</text>' % ", ".join(str(r["stage"]) for r in rows))
    for i, unit in enumerate(units):
        x = 50 + i * group
        series = [dense.widths[unit]] + [r["widths"][unit] for r in rows]
        for j, value in enumerate(series):
            h = height * value / top
            color = "#bdbdbd" if j == 0 else colors[(j - 1) % len(colors)]
            out.append('<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s: %d'
                       '</title></rect>' % (x + j * bar, margin + height - h, bar - 1, h, color, unit, value))
        out.append('<text x="%d" y="%.1f">%d/%d</text>'
                   % (x, margin - 3 + height - height * max(series) / top, series[-1], series[0]))
        out.append('<text x="%d" y="%d" transform="rotate(45 %d %d)">%s</text>'
                   % (x, height + margin + 12, x, height + margin + 12, unit))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_report(train_dir, time_models=False, log=print):
    """Print the results table and write results.md, results.json and widths.svg in train_dir."""
    rows = collect(train_dir)
    if not rows:
        raise StageError("no compressed stages (%s_1/%s) in %s; run run_experiments.sh first"
                         % (STAGE_PREFIX, ARCHITECTURE_FILE, train_dir))
    speed = None
    if time_models:
        paths = {name: os.path.join(train_dir, d) for name, d in
                 (("dense", "saved_model_dense"), ("slim", "saved_model"))
                 if os.path.exists(os.path.join(train_dir, d))}
        speed = time_saved_models(paths) if paths else None
    text = markdown(rows, speed)
    log(text)
    with open(os.path.join(train_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(train_dir, "results.json"), "w") as f:
        json.dump({"stages": rows, "inference_images_per_sec": speed}, f, indent=2)
    dense = ArchSpec.dense(ArchSpec.load(os.path.join(train_dir, "%s_1" % STAGE_PREFIX)).model)
    with open(os.path.join(train_dir, "widths.svg"), "w") as f:
        f.write(widths_svg(rows, dense))
    return rows, speed


def main(argv):
    del argv
    write_report(flags.FLAGS.train_dir, flags.FLAGS.time_saved_models)


def run():
    cli.run(main, define_report_flags)


if __name__ == "__main__":
    run()
