"""Results of a staged run: a table (Markdown + JSON) and pictures (SVG).

    python -m cifar10_prune.report --train_dir /tmp/cifar10_experiment [--baseline_dir DIR]

reads what `run_experiments.sh` leaves in train_dir: the stages `cifar10_train_<v>` (their
architecture.json records how the stage before was trained, their summaries the training
curves), the evals `eval_<v>` (TensorBoard scalars written by eval), optionally a dense
baseline run with the same layout in baseline_dir, and, with --time_saved_models, the
SavedModels (`saved_model` against `saved_model_dense`), whose batch inference speed it measures
side by side. It writes results.md, results.json, widths.svg (channels kept per layer),
curves.svg (fake sparsity and group lasso against the step) and params_precision.svg.
"""
from cifar10_prune import console

console.quiet_tensorflow()  # before TensorFlow loads; its start-up lines are not the user's

import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import flags

from cifar10_prune import charts, cli, costs, models, published, pruning, summaries
from cifar10_prune.flags.report import define_report_flags
from cifar10_prune.pruning import ista
from cifar10_prune.stages import (ARCHITECTURE_FILE, StageError, has_architecture,
                                  read_architecture, read_provenance, run_eval_dir,
                                  run_stage_dir)

# SavedModels run_experiments.sh writes: the slim model, the dense baseline's, and (when no
# baseline was trained) the dense architecture with stage-0 weights, good for timing only.
SAVED_MODELS = (("slim", "saved_model"), ("dense baseline", "saved_model_dense"),
                ("dense architecture (stage-0 weights)", "saved_model_stage0"))


# What train records of a stage trained to a budget (--target_macs / --target_params).
BUDGET_KEYS = ("target_macs", "target_params", "budget_meet_by", "budget_met_at_step",
               "budget_channel_multiple", "final_l1_penalty")


def _budget_line(row):
    """One sentence on the budget of a stage trained to one."""
    b = row["budget"]
    multiple = b.get("budget_channel_multiple") or 1
    blocks = " (widths counted in blocks of %d channels)" % multiple if multiple > 1 else ""
    targets = " and ".join("%.1f%% of the dense %s" % (100 * b[k], what) for k, what in
                           (("target_macs", "conv multiply-adds" + blocks),
                            ("target_params", "parameters")) if b.get(k) is not None)
    by = b.get("budget_meet_by", 1.0)
    met = b.get("budget_met_at_step")
    return ("Stage %d budget: at most %s, to be met by step %d of %d: %s; final lambda %.4g."
            % (row["stage"], targets, round(by * row["steps"]), row["steps"],
               "missed" if met is None else "met at step %d" % met, b["final_l1_penalty"]))


def _end_sparsity(before, after):
    """The original's fake sparsity at the end of a stage: rho-weighted share of the channels
    that its compression removed (rho of the model the stage trained)."""
    model = models.build_model(before)
    # Members of a coupled group (the residual stream's batch norms) share its unit's width.
    unit_of = {layer.name: group.unit for group in pruning.find_groups(model)
               for layer, _ in group.producers}
    zero = total = 0.0
    for name, rho, _ in ista.penalized(model, models.penalties(model)):
        unit = unit_of[name]
        zero += rho * (before.widths[unit] - after.widths[unit])
        total += rho * before.widths[unit]
    return zero / total if total else 0.0


def collect(train_dir):
    """One row per compressed stage version v >= 1 found in train_dir."""
    rows, version = [], 1
    while has_architecture(run_stage_dir(train_dir, version)):
        stage_dir = run_stage_dir(train_dir, version)
        record = read_provenance(stage_dir)
        spec = read_architecture(stage_dir)
        before = run_stage_dir(train_dir, version - 1)
        before = (read_architecture(before) if has_architecture(before)
                  else spec.unpruned())
        model = models.build_model(spec)
        trained = record.get("trained_with", {})
        row = {"stage": version - 1, "version": version, "l1_penalty": trained.get("l1_penalty"),
               "learning_rate": trained.get("learning_rate"), "steps": trained.get("max_steps"),
               "total_params": costs.param_count(model), "flops": costs.conv_flops(model),
               "fake_sparsity": _end_sparsity(before, spec),
               "absorbed": record.get("absorbed_pruned_constants", True),
               "recalibrated_bn": record.get("recalibrated_bn"), "widths": spec.widths,
               "budget": {k: trained[k] for k in BUDGET_KEYS if k in trained} or None,
               "coupled_threshold": trained.get("coupled_threshold", False)}
        scalars = summaries.read_scalars(run_eval_dir(train_dir, version))
        for key in ("precision_at_1", "test_loss"):
            row[key] = scalars[key][-1][1] if key in scalars else None
        rows.append(row)
        version += 1
    return rows


