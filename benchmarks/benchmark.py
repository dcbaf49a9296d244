#!/usr/bin/env python
"""Throughput benchmark of cifar10_prune on real CIFAR-10, every number from one process.

    python benchmarks/benchmark.py --data_dir /tmp/cifar10_data            # full run, ~4-5 min
    python benchmarks/benchmark.py --quick                                 # smoke run

Measures, on the same training dataset (`data.train_dataset`, batch `--batch_size`):

  1. pipeline     images/s of iterating the input pipeline alone (no model);
  2. ours_ista    images/s of `training.Trainer.fit` on dense resnet20 with
                  `ista.ISTA(l1_penalty=0.005)` (the real training step: ISTA + EMA + weight decay);
  3. ours_sgd     the same Trainer with `l1_penalty=0` (plain SGD inside our step);
  4. keras_fit    plain `keras.Model.fit` of a fresh dense resnet20 compiled with SGD(0.1);
  6. ours_mixed   row 2 under mixed precision (`--use_fp16` on a CPU: the "mixed_bfloat16"
                  policy), interleaved with rows 1-4, and the machine's float32 and bfloat16
                  matmul rates (a --matmul_size square `tf.matmul`, timed in each round) with
                  the training runs' share of them;
  5. inference    images/s of the exported `serving_default` signature (uint8 input) of the dense
                  and of a slim resnet20 (every prunable layer at `--slim_fraction` of its width),
                  plus their parameter counts and conv multiply-adds.

Each training measurement times `--steps` steps (perf_counter around one fit call, up to the end
of training but not the teardown of the tf.data iterator the call made, which is reported on its
own: see the comment at `KeepIterators`) after a warm-up fit (`--warmup_steps`, also pays for
tracing); the measurements are repeated `--rounds` times,
interleaved (the order rotates every round), and medians are reported, because the machine is
shared and noisy. Ratios are computed per round (from measurements taken next to each other)
and their median is reported. Threading is left at the TensorFlow defaults.

Prints a Markdown table and writes everything (raw measurements, medians, ratios, machine and
versions) as JSON to `--output`.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Targets the numbers are checked against (see README.md).
TARGET_ISTA_OVERHEAD = 0.03  # ours_sgd / ours_ista - 1 < 3%
TARGET_MIXED_VS_FP32 = 1.3  # ours_mixed / ours_ista >= 1.3 (CPU with bfloat16 instructions)
TARGET_OURS_VS_KERAS = 1.0  # ours_ista / keras_fit >= 1
TARGET_PIPELINE_VS_OURS = 5.0  # pipeline / ours_ista >= 5

# Defaults of a full run, and what --quick shrinks them to (explicit flags always win).
FULL = dict(steps=30, warmup_steps=5, rounds=5, pipeline_steps=200, infer_calls=20,
            infer_rounds=5, matmul_calls=10, profile_steps=10)
QUICK = dict(steps=3, warmup_steps=1, rounds=2, pipeline_steps=10, infer_calls=2,
             infer_rounds=2, matmul_calls=2, profile_steps=2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default="/tmp/cifar10_data",
                   help="directory holding cifar-10-batches-bin/ (default %(default)s)")
    p.add_argument("--batch_size", type=int, default=125, help="default %(default)s")
    p.add_argument("--steps", type=int, help="timed training steps per measurement "
                   "(default %d, --quick %d)" % (FULL["steps"], QUICK["steps"]))
    p.add_argument("--warmup_steps", type=int, help="untimed steps/batches/calls before timing "
                   "(default %d, --quick %d)" % (FULL["warmup_steps"], QUICK["warmup_steps"]))
    p.add_argument("--rounds", type=int, help="interleaved repetitions of the pipeline and "
                   "training measurements (default %d, --quick %d)"
                   % (FULL["rounds"], QUICK["rounds"]))
    p.add_argument("--pipeline_steps", type=int, help="batches per pipeline measurement; more "
                   "than --steps because the pipeline is fast (default %d, --quick %d)"
                   % (FULL["pipeline_steps"], QUICK["pipeline_steps"]))
    p.add_argument("--infer_calls", type=int, help="inference calls per timed block "
                   "(default %d, --quick %d)" % (FULL["infer_calls"], QUICK["infer_calls"]))
    p.add_argument("--infer_rounds", type=int, help="alternating dense/slim inference rounds "
                   "(default %d, --quick %d)" % (FULL["infer_rounds"], QUICK["infer_rounds"]))
    p.add_argument("--matmul_size", type=int, default=2048,
                   help="n of the n x n x n matmul timing the machine's float32 and bfloat16 "
                   "rates (default %(default)s)")
    p.add_argument("--matmul_calls", type=int, help="matmuls per dtype and round "
                   "(default %d, --quick %d)" % (FULL["matmul_calls"], QUICK["matmul_calls"]))
    p.add_argument("--profile_steps", type=int, help="after the rounds, steps of ours_ista and "
                   "ours_mixed run under tf.profiler, reported as time by op type; 0 = off "
                   "(default %d, --quick %d)" % (FULL["profile_steps"], QUICK["profile_steps"]))
    p.add_argument("--l1_penalty", type=float, default=0.005,
                   help="ISTA lambda of the ours_ista measurement (default %(default)s)")
    p.add_argument("--slim_fraction", type=float, default=0.6,
                   help="width of every prunable layer of the slim model, as a fraction of "
                   "the dense width (default %(default)s)")
    p.add_argument("--output", help="JSON results file (default benchmarks/results.json; "
                   "benchmarks/results-quick.json with --quick, so a smoke run never "
                   "overwrites a measurement)")
    p.add_argument("--quick", action="store_true", help="few steps: a smoke run, not a "
                   "measurement")
    args = p.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("batch_size", "steps", "warmup_steps", "rounds", "pipeline_steps",
                 "infer_calls", "infer_rounds", "matmul_size", "matmul_calls"):
        if getattr(args, name) < 1:
            p.error("--%s must be >= 1" % name)
    if args.profile_steps < 0:
        p.error("--profile_steps must be >= 0")
    if args.output is None:
        args.output = os.path.join(HERE, "results-quick.json" if args.quick else "results.json")
    if not 0 < args.slim_fraction <= 1:
        p.error("--slim_fraction must be in (0, 1]")
    return args


def progress(message):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), message), flush=True)


def median(values):
    return statistics.median(values) if values else None


def rotate(items, k):
    k %= len(items)
    return items[k:] + items[:k]


def op_time_by_type(logdir):
    """{op type: seconds} summed over every TF op event of the newest tf.profiler trace in
    `logdir` (all threads, so the total can exceed wall time), or None if it cannot be read
    (the XPlane proto module is internal to TensorFlow)."""
    import collections
    import glob
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


def machine_info():
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    return info


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # log noise only; no effect on speed

    import numpy as np
    import keras
    import tensorflow as tf

    from cifar10_prune import costs, data, export, ista, models, training
    from cifar10_prune.spec import ArchSpec

    bs, steps, warmup = args.batch_size, args.steps, args.warmup_steps
    log_frequency = 10 ** 9  # one chunk per fit call: Trainer logs once, at its start
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = load_average()
    progress("cifar10_prune benchmark: batch %d, %d timed steps x %d rounds, warm-up %d%s"
             % (bs, steps, args.rounds, warmup, " (--quick)" if args.quick else ""))

    ds = data.train_dataset(args.data_dir, bs)  # one dataset object shared by all measurements
    tmp = tempfile.TemporaryDirectory(prefix="cifar10_prune_bench-")

    # ---- 1. input pipeline alone ------------------------------------------------------------
    def measure_pipeline():
        it = iter(ds)
        for _ in range(warmup):  # the first batch also fills the 20,000-record shuffle buffer
            next(it)
        t0 = time.perf_counter()
        for _ in range(args.pipeline_steps):
            next(it)
        dt = time.perf_counter() - t0
        t1 = time.perf_counter()
        del it  # stop its prefetching before the next measurement
        teardown = time.perf_counter() - t1
        rate = args.pipeline_steps * bs / dt
        return {"images_per_sec": rate, "seconds": dt, "in_loop_images_per_sec": rate,
                "iterator_teardown_seconds": teardown, "end_to_end_images_per_sec": rate}

    # ---- 2./3. our Trainer ------------------------------------------------------------------
    # Every fit call (ours and keras') makes a new iterator of `ds`. On this machine, deleting
    # such an iterator often blocks for seconds: the fit call then ends at ~10.2 s or ~20.5 s
    # after the iterator was made, i.e. 10 ms * (2**n - 1), consistent with waiting for the
    # tf.data autotune thread, whose optimization period doubles from 10 ms (the stall is gone
    # with `options.autotune.enabled = False`). It is a per-fit-call cost unrelated to the
    # training step (train.py calls fit once per stage) and it would quantize ~10 s timings, so
    # the timed window ends before the teardown, which is measured and reported on its own.
    rate_pattern = re.compile(r"\(([0-9.]+) examples/sec")

    class KeepIterators:
        """Stands in for `ds` in `Trainer.fit` (which only calls `iter` on it) and keeps the
        iterators it hands out alive until `release()`, so that their teardown is not timed."""

        def __init__(self):
            self.held = []

        def __iter__(self):
            it = iter(ds)
            self.held.append(it)
            return it

        def release(self):
            t0 = time.perf_counter()
            self.held.clear()
            return time.perf_counter() - t0

    class Ours:
        def __init__(self, name, l1_penalty, dtype_policy="float32"):
            self.name = name
            self.logged = []
            self.source = KeepIterators()
            model = models.build_model(ArchSpec.dense("resnet20"), dtype_policy=dtype_policy)
            optimizer = ista.ISTA(training.learning_rate_schedule(0.1, bs),
                                  l1_penalty=l1_penalty, penalties=ista.penalties(model))
            train_dir = os.path.join(tmp.name, name)
            os.makedirs(train_dir)
            self.trainer = training.Trainer(model, optimizer, train_dir,
                                            save_checkpoint_secs=10 ** 9, log=self.logged.append)

        def fit(self, num_steps):
            self.logged.clear()
            start = self.trainer.step
            c0, t0 = time.process_time(), time.perf_counter()
            self.trainer.fit(self.source, start + num_steps, log_frequency, bs)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            teardown = self.source.release()
            assert self.trainer.step == start + num_steps, (self.trainer.step, start, num_steps)
            # Trainer's own logged rate: the compiled multi-step call only (no iterator creation,
            # sparsity metrics, summaries or the checkpoint saved at the end of fit).
            match = rate_pattern.search(self.logged[0]) if self.logged else None
            return {"images_per_sec": num_steps * bs / dt, "seconds": dt,
                    "in_loop_images_per_sec": float(match.group(1)) if match else None,
                    "iterator_teardown_seconds": teardown,
                    "end_to_end_images_per_sec": num_steps * bs / (dt + teardown),
                    "cpu_ms_per_image": 1000.0 * cpu / (num_steps * bs)}

    # ---- 4. plain keras.Model.fit -------------------------------------------------------------
    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.first_begin = self.last_end = self.train_end = None

        def on_train_batch_begin(self, batch, logs=None):
            if self.first_begin is None:
                self.first_begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last_end = time.perf_counter()

        def on_train_end(self, logs=None):
            # keras frees its epoch iterator (and so the tf.data iterator) after this.
            self.train_end = time.perf_counter()
            self.train_end_cpu = time.process_time()

    class KerasFit:
        name = "keras_fit"

        def __init__(self):
            self.model = models.build_model(ArchSpec.dense("resnet20"))
            self.model.compile(
                optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            self.timer = Timer()

        def fit(self, num_steps):
            c0, t0 = time.process_time(), time.perf_counter()
            self.model.fit(ds, epochs=1, steps_per_epoch=num_steps, verbose=0,
                           shuffle=False, callbacks=[self.timer])  # ds is already shuffled
            total = time.perf_counter() - t0
            dt = self.timer.train_end - t0
            loop = self.timer.last_end - self.timer.first_begin
            return {"images_per_sec": num_steps * bs / dt, "seconds": dt,
                    "in_loop_images_per_sec": num_steps * bs / loop,
                    "iterator_teardown_seconds": total - dt,
                    "end_to_end_images_per_sec": num_steps * bs / total,
                    "cpu_ms_per_image": 1000.0 * (self.timer.train_end_cpu - c0) / (num_steps * bs)}

    # ---- 6. the machine's matmul rates, float32 and bfloat16 -------------------------------
    mm = args.matmul_size
    matmul_inputs = {dt: tf.cast(tf.random.stateless_uniform((mm, mm), (1, 2)), dt)
                     for dt in (tf.float32, tf.bfloat16)}
    matmul_fn = tf.function(lambda a: tf.reduce_sum(tf.matmul(a, a)))  # 1 value fetched

    def measure_matmul():
        out = {}
        for dt, a in matmul_inputs.items():
            matmul_fn(a).numpy()  # traced and warm
            t0 = time.perf_counter()
            for _ in range(args.matmul_calls):
                matmul_fn(a).numpy()
            out[dt.name + "_gflops"] = 2.0 * mm ** 3 * args.matmul_calls / (
                time.perf_counter() - t0) / 1e9
        return out

    progress("building and warming up (tracing) the four training setups")
    runners = [Ours("ours_ista", args.l1_penalty), Ours("ours_sgd", 0.0), KerasFit(),
               Ours("ours_mixed", args.l1_penalty, "mixed_bfloat16")]
    warmup_seconds = {}
    for runner in runners:
        t0 = time.perf_counter()
        runner.fit(warmup)
        warmup_seconds[runner.name] = time.perf_counter() - t0
        progress("  %s warm-up fit (%d steps, includes tracing): %.1f s"
                 % (runner.name, warmup, warmup_seconds[runner.name]))
    jit = runners[2].model.jit_compile

    measurements = {"pipeline": [], "ours_ista": [], "ours_sgd": [], "keras_fit": [],
                    "ours_mixed": [], "matmul": []}
    jobs = [("pipeline", measure_pipeline)] + [(r.name, (lambda r=r: r.fit(steps)))
                                                for r in runners] + [("matmul", measure_matmul)]
    for rnd in range(args.rounds):
        for name, job in rotate(jobs, rnd):
            result = job()
            result["round"] = rnd
            measurements[name].append(result)
            if name == "matmul":
                progress("round %d  matmul     float32 %.1f, bfloat16 %.1f GFLOP/s"
                         % (rnd + 1, result["float32_gflops"], result["bfloat16_gflops"]))
                continue
            extra = ""
            if result.get("in_loop_images_per_sec"):
                extra = " (in-loop %.1f)" % result["in_loop_images_per_sec"]
            progress("round %d  %-10s %9.1f images/s%s" % (rnd + 1, name,
                                                             result["images_per_sec"], extra))

    def rates(name, key="images_per_sec"):
        return [m[key] for m in measurements[name]]

    def per_round(fn, key="images_per_sec"):
        return [fn(*(measurements[n][r][key] for n in ("pipeline", "ours_ista", "ours_sgd",
                                                        "keras_fit")))
                for r in range(args.rounds)]

    ratios = {
        # time(ISTA step) / time(SGD step) - 1
        "ista_overhead": per_round(lambda p, i, s, k: s / i - 1.0),
        "ours_ista_vs_keras_fit": per_round(lambda p, i, s, k: i / k),
        "ours_sgd_vs_keras_fit": per_round(lambda p, i, s, k: s / k),
        "pipeline_vs_ours_ista": per_round(lambda p, i, s, k: p / i),
        "in_loop_ista_overhead": per_round(lambda p, i, s, k: s / i - 1.0,
                                           "in_loop_images_per_sec"),
        "in_loop_ours_ista_vs_keras_fit": per_round(lambda p, i, s, k: i / k,
                                                    "in_loop_images_per_sec"),
        "end_to_end_ista_overhead": per_round(lambda p, i, s, k: s / i - 1.0,
                                              "end_to_end_images_per_sec"),
        "end_to_end_ours_ista_vs_keras_fit": per_round(lambda p, i, s, k: i / k,
                                                       "end_to_end_images_per_sec"),
    }
    # Mixed precision (row 6): ratios within each round, and the training runs' arithmetic
    # rate (conv multiply-adds x 2 FLOPs x 3 for forward + both backward convolutions) as a
    # share of the matmul rate measured in the same round.
    train_flops_per_image = 2 * 3 * costs.conv_flops(runners[0].trainer.model)

    ratios["mixed_vs_fp32"] = [m / f for m, f in zip(rates("ours_mixed"),
                                                     rates("ours_ista"))]
    ratios["in_loop_mixed_vs_fp32"] = [
        m / f for m, f in zip(rates("ours_mixed", "in_loop_images_per_sec"),
                              rates("ours_ista", "in_loop_images_per_sec")) if m and f]
    ratios["matmul_bf16_vs_fp32"] = [b / f for b, f in zip(rates("matmul", "bfloat16_gflops"),
                                                           rates("matmul", "float32_gflops"))]
    ratios["fp32_share_of_fp32_matmul"] = [
        train_flops_per_image * r / 1e9 / g
        for r, g in zip(rates("ours_ista"), rates("matmul", "float32_gflops"))]
    ratios["mixed_share_of_fp32_matmul"] = [
        train_flops_per_image * r / 1e9 / g
        for r, g in zip(rates("ours_mixed"), rates("matmul", "float32_gflops"))]
    ratios["mixed_share_of_bf16_matmul"] = [
        train_flops_per_image * r / 1e9 / g
        for r, g in zip(rates("ours_mixed"), rates("matmul", "bfloat16_gflops"))]
    ratio_medians = {k: median(v) for k, v in ratios.items()}

    # Where the time goes, float32 against mixed: op-level profile of a few steps of each.
    profiles = {}
    for runner in (runners[0], runners[3]) if args.profile_steps else ():
        logdir = os.path.join(tmp.name, "profile_" + runner.name)
        tf.profiler.experimental.start(logdir)
        wall = runner.fit(args.profile_steps)["seconds"]
        tf.profiler.experimental.stop()
        by_type = op_time_by_type(logdir)
        if by_type is None:
            progress("  (could not read the profile of %s)" % runner.name)
            continue
        profiles[runner.name] = {"steps": args.profile_steps, "wall_seconds": wall,
                                 "op_seconds_by_type": by_type}
        progress("profiled %s: %d steps in %.2f s, %.2f s of op time"
                 % (runner.name, args.profile_steps, wall, sum(by_type.values())))

    # ---- 5. inference of exported dense and slim models --------------------------------------
    dense_spec = ArchSpec.dense("resnet20")
    slim_spec = ArchSpec("resnet20", {u: max(1, int(round(args.slim_fraction * w)))
                                      for u, w in dense_spec.widths.items()})
    progress("exporting dense and slim (%s) resnet20"
             % ", ".join("%s %d" % kv for kv in slim_spec.widths.items()))
    infer = {}
    for name, spec in (("dense", dense_spec), ("slim", slim_spec)):
        model = models.build_model(spec)
        path = export.export_saved_model(model, os.path.join(tmp.name, "export_" + name))
        loaded = tf.saved_model.load(path)
        infer[name] = {"loaded": loaded, "fn": loaded.signatures["serving_default"],
                       "params": costs.param_count(model), "conv_macs": costs.conv_flops(model),
                       "widths": spec.widths, "images_per_sec": []}
    # Real test images, uint8 as the signature takes them.
    raw, _ = data.raw_dataset(args.data_dir, "test")
    images, _ = next(iter(raw.batch(bs, drop_remainder=True).take(1)))
    images = tf.constant(images.numpy(), dtype=tf.uint8)
    assert images.shape == (bs, 32, 32, 3), images.shape

    def call(fn):
        return fn(images=images)["logits"].numpy()

    for name in ("dense", "slim"):
        for _ in range(warmup):
            out = call(infer[name]["fn"])
        assert out.shape == (bs, models.NUM_CLASSES) and np.all(np.isfinite(out))
    for rnd in range(args.infer_rounds):
        for name in ("dense", "slim") if rnd % 2 == 0 else ("slim", "dense"):
            fn = infer[name]["fn"]
            t0 = time.perf_counter()
            for _ in range(args.infer_calls):
                call(fn)
            dt = time.perf_counter() - t0
            infer[name]["images_per_sec"].append(args.infer_calls * bs / dt)
        progress("inference round %d: dense %.1f, slim %.1f images/s"
                 % (rnd + 1, infer["dense"]["images_per_sec"][-1],
                    infer["slim"]["images_per_sec"][-1]))
    speedups = [s / d for d, s in zip(infer["dense"]["images_per_sec"],
                                      infer["slim"]["images_per_sec"])]

    # ---- report ------------------------------------------------------------------------------
    med = {name: median(rates(name)) for name in measurements if name != "matmul"}
    matmul_med = {k: median(rates("matmul", k)) for k in ("float32_gflops", "bfloat16_gflops")}
    training_runs = ("ours_ista", "ours_sgd", "keras_fit", "ours_mixed")
    med_loop = {name: median([x for x in rates(name, "in_loop_images_per_sec") if x])
                for name in training_runs}
    med_e2e = {name: median(rates(name, "end_to_end_images_per_sec")) for name in training_runs}
    teardown = {name: rates(name, "iterator_teardown_seconds") for name in measurements
                if name != "matmul"}
    cpu_ms = {name: median(rates(name, "cpu_ms_per_image")) for name in training_runs}
    dense, slim = infer["dense"], infer["slim"]
    checks = {
        "ista_overhead": ratio_medians["ista_overhead"] < TARGET_ISTA_OVERHEAD,
        "ours_ista_vs_keras_fit": ratio_medians["ours_ista_vs_keras_fit"] >= TARGET_OURS_VS_KERAS,
        "pipeline_vs_ours_ista": ratio_medians["pipeline_vs_ours_ista"] >= TARGET_PIPELINE_VS_OURS,
        "mixed_vs_fp32": ratio_medians["mixed_vs_fp32"] >= TARGET_MIXED_VS_FP32,
    }

    def spread(values, fmt="%.0f"):
        return (fmt + " to " + fmt) % (min(values), max(values))

    def verdict(key):
        return "met" if checks[key] else "**missed**"

    n = args.rounds
    lines = [
        "| # | Measurement | images/s (median) | range over rounds | target | result |",
        "|---|---|---:|---:|---|---|",
        "| 1 | Input pipeline alone (`data.train_dataset`) | %.0f | %s | | |"
        % (med["pipeline"], spread(rates("pipeline"))),
        "| 2 | Ours: `Trainer.fit`, ISTA l1=%g (+EMA, weight decay) | %.1f | %s | | |"
        % (args.l1_penalty, med["ours_ista"], spread(rates("ours_ista"), "%.1f")),
        "| 3 | Ours: `Trainer.fit`, l1=0 (SGD in our step) | %.1f | %s | | |"
        % (med["ours_sgd"], spread(rates("ours_sgd"), "%.1f")),
        "| 4 | Plain `keras.Model.fit`, SGD(0.1) | %.1f | %s | | |"
        % (med["keras_fit"], spread(rates("keras_fit"), "%.1f")),
        "| 3/2 | ISTA overhead (time ISTA / time SGD - 1) | %+.1f%% | %s | < 3%% | %s |"
        % (100 * ratio_medians["ista_overhead"],
           spread([100 * x for x in ratios["ista_overhead"]], "%+.1f%%"),
           verdict("ista_overhead")),
        "| 2/4 | Ours (ISTA) / plain fit | %.3f | %s | >= 1.0 | %s |"
        % (ratio_medians["ours_ista_vs_keras_fit"],
           spread(ratios["ours_ista_vs_keras_fit"], "%.3f"), verdict("ours_ista_vs_keras_fit")),
        "| 3/4 | Ours (SGD) / plain fit | %.3f | %s | | |"
        % (ratio_medians["ours_sgd_vs_keras_fit"],
           spread(ratios["ours_sgd_vs_keras_fit"], "%.3f")),
        "| 1/2 | Pipeline / ours (ISTA) | %.0f | %s | >= 5 | %s |"
        % (ratio_medians["pipeline_vs_ours_ista"],
           spread(ratios["pipeline_vs_ours_ista"], "%.0f"), verdict("pipeline_vs_ours_ista")),
        "| 5a | Inference, dense resnet20 (SavedModel, uint8) | %.0f | %s | | |"
        % (median(dense["images_per_sec"]), spread(dense["images_per_sec"])),
        "| 5b | Inference, slim resnet20 (%g of each prunable width) | %.0f | %s | | |"
        % (args.slim_fraction, median(slim["images_per_sec"]), spread(slim["images_per_sec"])),
        "| 5b/5a | Inference speed-up slim / dense | %.2fx | %s | | |"
        % (median(speedups), spread(speedups, "%.2f")),
        "| | Params dense / slim | %d / %d (%.1f%%) | | | |"
        % (dense["params"], slim["params"], 100.0 * slim["params"] / dense["params"]),
        "| | Conv multiply-adds per image dense / slim | %d / %d (%.1f%%) | | | |"
        % (dense["conv_macs"], slim["conv_macs"],
           100.0 * slim["conv_macs"] / dense["conv_macs"]),
        "| 6 | Ours mixed precision (`mixed_bfloat16`), ISTA l1=%g | %.1f | %s | | |"
        % (args.l1_penalty, med["ours_mixed"], spread(rates("ours_mixed"), "%.1f")),
        "| 6/2 | Mixed (bfloat16) / float32 training images/s | %.3f | %s | >= %.1f | %s |"
        % (ratio_medians["mixed_vs_fp32"], spread(ratios["mixed_vs_fp32"], "%.3f"),
           TARGET_MIXED_VS_FP32, verdict("mixed_vs_fp32")),
        "| 6m | Matmul %d^3, float32 / bfloat16 GFLOP/s | %.1f / %.1f | %s / %s | | |"
        % (mm, matmul_med["float32_gflops"], matmul_med["bfloat16_gflops"],
           spread(rates("matmul", "float32_gflops"), "%.1f"),
           spread(rates("matmul", "bfloat16_gflops"), "%.1f")),
        "| 6m' | Matmul bfloat16 / float32 | %.2fx | %s | | |"
        % (ratio_medians["matmul_bf16_vs_fp32"], spread(ratios["matmul_bf16_vs_fp32"], "%.2f")),
        "| 6s | Training FLOP/s as a share of the float32 matmul rate: float32 / mixed "
        "(%d FLOPs per image) | %.0f%% / %.0f%% | %s / %s | | |"
        % (train_flops_per_image, 100 * ratio_medians["fp32_share_of_fp32_matmul"],
           100 * ratio_medians["mixed_share_of_fp32_matmul"],
           spread([100 * x for x in ratios["fp32_share_of_fp32_matmul"]], "%.0f%%"),
           spread([100 * x for x in ratios["mixed_share_of_fp32_matmul"]], "%.0f%%")),
        "| 6s' | Mixed training FLOP/s as a share of the bfloat16 matmul rate | %.0f%% | %s | | |"
        % (100 * ratio_medians["mixed_share_of_bf16_matmul"],
           spread([100 * x for x in ratios["mixed_share_of_bf16_matmul"]], "%.0f%%")),
    ]
    diag = "\n".join([
        "Rows 2-4 time each fit call up to the end of training, without the teardown of the "
        "tf.data iterator the call made (see README).",
        "- In-loop rates (only the compiled training loop: no per-fit setup, no end-of-fit "
        "checkpoint): ours ISTA %.1f, ours SGD %.1f, plain fit %.1f images/s; ISTA overhead "
        "%+.1f%%, ours (ISTA) / plain fit %.3f."
        % (med_loop["ours_ista"], med_loop["ours_sgd"], med_loop["keras_fit"],
           100 * ratio_medians["in_loop_ista_overhead"],
           ratio_medians["in_loop_ours_ista_vs_keras_fit"]),
        "- End-to-end rates (whole fit call, iterator teardown included): ours ISTA %.1f, "
        "ours SGD %.1f, plain fit %.1f images/s; ISTA overhead %+.1f%%, ours (ISTA) / plain "
        "fit %.3f."
        % (med_e2e["ours_ista"], med_e2e["ours_sgd"], med_e2e["keras_fit"],
           100 * ratio_medians["end_to_end_ista_overhead"],
           ratio_medians["end_to_end_ours_ista_vs_keras_fit"]),
        "- Process CPU time (all threads) per training image, median: ours ISTA %.2f ms, "
        "ours SGD %.2f ms, plain fit %.2f ms, ours mixed %.2f ms (less sensitive than wall "
        "time to other processes taking the CPUs)."
        % tuple(cpu_ms[name] for name in training_runs),
        "- Mixed / float32 in-loop rate, median of rounds: %.3f; per-round mixed / float32 "
        "wall-time ratios: %s."
        % (ratio_medians["in_loop_mixed_vs_fp32"] or float("nan"),
           " ".join("%.3f" % x for x in ratios["mixed_vs_fp32"])),
        "- Iterator teardown per fit call, seconds (each round): ours ISTA %s; ours SGD %s; "
        "plain fit %s; ours mixed %s."
        % tuple(" ".join("%.1f" % x for x in teardown[name]) for name in training_runs),
    ])
    header = ("%s, %d CPUs, batch %d, %d timed steps after %d warm-up, median of %d interleaved "
              "rounds (inference: %d x %d calls), TF %s / Keras %s%s"
              % (started.strftime("%Y-%m-%d"), os.cpu_count(), bs, steps, warmup, n,
                 args.infer_rounds, args.infer_calls, tf.__version__, keras.__version__,
                 ", QUICK (smoke run, not a measurement)" if args.quick else ""))
    if len(profiles) == 2:
        fp, mx = (profiles[n]["op_seconds_by_type"] for n in ("ours_ista", "ours_mixed"))
        top = sorted(set(fp) | set(mx), key=lambda k: -(fp.get(k, 0) + mx.get(k, 0)))[:14]
        per_step = lambda d, k: 1000.0 * d.get(k, 0.0) / args.profile_steps  # noqa: E731
        diag += "\n\nOp time per training step by op type (tf.profiler, %d steps each, all " \
                "threads), float32 vs mixed_bfloat16:\n\n| op type | float32 ms | mixed ms | " \
                "ratio |\n|---|---:|---:|---:|\n" % args.profile_steps
        for k in top + ["(all)"]:
            a = per_step(fp, k) if k != "(all)" else 1000.0 * sum(fp.values()) / args.profile_steps
            b = per_step(mx, k) if k != "(all)" else 1000.0 * sum(mx.values()) / args.profile_steps
            diag += "| %s | %.1f | %.1f | %s |\n" % (k, a, b, "%.2f" % (a / b) if a and b else "-")
    table = "\n".join(lines)
    print()
    print(header)
    print()
    print(table)
    print()
    print(diag)

    result = {
        "date_utc": started.isoformat(timespec="seconds"),
        "seconds_total": round(
            (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1),
        "machine": dict(machine_info(), load_average_start=load_start,
                        load_average_end=load_average()),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
        "config": dict(vars(args), keras_fit_jit_compile=jit,
                       inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
                       intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads()),
        "warmup_seconds": warmup_seconds,
        "measurements": measurements,
        "median_images_per_sec": med,
        "median_in_loop_images_per_sec": med_loop,
        "median_end_to_end_images_per_sec": med_e2e,
        "median_cpu_ms_per_image": cpu_ms,
        "median_matmul_gflops": matmul_med,
        "profiles": profiles,
        "train_flops_per_image": train_flops_per_image,
        "iterator_teardown_seconds": teardown,
        "ratios_per_round": ratios,
        "ratio_medians": ratio_medians,
        "targets": {"ista_overhead_below": TARGET_ISTA_OVERHEAD,
                    "ours_ista_vs_keras_fit_at_least": TARGET_OURS_VS_KERAS,
                    "pipeline_vs_ours_ista_at_least": TARGET_PIPELINE_VS_OURS,
                    "mixed_vs_fp32_at_least": TARGET_MIXED_VS_FP32},
        "targets_met": checks,
        "inference": {name: {k: v for k, v in rec.items() if k not in ("loaded", "fn")}
                      for name, rec in infer.items()},
        "inference_speedup_per_round": speedups,
        "inference_speedup_median": median(speedups),
        "markdown": header + "\n\n" + table + "\n\n" + diag + "\n",
    }
    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    with open(args.output + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(args.output + ".tmp", args.output)
    progress("wrote %s (%.0f s in all)" % (args.output, result["seconds_total"]))
    del infer
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
