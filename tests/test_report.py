"""The report's comparisons: with the original's published run (cifar10_prune.published) and with
the dense baseline."""
import re

import tensorflow as tf

from cifar10_prune import published, report, summaries
from cifar10_prune.stages import run_stage_dir


def _rows(schedule, params=(281304, 200000, 200000), precision=(0.7, 0.88, 0.9)):
    return [{"stage": i, "version": i + 1, "l1_penalty": l1, "steps": steps,
             "learning_rate": lr, "total_params": params[i], "precision_at_1": precision[i],
             "test_loss": 1.0 - precision[i], "flops": params[i] * 148.0,
             "fake_sparsity": 0.1 * i if l1 else 0.0}
            for i, (l1, steps, lr) in enumerate(schedule)]


def _cells(lines, label):
    """The cells of the table row whose first cell starts with `label`."""
    row = next(l for l in lines if l.startswith("| " + label))
    return [c.strip() for c in row.strip("|").split("|")]


def test_only_the_published_resnet20_schedule_is_compared():
    full = [(0.001, 30000, 0.1), (0.005, 50000, 0.1), (0.0, 50000, 0.01)]
    assert published.applies("resnet20", _rows(full))
    assert not published.applies("cnn4", _rows(full))
    scaled = [(l1, steps // 10, lr) for l1, steps, lr in full]  # --steps_scale 0.1
    assert not published.applies("resnet20", _rows(scaled))
    assert published.applies("resnet20", _rows(full)[:2])  # stage 2 not finished: so far
    assert not published.applies("resnet20", _rows(full)[:1])  # nothing the README shows yet
    assert not published.applies("resnet20", _rows([full[0], full[2]]))


def test_comparison_puts_each_run_in_its_column():
    full = [(0.001, 30000, 0.1), (0.005, 50000, 0.1), (0.0, 50000, 0.01)]
    run = _rows(full, params=(281304, 180001, 180001), precision=(0.8, 0.9012, 0.9034))
    dense = _rows([(0.0, s, lr) for _, s, lr in full], params=(281304,) * 3,
                  precision=(0.81, 0.9111, 0.9222))
    step = min(published.STAGE1_LOG)
    # Logged every 100 steps: the README's step is read, not its neighbours.
    scalars = {"fake_sparsity": [(step - 100, 0.1), (step, 0.31), (step + 100, 0.5)],
               "group_lasso": [(step - 100, 40.0), (step, 28.5), (step + 100, 20.0)]}
    lines = published.comparison(run, scalars, dense)

    readme_loss, readme_lasso, readme_sparsity = published.STAGE1_LOG[step]
    assert _cells(lines, "fake sparsity at step")[1:] == ["%.2f" % readme_sparsity, "0.31", "-"]
    assert _cells(lines, "group lasso at step")[1:] == ["%.2f" % readme_lasso, "28.50", "-"]
    params, precision, _ = published.EVALS[3]
    assert _cells(lines, "total params after stage 2")[1:] == [str(params), "180001", "281304"]
    assert _cells(lines, "precision @ 1 after stage 1")[2:] == ["0.9012", "0.9111"]
    assert _cells(lines, "precision @ 1 after stage 2")[1:] == ["%.4f" % precision, "0.9034", "0.9222"]
    # What the README does not give (stage 0, multiply-adds, fake sparsity at a stage's end)
    # stays empty in its column, and this run's values are still shown, in millions for MACs.
    assert _cells(lines, "precision @ 1 after stage 0")[1:] == ["-", "0.8000", "0.8100"]
    assert _cells(lines, "conv multiply-adds (M) after stage 1")[1:] == [
        "-", "%.2f" % (180001 * 148.0 / 1e6), "%.2f" % (281304 * 148.0 / 1e6)]
    assert _cells(lines, "fake sparsity at the end of stage 1")[1:] == ["-", "0.10", "0.00"]
    # In the order a run goes: stage 0, the README's logged step of stage 1, stage 1's end.
    labels = [l.split("|")[1].strip() for l in lines if l.startswith("| ") and "README" not in l]
    assert labels.index("test loss after stage 0") < labels.index(
        "fake sparsity at step %d of stage 1" % step) < labels.index("total params after stage 1")
    # Without a baseline or the logged step, those cells say so instead of inventing a value.
    bare = published.comparison(run[:2], {}, None)
    assert _cells(bare, "fake sparsity at step")[2] == "-"
    assert _cells(bare, "precision @ 1 after stage 1")[3] == "-"
    assert _cells(bare, "precision @ 1 after stage 2")[1:] == ["%.4f" % precision, "-", "-"]


def test_readme_points_sit_where_the_report_places_stage_1():
    points = published.stage1_points()
    steps = sorted(published.STAGE1_LOG)
    stage0_steps = published.SCHEDULE[0][1]
    assert [s for s, _ in points["fake_sparsity"]] == [stage0_steps + s for s in steps]
    assert [v for _, v in points["group_lasso"]] == [published.STAGE1_LOG[s][1] for s in steps]
    # The chart draws them as markers beside the run's line, each where its step and value
    # put it on the frame's axes.
    frame = report.charts.line_frame("t", "x", "y", {"run": [(0, 0.0), (80000, 0.3)],
                                                     "readme": points["fake_sparsity"]},
                                     dots=("readme",))
    svg = frame.svg()
    assert svg.count("<polyline") == 1
    circles = [(float(x), float(y)) for x, y in
               re.findall(r'<circle cx="([-\d.]+)" cy="([-\d.]+)"', svg)]
    assert circles == [(round(frame.px(s), 1), round(frame.py(v), 1))
                       for s, v in points["fake_sparsity"]]


def test_curves_draw_the_readme_points_as_markers_beside_the_runs_lines(tmp_path):
    writer = tf.summary.create_file_writer(run_stage_dir(str(tmp_path), 0))
    for step in (0, 100, 200):
        summaries.scalars(writer, step, {"fake_sparsity": step / 1000, "group_lasso": 300 - step})
    writer.close()
    plain, with_readme = (report.curves_svg(str(tmp_path), original=o) for o in (False, True))
    # Two frames (fake sparsity, group lasso): the run is a line in each, with or without the
    # README; the README adds one marker per logged line to each frame and no line.
    assert plain.count("<polyline") == with_readme.count("<polyline") == 2
    assert plain.count("<circle") == 0
    assert with_readme.count("<circle") == 2 * len(published.STAGE1_LOG)


def _versus_cells(text):
    line = next(l for l in text.splitlines() if l.startswith("Pruned vs dense baseline"))
    return line, [float(x) for x in re.findall(r"[-+]?\d+\.\d+", line.split(":", 1)[1])]


def test_pruned_vs_dense_compares_the_last_stage_both_finished():
    full = [(0.001, 30000, 0.1), (0.005, 50000, 0.1), (0.0, 50000, 0.01)]
    run = _rows(full, params=(281012, 201144, 201144), precision=(0.867, 0.8721, 0.9))
    dense = _rows([(0.0, s, lr) for _, s, lr in full], params=(281304,) * 3,
                  precision=(0.8653, 0.88, 0.91))
    for rows in (run, dense):
        for r in rows:
            r.update(flops=r["total_params"] * 150.0, widths={"c": 1}, fake_sparsity=0.0,
                     recalibrated_bn=False, absorbed=True)
    # Both at the end of stage 1: the line as it always was, naming no stage.
    line, _ = _versus_cells(report.markdown(run[:2], baseline=dense[:2]))
    assert "after stage" not in line
    # The dense baseline one stage behind: the pruned run's stage 0 against its stage 0.
    line, numbers = _versus_cells(report.markdown(run[:2], baseline=dense[:1]))
    assert "after stage 0" in line
    assert numbers == [round(100.0 * 281012 / 281304, 1), round(100.0 * 281012 / 281304, 1),
                       round(100 * (0.867 - 0.8653), 2), 0.867, 0.8653]
    # The pruned run behind: its stage 1 against the baseline's stage 1, not stage 2.
    line, numbers = _versus_cells(report.markdown(run[:2], baseline=dense))
    assert "after stage 1" in line and numbers[-2:] == [0.8721, 0.88]
