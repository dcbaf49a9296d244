#!/usr/bin/env python
"""Mixed precision (bfloat16) against float32 training speed on this machine, and why.

    python benchmarks/mixed_precision.py --data_dir /tmp/cifar10_data    # full run, ~2-3 min
    python benchmarks/mixed_precision.py --quick                         # smoke run

What `--use_fp16` buys on a CPU, where it picks the "mixed_bfloat16" policy. On the same real
training dataset (`data.train_dataset`, batch `--batch_size`) it measures, interleaved:

  1. float32   images/s of our `training.Trainer.fit` on dense resnet20 with
               `ista.ISTA(l1_penalty=0.005)` (the real training step: ISTA + EMA + weight decay),
               the model built as `models.build_model(..., dtype_policy="float32")`;
  2. mixed     the same with `dtype_policy="mixed_bfloat16"` (what `--use_fp16` trains with on
               a CPU); 2/1 is their ratio, target >= 1.3 on a CPU with bfloat16 instructions;
  3. matmul    the machine's float32 and bfloat16 `tf.matmul` rates (an n x n x n product,
               `--matmul_size`), i.e. what 16-bit arithmetic can gain here at best;
  4. share     the training runs' arithmetic rate as a share of the float32 matmul rate:
               conv multiply-adds per image (`costs.conv_flops`) x 2 FLOPs x 3 (forward and the
               two backward convolutions) x images/s / matmul FLOP/s. Convolutions only, so a
               lower bound of the arithmetic done;

and then, with `--profile_steps` > 0, runs a few steps of 1 and 2 under `tf.profiler` and
reports the op time per step by op type, float32 against mixed: where the gain goes.

Each training measurement times `--steps` steps (perf_counter around one fit call) after a
warm-up fit (`--warmup_steps`, also pays for tracing). The three jobs are repeated `--rounds`
times, in an order rotated every round, because the machine is shared and noisy; ratios are
computed within each round (from measurements taken next to each other) and their median is
reported. Threading is left at the TensorFlow defaults.

The profile of the first version of this measurement pointed at batch norm (a dozen float32
element-wise ops per layer, no faster under mixed precision); `PrunableBatchNorm` has since
trained through TensorFlow's fused kernel (see benchmarks/README.md).

Prints a Markdown table and writes everything (raw measurements, medians, per-round ratios, the
profile, machine and versions) as JSON to `--output`.
"""
import collections
import datetime
import glob
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the helpers next to this file, also when this file is imported
    sys.path.insert(0, HERE)

from measuring import (load_average, machine_info, measurement_parser, median,  # noqa: E402
                       parse_measurement, progress, rotate, spread, verdict, write_result)
from training_speed import OurTrainer, warm_up  # noqa: E402

TARGET_MIXED_VS_FP32 = 1.3  # mixed / float32 training images/s >= 1.3 (CPU with bfloat16)
RUNS = (("ours_ista", "float32"), ("ours_mixed", "mixed_bfloat16"))  # JSON name, dtype policy

# Defaults of a full run, and what --quick shrinks them to (explicit flags always win).
FULL = dict(steps=30, warmup_steps=5, rounds=5, matmul_calls=10, profile_steps=10)
QUICK = dict(steps=3, warmup_steps=1, rounds=2, matmul_calls=2, profile_steps=2)


def parse_args(argv=None):
    p = measurement_parser(__doc__, FULL, QUICK, "steps of the untimed warm-up fit of each run",
                           "interleaved repetitions of the float32, mixed and matmul measurements")
    p.add_argument("--matmul_size", type=int, default=2048,
                   help="n of the n x n x n matmul timing the machine's float32 and bfloat16 "
                   "rates (default %(default)s)")
    p.add_argument("--matmul_calls", type=int, help="matmuls per dtype and round "
                   "(default %d, --quick %d)" % (FULL["matmul_calls"], QUICK["matmul_calls"]))
    p.add_argument("--profile_steps", type=int, help="after the rounds, steps of the float32 "
                   "and the mixed run under tf.profiler, reported as op time by op type; 0 = off "
                   "(default %d, --quick %d)" % (FULL["profile_steps"], QUICK["profile_steps"]))
    p.add_argument("--l1_penalty", type=float, default=0.005,
                   help="ISTA lambda of both training runs (default %(default)s)")
    p.add_argument("--output", help="JSON results file (default benchmarks/results-mixed.json; "
                   "benchmarks/results-mixed-quick.json with --quick, so a smoke run never "
                   "overwrites a measurement)")
    args = parse_measurement(p, argv, FULL, QUICK,
                             ("steps", "warmup_steps", "rounds", "matmul_size", "matmul_calls"))
    if args.profile_steps < 0:
        p.error("--profile_steps must be >= 0")
    if args.output is None:
        args.output = os.path.join(
            HERE, "results-mixed-quick.json" if args.quick else "results-mixed.json")
    return args


