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


# Per stage, the rows of the comparison: (label of stage %d, row key, format, scale).
STAGE_ROWS = (("total params after stage %d", "total_params", "%d", 1),
              ("conv multiply-adds (M) after stage %d", "flops", "%.2f", 1e-6),
              ("fake sparsity at the end of stage %d", "fake_sparsity", "%.2f", 1),
              ("precision @ 1 after stage %d", "precision_at_1", "%.4f", 1),
              ("test loss after stage %d", "test_loss", "%.4f", 1))


def _readme(version, key):
    """The README's value of `key` after checkpoint version `version`, or None."""
    if version not in EVALS:
        return None
    params, precision, loss = EVALS[version]
    return {"total_params": params, "precision_at_1": precision, "test_loss": loss}.get(key)


def comparison(rows, stage1_scalars, baseline=None):
    """Markdown lines: the README's numbers beside this run's (and its dense baseline's), stage
    by stage, with the README's logged step of stage 1 where it falls.

    `rows`/`baseline` are report.collect rows; `stage1_scalars` the training summaries of the
    run's stage 1 ({tag: [(step, value)]}), read at the README's first logged step. A value the
    README does not give, or a stage not finished yet, shows as "-".
    """
    def fmt(value, pattern, scale=1):
        return "-" if value is None else pattern % (value * scale)

    def stage_value(stage_rows, stage, key):
        row = next((r for r in stage_rows or () if r["stage"] == stage), None)
        return None if row is None else row.get(key)

    lines = ["Against the original's README (its published resnet20 run):", "",
             "| | original's README | this run | dense baseline |", "|---|---|---|---|"]
    for stage in range(len(SCHEDULE)):
        if stage == 1:
            at = FIRST_LOGGED
            for tag, name, index in (("fake_sparsity", "fake sparsity", 2),
                                     ("group_lasso", "group lasso", 1)):
                lines.append("| %s at step %d of stage 1 | %.2f | %s | - |" % (
                    name, at, STAGE1_LOG[at][index], fmt(_at(stage1_scalars, tag, at), "%.2f")))
        for label, key, pattern, scale in STAGE_ROWS:
            lines.append("| %s | %s | %s | %s |" % (
                label % stage, fmt(_readme(stage + 1, key), pattern, scale),
                fmt(stage_value(rows, stage, key), pattern, scale),
                fmt(stage_value(baseline, stage, key), pattern, scale)))
    return lines
