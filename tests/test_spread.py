"""The spread of repeated runs, against NumPy on the rows the report writes."""
import json
import re

import numpy as np

from conftest import one_error_line, run_cli


def random_rows(rng, stages=3):
    return [{"stage": s, "version": s + 1, "total_params": int(rng.integers(150000, 281304)),
             "flops": float(rng.integers(20e6, 41.6e6)), "precision_at_1": float(rng.uniform(.8, .9)),
             "test_loss": float(rng.uniform(.3, .6))} for s in range(stages)]


def write_run(directory, rng, stages=3, baseline=None):
    rows = random_rows(rng, stages)
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps({"stages": rows, "baseline": baseline}))
    return rows


def test_spread_table_and_paired_differences(tmp_path):
    rng = np.random.default_rng(0)
    runs = [write_run(tmp_path / ("p%d" % i), rng) for i in range(3)]
    dense = [write_run(tmp_path / ("d%d" % i), rng) for i in range(3)]
    out = run_cli("spread", "--train_dirs", ",".join(str(tmp_path / ("p%d" % i)) for i in range(3)),
                  "--baseline_dirs", ",".join(str(tmp_path / ("d%d" % i)) for i in range(3)),
                  "--out", tmp_path / "spread").stdout
    result = json.load(open(tmp_path / "spread.json"))
    for s in range(3):
        p = np.array([r[s]["precision_at_1"] for r in runs])
        got = result["pruned"][s]["precision_at_1"]
        np.testing.assert_allclose([got["mean"], got["std"], got["min"], got["max"]],
                                   [p.mean(), p.std(ddof=1), p.min(), p.max()])
    diff = np.array([r[-1]["total_params"] - d[-1]["total_params"] for r, d in zip(runs, dense)])
    np.testing.assert_allclose(result["difference"]["total_params"]["mean"], diff.mean())
    np.testing.assert_allclose(result["difference"]["total_params"]["std"], diff.std(ddof=1))
    p = np.array([r[2]["precision_at_1"] for r in runs])
    row = re.search(r"^\| 2 -> v3 \| .*$", out, re.M).group(0)
    assert "%.4f +- %.4f (%.4f / %.4f)" % (p.mean(), p.std(ddof=1), p.min(), p.max()) in row
    assert (tmp_path / "spread.md").read_text().strip() == out.strip()
    # The chart: a point per run and per baseline, named after its directory, unjoined; higher
    # precision drawn higher (smaller y), more parameters further right.
    svg = (tmp_path / "spread.svg").read_text()
    points = {name: (float(x), float(y)) for x, y, name in re.findall(
        r'<circle cx="([-\d.]+)" cy="([-\d.]+)"[^>]*><title>(\w+)</title>', svg)}
    assert sorted(points) == ["d0", "d1", "d2", "p0", "p1", "p2"] and "<polyline" not in svg
    for rows, prefix in ((runs, "p"), (dense, "d")):
        last = [r[-1] for r in rows]
        px = [points[prefix + str(i)] for i in range(3)]
        assert np.argsort([p[0] for p in px]).tolist() == np.argsort(
            [r["total_params"] for r in last]).tolist()
        assert np.argsort([p[1] for p in px]).tolist() == np.argsort(
            [-r["precision_at_1"] for r in last]).tolist()


def test_spread_refuses_unpaired_or_missing_runs(tmp_path):
    rng = np.random.default_rng(1)
    write_run(tmp_path / "a", rng)
    write_run(tmp_path / "b", rng, stages=2)
    proc = run_cli("spread", "--train_dirs", "%s,%s" % (tmp_path / "a", tmp_path / "b"), check=False)
    one_error_line(proc, "different numbers of stages (3, 2)")
    proc = run_cli("spread", "--train_dirs", tmp_path / "a", "--baseline_dirs",
                   "%s,%s" % (tmp_path / "a", tmp_path / "a"), check=False)
    one_error_line(proc, "1 runs but 2 baselines")
    proc = run_cli("spread", "--train_dirs", tmp_path / "nothing", check=False)
    one_error_line(proc, "has no results.json")


def test_spread_pairs_each_run_with_the_baseline_it_ran_with(tmp_path):
    """run_experiments.sh --baseline keeps the dense rows in the run's own results.json."""
    rng = np.random.default_rng(2)
    dense = [random_rows(rng) for _ in range(3)]
    runs = [write_run(tmp_path / ("p%d" % i), rng, baseline=dense[i]) for i in range(3)]
    run_cli("spread", "--train_dirs", ",".join(str(tmp_path / ("p%d" % i)) for i in range(3)),
            "--out", tmp_path / "spread")
    result = json.load(open(tmp_path / "spread.json"))
    diff = np.array([r[-1]["precision_at_1"] - d[-1]["precision_at_1"] for r, d in zip(runs, dense)])
    got = result["difference"]["precision_at_1"]
    np.testing.assert_allclose([got["mean"], got["std"], got["min"], got["max"]],
                               [diff.mean(), diff.std(ddof=1), diff.min(), diff.max()])
    loss = np.array([d[1]["test_loss"] for d in dense])
    np.testing.assert_allclose(result["dense"][1]["test_loss"]["mean"], loss.mean())
    # One run without a baseline: no pairing at all rather than a shifted one.
    write_run(tmp_path / "p3", rng)
    run_cli("spread", "--train_dirs", ",".join(str(tmp_path / ("p%d" % i)) for i in range(4)),
            "--out", tmp_path / "mixed")
    assert "difference" not in json.load(open(tmp_path / "mixed.json"))