def cpu_bf16_flags():
    """The CPU's bfloat16-related feature flags (e.g. avx512_bf16, amx_bf16), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(x for x in line.split(":", 1)[1].split() if "bf16" in x)
    except OSError:
        pass
    return None


def op_time_by_type(logdir):
    """{op type: seconds} summed over every TF op event of the newest tf.profiler trace in
    `logdir` (all threads, so the total can exceed wall time), or None if it cannot be read
    (the XPlane proto module is internal to TensorFlow)."""
    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError:
        return None
    files = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not files:
        return None
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    seconds = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "/" in name:  # a TF op: "scope/op_name:OpType"
                    seconds[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return dict(seconds)


def per_round(measurements, name, key="images_per_sec"):
    """`key` of each round's measurement of `name` (a run, or "matmul")."""
    return [m[key] for m in measurements[name]]


def measure_matmul(inputs, calls):
    """GFLOP/s of `calls` n x n x n products per dtype of `inputs` ({dtype: n x n tensor})."""
    import tensorflow as tf
    matmul_fn = tf.function(lambda a: tf.reduce_sum(tf.matmul(a, a)))  # 1 value fetched
    out = {}
    for dt, a in inputs.items():
        n = int(a.shape[0])
        matmul_fn(a).numpy()  # traced and warm
        t0 = time.perf_counter()
        for _ in range(calls):
            matmul_fn(a).numpy()
        out[dt.name + "_gflops"] = 2.0 * n ** 3 * calls / (time.perf_counter() - t0) / 1e9
    return out


def measure_rounds(args, runners):
    """The interleaved rounds: each runner's fit of `--steps` and the matmul rates, in an order
    rotated every round; {"ours_ista" | "ours_mixed" | "matmul": [one result per round]}."""
    import tensorflow as tf
    mm = args.matmul_size
    inputs = {dt: tf.cast(tf.random.stateless_uniform((mm, mm), (1, 2)), dt)
              for dt in (tf.float32, tf.bfloat16)}
    measurements = {name: [] for name, _ in RUNS}
    measurements["matmul"] = []
    jobs = [(r.name, (lambda r=r: r.fit(args.steps))) for r in runners]
    jobs.append(("matmul", lambda: measure_matmul(inputs, args.matmul_calls)))
    for rnd in range(args.rounds):
        for name, job in rotate(jobs, rnd):
            result = job()
            result["round"] = rnd
            measurements[name].append(result)
            if name == "matmul":
                progress("round %d  matmul     float32 %.1f, bfloat16 %.1f GFLOP/s"
                         % (rnd + 1, result["float32_gflops"], result["bfloat16_gflops"]))
            else:
                progress("round %d  %-10s %9.1f images/s (in-loop %s)"
                         % (rnd + 1, name, result["images_per_sec"],
                            "%.1f" % result["in_loop_images_per_sec"]
                            if result["in_loop_images_per_sec"] else "-"))
    return measurements


def mixed_ratios(measurements, train_flops_per_image):
    """Ratios within each round (measurements taken next to each other): mixed against float32
    training, bfloat16 against float32 matmul, and the training runs' share of the matmul
    rates; {name: [one ratio per round]}."""
    def rates(name, key="images_per_sec"):
        return per_round(measurements, name, key)

    fp32_mm, bf16_mm = rates("matmul", "float32_gflops"), rates("matmul", "bfloat16_gflops")

    def share(run, matmul_gflops):
        return [train_flops_per_image * r / 1e9 / g for r, g in zip(rates(run), matmul_gflops)]

    return {
        "mixed_vs_fp32": [m / f for m, f in zip(rates("ours_mixed"), rates("ours_ista"))],
        "in_loop_mixed_vs_fp32": [
            m / f for m, f in zip(rates("ours_mixed", "in_loop_images_per_sec"),
                                  rates("ours_ista", "in_loop_images_per_sec")) if m and f],
        "cpu_time_fp32_vs_mixed": [f / m for f, m in zip(rates("ours_ista", "cpu_ms_per_image"),
                                                         rates("ours_mixed", "cpu_ms_per_image"))],
        "matmul_bf16_vs_fp32": [b / f for b, f in zip(bf16_mm, fp32_mm)],
        "fp32_share_of_fp32_matmul": share("ours_ista", fp32_mm),
        "mixed_share_of_fp32_matmul": share("ours_mixed", fp32_mm),
        "mixed_share_of_bf16_matmul": share("ours_mixed", bf16_mm),
    }