def curves(train_dir, tags=("fake_sparsity", "group_lasso")):
    """({tag: [(step, value), ..., None, ...]}, [stage start steps]) over all stages of
    train_dir, the steps counted from the start of stage 0 (each stage's global step restarts
    at 0), None between stages."""
    out = {tag: [] for tag in tags}
    starts, offset, version = [], 0, 0
    while os.path.isdir(run_stage_dir(train_dir, version)):
        scalars = summaries.read_scalars(run_stage_dir(train_dir, version))
        if not scalars:
            break
        starts.append(offset)
        last = 0
        for tag in tags:
            points = sorted(dict(scalars.get(tag, [])).items())  # a resumed step logs once
            out[tag] += [(offset + step, value) for step, value in points] + [None]
            last = max([last] + [step for step, _ in points])
        following = run_stage_dir(train_dir, version + 1)
        trained = (read_provenance(following).get("trained_with", {})
                   if has_architecture(following) else {})
        offset += trained.get("max_steps") or last
        version += 1
    return out, starts[1:]


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


def _table(rows, title):
    def fmt(value, pattern):
        return "-" if value is None else pattern % value
    lines = ["%s:" % title, "",
             "| stage | l1_penalty | steps | total params | conv multiply-adds | fake sparsity "
             "| precision @ 1 | test loss |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %d -> v%d | %s | %s | %d | %.2f M | %.2f | %s | %s |" % (
            r["stage"], r["version"], fmt(r["l1_penalty"], "%g"), fmt(r["steps"], "%d"),
            r["total_params"], r["flops"] / 1e6, r["fake_sparsity"],
            fmt(r["precision_at_1"], "%.4f"), fmt(r["test_loss"], "%.4f")))
    return lines


def _versus(rows, baseline):
    """The pruned-vs-dense line, for the last stage both runs have finished: while one run is
    ahead of the other (runs that span sessions), its newer stages are not set against older
    ones of the other."""
    dense = {r["stage"]: r for r in baseline}
    a = next((r for r in reversed(rows) if r["stage"] in dense), None)
    b = dense[a["stage"]] if a else None
    if a is None or a["precision_at_1"] is None or b["precision_at_1"] is None:
        return []
    when = "" if a is rows[-1] and b is baseline[-1] else (
        ", both after stage %d (the last stage both have finished)" % a["stage"])
    return ["", "Pruned vs dense baseline%s: %.1f%% of the parameters, %.1f%% of the conv "
            "multiply-adds, precision @ 1 %+.2f points (%.4f vs %.4f)."
            % (when, 100.0 * a["total_params"] / b["total_params"], 100.0 * a["flops"] / b["flops"],
               100.0 * (a["precision_at_1"] - b["precision_at_1"]),
               a["precision_at_1"], b["precision_at_1"])]


def markdown(rows, speed=None, baseline=None):
    """The report's text: the run's table, the baseline's, the comparison and the speeds."""
    lines = _table(rows, "Pruned run")
    if rows:
        last = rows[-1]
        lines += ["", "Channels kept in the last stage: " + ", ".join(
            "%s %d" % kv for kv in last["widths"].items())]
        budgets = [_budget_line(r) for r in rows if r.get("budget")]
        if budgets:
            lines += [""] + budgets
        notes = []
        if any(r["recalibrated_bn"] for r in rows):
            notes.append("BN statistics re-estimated after each compression and before each eval")
        coupled = [str(r["stage"]) for r in rows if r.get("coupled_threshold")]
        if coupled:
            notes.append("stage%s %s: each residual-stream channel's gammas thresholded as one "
                         "(--coupled_threshold)" % ("s"[:len(coupled) > 1], ", ".join(coupled)))
        if not all(r["absorbed"] for r in rows):
            notes.append("pruned channels' constants dropped, as the original code")
        if notes:
            lines += ["", "(" + "; ".join(notes) + ")"]
    if baseline:
        lines += [""] + _table(baseline, "Dense baseline (same schedule, l1_penalty 0)")
        lines += _versus(rows, baseline)
    if speed:
        lines += ["", "| SavedModel | images/s (batch 125) |", "|---|---|"]
        lines += ["| %s | %.0f |" % kv for kv in speed.items()]
        dense = [name for name in speed if name != "slim"]
        if "slim" in speed and dense:
            lines.append("\nslim / %s inference speed: %.2fx"
                         % (dense[0], speed["slim"] / speed[dense[0]]))
    return "\n".join(lines) + "\n"


