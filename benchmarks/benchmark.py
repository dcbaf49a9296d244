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
  5. inference    images/s of the exported `serving_default` signature (uint8 input) of the dense
                  and of a slim resnet20 (every prunable layer at `--slim_fraction` of its width,
                  or the architecture.json given as `--slim_architecture`),
                  as export writes it (batch norms folded) and unfolded, at batch `--batch_size`
                  and batch 1, plus their parameter counts and conv multiply-adds;
  6. TFLite       the same for the float32 `model.tflite` that `export --tflite` writes.

`--inference_only` skips rows 1-4 (a few minutes less).

Each training measurement times `--steps` steps (perf_counter around one fit call, up to the end
of training but not the teardown of the tf.data iterator the call made, which is reported on its
own: see `training_speed.KeepIterators`) after a warm-up fit (`--warmup_steps`, also pays for
tracing); the measurements are repeated `--rounds` times,
interleaved (the order rotates every round), and medians are reported, because the machine is
shared and noisy. Ratios are computed per round (from measurements taken next to each other)
and their median is reported. Threading is left at the TensorFlow defaults.

Prints a Markdown table and writes everything (raw measurements, medians, ratios, machine and
versions) as JSON to `--output`.
"""
import datetime
import os
import sys
import tempfile

import inference_speed
import training_speed
from measuring import (load_average, machine_info, measurement_parser, parse_measurement,
                       progress, write_result)

HERE = os.path.dirname(os.path.abspath(__file__))

# Defaults of a full run, and what --quick shrinks them to (explicit flags always win).
FULL = dict(steps=30, warmup_steps=5, rounds=5, pipeline_steps=200, infer_calls=20,
            infer_calls_batch1=200, infer_rounds=5)
QUICK = dict(steps=3, warmup_steps=1, rounds=2, pipeline_steps=10, infer_calls=2,
             infer_calls_batch1=10, infer_rounds=2)


def parse_args(argv=None):
    p = measurement_parser(__doc__, FULL, QUICK, "untimed steps/batches/calls before timing",
                           "interleaved repetitions of the pipeline and training measurements")
    p.add_argument("--pipeline_steps", type=int, help="batches per pipeline measurement; more "
                   "than --steps because the pipeline is fast (default %d, --quick %d)"
                   % (FULL["pipeline_steps"], QUICK["pipeline_steps"]))
    p.add_argument("--infer_calls", type=int, help="inference calls per timed block "
                   "(default %d, --quick %d)" % (FULL["infer_calls"], QUICK["infer_calls"]))
    p.add_argument("--infer_calls_batch1", type=int, help="inference calls per timed block "
                   "at batch 1 (default %d, --quick %d)"
                   % (FULL["infer_calls_batch1"], QUICK["infer_calls_batch1"]))
    p.add_argument("--inference_only", action="store_true",
                   help="skip the pipeline and training rows (1-4)")
    p.add_argument("--infer_rounds", type=int, help="alternating dense/slim inference rounds "
                   "(default %d, --quick %d)" % (FULL["infer_rounds"], QUICK["infer_rounds"]))
    p.add_argument("--l1_penalty", type=float, default=0.005,
                   help="ISTA lambda of the ours_ista measurement (default %(default)s)")
    p.add_argument("--slim_fraction", type=float, default=0.6,
                   help="width of every prunable layer of the slim model, as a fraction of "
                   "the dense width (default %(default)s)")
    p.add_argument("--slim_architecture", metavar="FILE",
                   help="time this slim model instead of the --slim_fraction one: an "
                   "architecture.json (e.g. a run's TRAIN_DIR/cifar10_train_3/architecture.json), "
                   "against the dense model it was pruned from; inference speed depends only on "
                   "the architecture, so the weights are not needed")
    p.add_argument("--output", help="JSON results file (default benchmarks/results.json; "
                   "benchmarks/results-quick.json with --quick, so a smoke run never "
                   "overwrites a measurement)")
    args = parse_measurement(p, argv, FULL, QUICK, FULL)
    if args.output is None:
        args.output = os.path.join(HERE, "results-quick.json" if args.quick else "results.json")
    if not 0 < args.slim_fraction <= 1:
        p.error("--slim_fraction must be in (0, 1]")
    if args.slim_architecture:
        from cifar10_prune.spec import ArchSpec, ArchitectureError
        if os.path.isdir(args.slim_architecture):
            args.slim_architecture = os.path.join(args.slim_architecture, "architecture.json")
        try:
            with open(args.slim_architecture) as f:
                ArchSpec.from_json(f.read(), origin=args.slim_architecture)
        except (OSError, ArchitectureError) as e:
            p.error("--slim_architecture: %s" % e)
    return args


def import_tensorflow():
    """Imports TensorFlow, Keras and the package's modules, after quieting TensorFlow's C++ log.

    Called at the start of `main`, so that the import time is spent before the run's clock
    starts; the measuring functions (training_speed.py, inference_speed.py) import what they
    use locally (then a dictionary look-up), which keeps `--help` and argument errors fast and
    lets other scripts import those modules cheaply."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # log noise only; no effect on speed
    import numpy  # noqa: F401
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    from cifar10_prune import costs, data, export, models, tflite  # noqa: F401
    from cifar10_prune.spec import ArchSpec  # noqa: F401