def profile_runs(runners, steps, work_dir):
    """{runner name: op time by type} of `steps` steps of each runner under tf.profiler; a
    runner whose trace cannot be read is left out."""
    import tensorflow as tf
    profiles = {}
    for runner in runners if steps else ():
        logdir = os.path.join(work_dir, "profile_" + runner.name)
        tf.profiler.experimental.start(logdir)
        wall = runner.fit(steps)["seconds"]
        tf.profiler.experimental.stop()
        by_type = op_time_by_type(logdir)
        if by_type is None:
            progress("  (could not read the profile of %s)" % runner.name)
            continue
        profiles[runner.name] = {"steps": steps, "wall_seconds": wall,
                                 "op_seconds_by_type": by_type}
        progress("profiled %s: %d steps in %.2f s, %.2f s of op time"
                 % (runner.name, steps, wall, sum(by_type.values())))
    return profiles


def summarize(measurements, ratios):
    """Medians over the rounds: of each run's rates and CPU time, of the matmul rates and of
    each per-round ratio."""
    def med(name, key):
        return median(per_round(measurements, name, key))
    return {
        "median_images_per_sec": {name: med(name, "images_per_sec") for name, _ in RUNS},
        # A round whose in-loop rate could not be read from the log has None.
        "median_in_loop_images_per_sec": {
            name: median([x for x in per_round(measurements, name, "in_loop_images_per_sec")
                          if x]) for name, _ in RUNS},
        "median_cpu_ms_per_image": {name: med(name, "cpu_ms_per_image") for name, _ in RUNS},
        "median_matmul_gflops": {key: med("matmul", key)
                                 for key in ("float32_gflops", "bfloat16_gflops")},
        "ratio_medians": {k: median(v) for k, v in ratios.items()},
    }


def table_rows(args, measurements, ratios, summary, train_flops_per_image, checks):
    """The Markdown table: rows 1-4 with median, range over the rounds, target and result."""
    def rates(name, key="images_per_sec"):
        return per_round(measurements, name, key)

    def pct(values):
        return [100 * x for x in values]

    med, mm = summary["median_images_per_sec"], summary["median_matmul_gflops"]
    rm = summary["ratio_medians"]
    fp32_mm, bf16_mm = rates("matmul", "float32_gflops"), rates("matmul", "bfloat16_gflops")
    return [
        "| # | Measurement | median | range over rounds | target | result |",
        "|---|---|---:|---:|---|---|",
        "| 1 | Ours: `Trainer.fit`, float32, ISTA l1=%g (+EMA, weight decay), images/s "
        "| %.1f | %s | | |"
        % (args.l1_penalty, med["ours_ista"], spread(rates("ours_ista"), "%.1f")),
        "| 2 | Ours: the same, `mixed_bfloat16` (`--use_fp16` on a CPU), images/s | %.1f | %s "
        "| | |" % (med["ours_mixed"], spread(rates("ours_mixed"), "%.1f")),
        "| 2/1 | Mixed / float32 training images/s | %.3f | %s | >= %.1f | %s |"
        % (rm["mixed_vs_fp32"], spread(ratios["mixed_vs_fp32"], "%.3f"),
           TARGET_MIXED_VS_FP32, verdict(checks["mixed_vs_fp32"])),
        "| 3 | Matmul %d^3, float32 / bfloat16 GFLOP/s | %.1f / %.1f | %s / %s | | |"
        % (args.matmul_size, mm["float32_gflops"], mm["bfloat16_gflops"],
           spread(fp32_mm, "%.1f"), spread(bf16_mm, "%.1f")),
        "| 3' | Matmul bfloat16 / float32 | %.2fx | %s | | |"
        % (rm["matmul_bf16_vs_fp32"], spread(ratios["matmul_bf16_vs_fp32"], "%.2f")),
        "| 4 | Training FLOP/s as a share of the float32 matmul rate: float32 / mixed "
        "(%d FLOPs per image) | %.0f%% / %.0f%% | %s / %s | | |"
        % (train_flops_per_image, 100 * rm["fp32_share_of_fp32_matmul"],
           100 * rm["mixed_share_of_fp32_matmul"],
           spread(pct(ratios["fp32_share_of_fp32_matmul"]), "%.0f%%"),
           spread(pct(ratios["mixed_share_of_fp32_matmul"]), "%.0f%%")),
        "| 4' | Mixed training FLOP/s as a share of the bfloat16 matmul rate | %.0f%% | %s | | |"
        % (100 * rm["mixed_share_of_bf16_matmul"],
           spread(pct(ratios["mixed_share_of_bf16_matmul"]), "%.0f%%")),
    ]