ORIGINAL_SERIES = "original's README (stage 1)"


def curves_svg(train_dir, baseline_dir=None, original=False):
    """Fake sparsity and group lasso against the step, stage boundaries dashed; with
    `original`, the README's logged points of stage 1 beside them."""
    frames = []
    runs = {"pruned run": curves(train_dir)}
    if baseline_dir:
        runs["dense baseline"] = curves(baseline_dir)
    marks = runs["pruned run"][1]
    for tag, title in (("fake_sparsity", "fake sparsity"), ("group_lasso", "group lasso")):
        series = {name: c[tag] for name, (c, _) in runs.items() if c[tag]}
        if original:
            series[ORIGINAL_SERIES] = published.stage1_points()[tag]
        frames.append(charts.line_frame("%s (stages start at the dashed lines)" % title,
                                        "step from the start of stage 0", title, series, marks,
                                        dots=(ORIGINAL_SERIES,)))
    return charts.document(frames)


def params_precision_svg(rows, baseline=None):
    """Precision @ 1 against total parameters after each stage, for the run and its baseline."""
    def points(stage_rows):
        return [(r["total_params"], r["precision_at_1"], "stage %d" % r["stage"])
                for r in stage_rows if r["precision_at_1"] is not None]
    series = {"pruned run": points(rows)}
    if baseline:
        series["dense baseline"] = points(baseline)
    frame = charts.scatter_frame("precision @ 1 against parameters, after each stage",
                                 "total params", "precision @ 1", series)
    return charts.document([frame], columns=1)


def write_report(train_dir, time_models=False, baseline_dir=None, log=print):
    """Print the results and write results.md, results.json and the SVG charts in train_dir."""
    rows = collect(train_dir)
    first = os.path.join(run_stage_dir("", 1), ARCHITECTURE_FILE)  # relative to a train_dir
    if not rows:
        raise StageError("no compressed stages (%s) in %s; run run_experiments.sh first"
                         % (first, train_dir))
    baseline = None
    if baseline_dir:
        baseline = collect(baseline_dir)
        if not baseline:
            raise StageError("--baseline_dir %s holds no compressed stages (%s)"
                             % (baseline_dir, first))
    speed = None
    if time_models:
        paths = {name: os.path.join(train_dir, d) for name, d in SAVED_MODELS
                 if os.path.exists(os.path.join(train_dir, d))}
        speed = time_saved_models(paths) if paths else None
    text = markdown(rows, speed, baseline)
    first_spec = read_architecture(run_stage_dir(train_dir, 1))  # the stage-0 compression
    original = published.applies(first_spec.model, rows)
    if original:
        stage1 = summaries.read_scalars(run_stage_dir(train_dir, 1))
        text += "\n" + "\n".join(published.comparison(rows, stage1, baseline)) + "\n"
    log(text)
    outputs = {
        "results.md": text,
        "results.json": json.dumps({"stages": rows, "baseline": baseline,
                                    "inference_images_per_sec": speed}, indent=2),
        "widths.svg": charts.widths_svg(first_spec.dense_widths,
                                        [("stage %d" % r["stage"], r["widths"]) for r in rows]),
        "curves.svg": curves_svg(train_dir, baseline_dir, original),
        "params_precision.svg": params_precision_svg(rows, baseline),
    }
    for name, content in outputs.items():
        with open(os.path.join(train_dir, name), "w") as f:
            f.write(content)
    return rows, speed


def main(argv):
    del argv
    fv = flags.FLAGS
    write_report(fv.train_dir, fv.time_saved_models, fv.baseline_dir)


def run():
    cli.run(main, define_report_flags)


if __name__ == "__main__":
    run()