TABLE_HEAD = ["| # | Measurement | images/s or ratio (median) | range over rounds | target | "
              "result |", "|---|---|---:|---:|---|---|"]


def report_header(args, infer, started):
    """The line above the table: date, machine, settings and versions of this run."""
    import keras
    import tensorflow as tf
    bs = args.batch_size
    return ("%s, %d CPUs, batch %d%s; inference: %d rounds of %s calls (batch %d / 1), "
            "TFLite interpreter %s; TF %s / Keras %s%s"
            % (started.strftime("%Y-%m-%d"), os.cpu_count(), bs,
               "" if args.inference_only else
               ", %d timed steps after %d warm-up, median of %d interleaved rounds"
               % (args.steps, args.warmup_steps, args.rounds),
               args.infer_rounds, "%d / %d" % (args.infer_calls, args.infer_calls_batch1), bs,
               infer["tflite_interpreter"], tf.__version__, keras.__version__,
               ", QUICK (smoke run, not a measurement)" if args.quick else ""))


def run_record(args, started, load_start, train, infer):
    """The head of the JSON result: date, duration so far, machine, versions, configuration and
    targets of this run."""
    import numpy as np
    import keras
    import tensorflow as tf
    return {
        "date_utc": started.isoformat(timespec="seconds"),
        "seconds_total": round(
            (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1),
        "machine": dict(machine_info(), load_average_start=load_start,
                        load_average_end=load_average()),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "numpy": np.__version__},
        "config": dict(vars(args), keras_fit_jit_compile=train["jit"] if train else None,
                       inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
                       intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads()),
        "targets": {"ista_overhead_below": training_speed.TARGET_ISTA_OVERHEAD,
                    "ours_ista_vs_keras_fit_at_least": training_speed.TARGET_OURS_VS_KERAS,
                    "pipeline_vs_ours_ista_at_least": training_speed.TARGET_PIPELINE_VS_OURS,
                    "slim_vs_dense_savedmodel_batch_bs_at_least":
                        infer["target_slim_vs_dense_batch_bs"],
                    "slim_vs_dense_tflite_batch_bs_at_least":
                        infer["target_slim_vs_dense_batch_bs"],
                    "slim_vs_dense_savedmodel_batch1_at_least":
                        inference_speed.TARGET_SLIM_VS_DENSE_BATCH1},
    }


def main(argv=None):
    """Measures rows 1-6 (1-4 skipped with `--inference_only`), prints the table and writes
    the JSON result; returns the exit status."""
    args = parse_args(argv)
    import_tensorflow()
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = load_average()
    progress("cifar10_prune benchmark: batch %d, %d timed steps x %d rounds, warm-up %d%s"
             % (args.batch_size, args.steps, args.rounds, args.warmup_steps,
                " (--quick)" if args.quick else ""))
    tmp = tempfile.TemporaryDirectory(prefix="cifar10_prune_bench-")

    train = None if args.inference_only else training_speed.measure_training(args, tmp.name)
    infer = inference_speed.measure_inference(args, tmp.name)

    checks = dict(infer["checks"])
    lines, diag, summary = list(TABLE_HEAD), [], {}
    if train:
        summary = training_speed.training_summary(train)
        checks.update(training_speed.training_checks(train["ratio_medians"]))
        lines += training_speed.training_rows(summary, checks, args)
        diag = training_speed.training_diagnostics(summary)
    lines += inference_speed.inference_rows(infer, checks, args.batch_size)
    header, table, diag = report_header(args, infer, started), "\n".join(lines), "\n".join(diag)
    print()
    print(header)
    print()
    print(table)
    if diag:
        print()
        print(diag)

    result = dict(run_record(args, started, load_start, train, infer), targets_met=checks,
                  inference=infer, markdown=header + "\n\n" + table + "\n\n" + diag + "\n",
                  **summary)
    write_result(args.output, result)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
