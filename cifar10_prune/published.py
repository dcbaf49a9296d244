"""What the original code's README published for its resnet20 recipe, to set a run beside it.

The README (bobye/batchnorm_prune, cifar10/) shows six log lines of stage 1 and the evals of
checkpoint versions 2 and 3; nothing of stage 0, no multiply-adds, no widths. A run is comparable
when it is resnet20 trained with the published schedule, at full length (`run_experiments.sh`
with no --steps_scale/--quick/--l1_penalties).
"""

# (l1_penalty, max_steps, learning_rate) of stages 0, 1, 2 in the README's commands.
SCHEDULE = ((0.001, 30000, 0.1), (0.005, 50000, 0.1), (0.0, 50000, 0.01))

# The README's log lines of stage 1: step -> (loss, group lasso, fake sparsity).
STAGE1_LOG = {32800: (0.59, 29.12, 0.34), 32900: (0.39, 29.62, 0.34),
              33000: (0.43, 29.11, 0.34), 33100: (0.42, 29.35, 0.34),
              33200: (0.49, 29.45, 0.34), 33300: (0.47, 30.14, 0.34)}
FIRST_LOGGED = min(STAGE1_LOG)

# cifar10_eval.py on checkpoint version v: (total params, precision @ 1, test loss).
EVALS = {2: (177164, 0.9116, 0.2654), 3: (177164, 0.9060, 0.3259)}


def applies(model, rows):
    """True when `rows` (report.collect) are resnet20 stages run with the published schedule,
    stage 1 at least finished: a run that spans sessions is compared as far as it has come."""
    schedule = tuple((r["l1_penalty"], r["steps"], r["learning_rate"]) for r in rows)
    return model == "resnet20" and len(rows) >= 2 and schedule == SCHEDULE[:len(rows)]


def stage1_points():
    """{tag: [(step from the start of stage 0, value)]} of the README's logged lines, placed
    as report.curves places a run's stage 1 (after stage 0's 30,000 steps)."""
    offset = SCHEDULE[0][1]
    return {"group_lasso": [(offset + s, v[1]) for s, v in sorted(STAGE1_LOG.items())],
            "fake_sparsity": [(offset + s, v[2]) for s, v in sorted(STAGE1_LOG.items())]}


def _at(scalars, tag, step):
    values = dict(scalars.get(tag, []))
    return values.get(step)


def comparison(rows, stage1_scalars, baseline=None):
    """Markdown lines: the README's numbers beside this run's (and its dense baseline's).

    `rows`/`baseline` are report.collect rows; `stage1_scalars` the training summaries of the
    run's stage 1 ({tag: [(step, value)]}), read at the README's first logged step.
    """
    def fmt(value, pattern):
        return "-" if value is None else pattern % value

    def evals(stage_rows, version, key):
        row = next((r for r in stage_rows or () if r["version"] == version), None)
        return None if row is None else row[key]

    lines = ["Against the original's README (its published resnet20 run):", "",
             "| | original's README | this run | dense baseline |", "|---|---|---|---|"]
    at = FIRST_LOGGED
    lines.append("| fake sparsity at step %d of stage 1 | %.2f | %s | - |" % (
        at, STAGE1_LOG[at][2], fmt(_at(stage1_scalars, "fake_sparsity", at), "%.2f")))
    lines.append("| group lasso at step %d of stage 1 | %.2f | %s | - |" % (
        at, STAGE1_LOG[at][1], fmt(_at(stage1_scalars, "group_lasso", at), "%.2f")))
    for version, (params, precision, loss) in sorted(EVALS.items()):
        stage = version - 1
        lines.append("| total params after stage %d | %d | %s | %s |" % (
            stage, params, fmt(evals(rows, version, "total_params"), "%d"),
            fmt(evals(baseline, version, "total_params"), "%d")))
        lines.append("| precision @ 1 after stage %d | %.4f | %s | %s |" % (
            stage, precision, fmt(evals(rows, version, "precision_at_1"), "%.4f"),
            fmt(evals(baseline, version, "precision_at_1"), "%.4f")))
        lines.append("| test loss after stage %d | %.4f | %s | %s |" % (
            stage, loss, fmt(evals(rows, version, "test_loss"), "%.4f"),
            fmt(evals(baseline, version, "test_loss"), "%.4f")))
    return lines