def diagnostics(summary, ratios, profiles, profile_steps):
    """The lines under the table: in-loop rates, CPU time, per-round ratios and, with both
    profiles read, op time per step by op type."""
    loop, cpu_ms = summary["median_in_loop_images_per_sec"], summary["median_cpu_ms_per_image"]
    rm = summary["ratio_medians"]

    def fmt(x, f):
        return f % x if x else "-"
    diag = [
        "- In-loop rates (the compiled training loop only, as `Trainer` logs it): float32 %s, "
        "mixed %s images/s; mixed / float32 per round, median %s."
        % (fmt(loop["ours_ista"], "%.1f"), fmt(loop["ours_mixed"], "%.1f"),
           fmt(rm["in_loop_mixed_vs_fp32"], "%.3f")),
        "- Process CPU time (all threads) per training image, median: float32 %.2f ms, mixed "
        "%.2f ms (float32 / mixed per round, median %.2fx; less sensitive than wall time to "
        "other processes taking the CPUs)."
        % (cpu_ms["ours_ista"], cpu_ms["ours_mixed"], rm["cpu_time_fp32_vs_mixed"]),
        "- Per-round mixed / float32 wall-time ratios: %s."
        % " ".join("%.3f" % x for x in ratios["mixed_vs_fp32"]),
    ]
    if len(profiles) != 2:
        return diag
    fp, mx = (profiles[name]["op_seconds_by_type"] for name, _ in RUNS)
    top = sorted(set(fp) | set(mx), key=lambda k: -(fp.get(k, 0) + mx.get(k, 0)))[:14]
    diag += ["", "Op time per training step by op type (tf.profiler, %d steps each, all "
             "threads), float32 vs mixed_bfloat16:" % profile_steps, "",
             "| op type | float32 ms | mixed ms | float32 / mixed |", "|---|---:|---:|---:|"]
    for k in top + ["(all)"]:
        a, b = ((sum(d.values()) if k == "(all)" else d.get(k, 0.0)) * 1000.0 / profile_steps
                for d in (fp, mx))
        diag.append("| %s | %.1f | %.1f | %s |" % (k, a, b, "%.2f" % (a / b) if a and b else "-"))
    return diag


def main(argv=None):
    """Measures rows 1-4 and the profile, prints the table and writes the JSON result."""
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # log noise only; no effect on speed
    import numpy as np
    import keras
    import tensorflow as tf
    from cifar10_prune import costs, data

    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = load_average()
    progress("mixed precision benchmark: batch %d, %d timed steps x %d rounds, warm-up %d%s"
             % (args.batch_size, args.steps, args.rounds, args.warmup_steps,
                " (--quick)" if args.quick else ""))
    ds = data.train_dataset(args.data_dir, args.batch_size)  # one dataset for both runs
    tmp = tempfile.TemporaryDirectory(prefix="cifar10_prune_mixed-")

    progress("building and warming up (tracing) the float32 and the mixed training runs")
    runners = [OurTrainer(name, ds, args.batch_size, tmp.name, args.l1_penalty, policy)
               for name, policy in RUNS]
    warmup_seconds = warm_up(runners, args.warmup_steps)
    measurements = measure_rounds(args, runners)
    train_flops_per_image = 2 * 3 * costs.conv_flops(runners[0].trainer.model)
    ratios = mixed_ratios(measurements, train_flops_per_image)
    profiles = profile_runs(runners, args.profile_steps, tmp.name)

    summary = summarize(measurements, ratios)
    checks = {"mixed_vs_fp32": summary["ratio_medians"]["mixed_vs_fp32"] >= TARGET_MIXED_VS_FP32}
    header = ("%s, %d CPUs (bfloat16 CPU flags: %s), batch %d, %d timed steps after %d warm-up, "
              "median of %d interleaved rounds, TF %s / Keras %s%s"
              % (started.strftime("%Y-%m-%d"), os.cpu_count(),
                 ", ".join(cpu_bf16_flags() or ["none"]), args.batch_size, args.steps,
                 args.warmup_steps, args.rounds, tf.__version__, keras.__version__,
                 ", QUICK (smoke run, not a measurement)" if args.quick else ""))
    table = "\n".join(table_rows(args, measurements, ratios, summary, train_flops_per_image,
                                  checks))
    diag = "\n".join(diagnostics(summary, ratios, profiles, args.profile_steps))
    print("\n%s\n\n%s\n\n%s" % (header, table, diag))

    result = dict(
        date_utc=started.isoformat(timespec="seconds"),
        seconds_total=round(
            (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1),
        machine=dict(machine_info(), cpu_bf16_flags=cpu_bf16_flags(),
                     load_average_start=load_start, load_average_end=load_average()),
        versions={"tensorflow": tf.__version__, "keras": keras.__version__,
                  "numpy": np.__version__},
        config=dict(vars(args), dtype_policies=dict(RUNS),
                    inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
                    intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads()),
        warmup_seconds=warmup_seconds, measurements=measurements,
        train_flops_per_image=train_flops_per_image, ratios_per_round=ratios,
        profiles=profiles, targets={"mixed_vs_fp32_at_least": TARGET_MIXED_VS_FP32},
        targets_met=checks, markdown=header + "\n\n" + table + "\n\n" + diag + "\n",
        **summary)
    write_result(args.output, result)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
