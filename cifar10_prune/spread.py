"""Run-to-run spread: the same schedule run with several seeds, summarized stage by stage.

    python -m cifar10_prune.spread --train_dirs A,B,C [--baseline_dirs D,E,F] [--out FILE]

reads the results.json that `python -m cifar10_prune.report` (the end of run_experiments.sh)
wrote in each directory and prints, per stage, mean +- std (sample standard deviation, n - 1)
and min / max of total params, conv multiply-adds, precision @ 1 and test loss; with baselines,
also those of the pruned-minus-dense difference of the last stage, run i paired with baseline i
(give them in the same seed order). Without --baseline_dirs, runs made with
`run_experiments.sh --baseline` bring their own: the dense rows its report keeps in the same
results.json. --out also draws each run's last stage (OUT.svg).
"""
from cifar10_prune import console

console.quiet_tensorflow()

import json
import os

import numpy as np
from absl import flags

from cifar10_prune import charts, cli
from cifar10_prune.flags.spread import define_spread_flags
from cifar10_prune.stages import StageError

METRICS = (("total_params", "total params", "%.0f"), ("flops", "conv multiply-adds (M)", "%.2f"),
           ("precision_at_1", "precision @ 1", "%.4f"), ("test_loss", "test loss", "%.4f"))


def read_results(train_dir):
    """train_dir/results.json: {"stages": rows, "baseline": rows or None, ...}."""
    path = os.path.join(train_dir, "results.json")
    if not os.path.exists(path):
        raise StageError("%s has no results.json: run run_experiments.sh there (or python -m "
                         "cifar10_prune.report --train_dir %s) first" % (train_dir, train_dir))
    with open(path) as f:
        return json.load(f)


def read_rows(train_dir):
    """The stage rows of train_dir/results.json."""
    return read_results(train_dir)["stages"]


def own_baselines(results):
    """The dense rows `run_experiments.sh --baseline` kept next to each run's (`results`: the
    runs' results.json), or None unless every run has them (a mix would pair runs with the
    wrong baselines)."""
    rows = [r.get("baseline") for r in results]
    return rows if all(rows) else None


def stats(values):
    """{mean, std, min, max, n} of `values` (std with n - 1; 0 for one value)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def summarize(runs):
    """[{stage, metric: stats}] over `runs` (each a list of stage rows, all the same stages)."""
    stages = [len(r) for r in runs]
    if len(set(stages)) != 1:
        raise StageError("the runs have different numbers of stages (%s): compare runs of one "
                         "schedule" % ", ".join(map(str, stages)))
    out = []
    for i in range(stages[0]):
        row = {"stage": runs[0][i]["stage"]}
        for key, _, _ in METRICS:
            values = [r[i][key] for r in runs if r[i].get(key) is not None]
            row[key] = stats([x / 1e6 if key == "flops" else x for x in values]) if values else None
        out.append(row)
    return out


def differences(runs, baselines):
    """stats of the last stage's pruned minus dense, run i against baseline i."""
    if len(runs) != len(baselines):
        raise StageError("%d runs but %d baselines: give one baseline per run, in the same seed "
                         "order" % (len(runs), len(baselines)))
    out = {}
    for key, _, _ in METRICS:
        pairs = [(r[-1][key], b[-1][key]) for r, b in zip(runs, baselines)
                 if r[-1].get(key) is not None and b[-1].get(key) is not None]
        scale = 1e-6 if key == "flops" else 1.0
        out[key] = stats([(a - b) * scale for a, b in pairs]) if pairs else None
    return out


def _cell(s, pattern):
    if s is None:
        return "-"
    return ("%s +- %s (%s / %s)" % tuple(pattern % s[k] for k in ("mean", "std", "min", "max"))
            if s["n"] > 1 else pattern % s["mean"])


def markdown(title, summary):
    lines = ["%s (mean +- std (min / max) over %d runs):" % (title, _runs(summary)), "",
             "| stage | " + " | ".join(name for _, name, _ in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for row in summary:
        lines.append("| %d -> v%d | " % (row["stage"], row["stage"] + 1) + " | ".join(
            _cell(row[key], pattern) for key, _, pattern in METRICS) + " |")
    return lines


def _runs(summary):
    return max(s["n"] for row in summary for s in (row[k] for k, _, _ in METRICS) if s)


def spread_svg(series):
    """Precision @ 1 against total parameters after the last stage, a point per run labelled
    with its directory's name; `series` is {name: [(train_dir, stage rows), ...]}."""
    points = {name: [(rows[-1]["total_params"], rows[-1]["precision_at_1"],
                      os.path.basename(os.path.normpath(d))) for d, rows in runs
                     if rows[-1].get("precision_at_1") is not None]
              for name, runs in series.items()}
    return charts.document([charts.scatter_frame(
        "precision @ 1 against parameters, after the last stage",
        "total params", "precision @ 1", points, joined=False)], columns=1)


def main(argv):
    del argv
    fv = flags.FLAGS
    results = [read_results(d) for d in fv.train_dirs]
    runs = [r["stages"] for r in results]
    result = {"runs": fv.train_dirs, "pruned": summarize(runs)}
    lines = markdown("Pruned runs", result["pruned"])
    if fv.baseline_dirs:
        baselines, read_from = [read_rows(d) for d in fv.baseline_dirs], fv.baseline_dirs
    else:
        baselines, read_from = own_baselines(results), fv.train_dirs
    series = {"pruned runs": list(zip(fv.train_dirs, runs))}
    if baselines:
        series["dense baselines"] = list(zip(read_from, baselines))
        diff = differences(runs, baselines)
        # "baselines": the directories whose results.json the dense rows were read from.
        result.update(baselines=read_from, dense=summarize(baselines), difference=diff)
        lines += [""] + markdown("Dense baselines", result["dense"])
        lines += ["", "Last stage, pruned minus dense (run i against baseline i): " + "; ".join(
            "%s %s" % (name, _cell(diff[key], pattern)) for key, name, pattern in METRICS)]
    text = "\n".join(lines) + "\n"
    print(text)
    if fv.out:
        with open(fv.out + ".md", "w") as f:
            f.write(text)
        with open(fv.out + ".json", "w") as f:
            json.dump(result, f, indent=2)
        with open(fv.out + ".svg", "w") as f:
            f.write(spread_svg(series))


def run():
    cli.run(main, define_spread_flags)


if __name__ == "__main__":
    run()
