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
own: see `KeepIterators`) after a warm-up fit (`--warmup_steps`, also pays for
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
TARGET_OURS_VS_KERAS = 1.0  # ours_ista / keras_fit >= 1
TARGET_PIPELINE_VS_OURS = 5.0  # pipeline / ours_ista >= 5
# Issue 9: slim / dense images/s of the exported SavedModel at batch --batch_size at least 0.8 x
# the ratio of their conv multiply-adds, and at batch 1 no worse than dense.
TARGET_SLIM_VS_MACS = 0.8
TARGET_SLIM_VS_DENSE_BATCH1 = 1.0
INFER_FORMATS = ("savedmodel_folded", "savedmodel_unfolded", "tflite_float32")

# Defaults of a full run, and what --quick shrinks them to (explicit flags always win).
FULL = dict(steps=30, warmup_steps=5, rounds=5, pipeline_steps=200, infer_calls=20,
            infer_calls_batch1=200, infer_rounds=5)
QUICK = dict(steps=3, warmup_steps=1, rounds=2, pipeline_steps=10, infer_calls=2,
             infer_calls_batch1=10, infer_rounds=2)


def measurement_parser(doc, full, quick, warmup_help, rounds_help):
    """An argument parser with the options every training benchmark here has; `full`/`quick`
    give the defaults of the count options, filled in by `parse_measurement`."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default="/tmp/cifar10_data",
                   help="directory holding cifar-10-batches-bin/ (default %(default)s)")
    p.add_argument("--batch_size", type=int, default=125, help="default %(default)s")
    p.add_argument("--steps", type=int, help="timed training steps per measurement "
                   "(default %d, --quick %d)" % (full["steps"], quick["steps"]))
    p.add_argument("--warmup_steps", type=int, help="%s (default %d, --quick %d)"
                   % (warmup_help, full["warmup_steps"], quick["warmup_steps"]))
    p.add_argument("--rounds", type=int, help="%s (default %d, --quick %d)"
                   % (rounds_help, full["rounds"], quick["rounds"]))
    p.add_argument("--quick", action="store_true", help="few steps: a smoke run, not a "
                   "measurement")
    return p


def parse_measurement(p, argv, full, quick, positive):
    """Parse `argv`, fill the count options left unset from `full` or `quick`, and refuse any
    of `positive` below 1."""
    args = p.parse_args(argv)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("batch_size",) + tuple(positive):
        if getattr(args, name) < 1:
            p.error("--%s must be >= 1" % name)
    return args


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


def progress(message):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), message), flush=True)


def median(values):
    return statistics.median(values) if values else None


def rotate(items, k):
    k %= len(items)
    return items[k:] + items[:k]


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


def padded_conv_macs(model, block=16):
    """Conv multiply-adds per image with every conv's output channels rounded up to `block`.

    oneDNN's CPU convolutions compute output channels in vector-wide blocks (16 float32 with
    AVX-512), so a conv with 19 outputs costs about as much as one with 32: this is the work
    the narrowed widths actually save on such a CPU (a diagnostic, not a target)."""
    import keras  # only when measuring, like the rest of TensorFlow
    total = 0
    for layer in model.operations:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input.shape[-1] * (-(-cout // block) * block)
    return int(total)


_RATE = re.compile(r"\(([0-9.]+) examples/sec")


class KeepIterators:
    """Stands in for dataset `ds` in `Trainer.fit` (which only calls `iter` on it) and keeps the
    iterators it hands out alive until `release()`, so that their teardown is not timed.

    Every fit call (ours and keras') makes a new iterator of its dataset. On this machine,
    deleting such an iterator often blocks for seconds: the fit call then ends at ~10.2 s or
    ~20.5 s after the iterator was made, i.e. 10 ms * (2**n - 1), consistent with waiting for the
    tf.data autotune thread, whose optimization period doubles from 10 ms (the stall is gone with
    `options.autotune.enabled = False`). It is a per-fit-call cost unrelated to the training step
    (train.py calls fit once per stage) and it would quantize ~10 s timings, so the timed window
    ends before the teardown, which is measured and reported on its own.
    """

    def __init__(self, ds):
        self.ds, self.held = ds, []

    def __iter__(self):
        it = iter(self.ds)
        self.held.append(it)
        return it

    def release(self):
        t0 = time.perf_counter()
        self.held.clear()
        return time.perf_counter() - t0


class OurTrainer:
    """Our `training.Trainer` on dense resnet20 with `ista.ISTA(l1_penalty)`, in a directory
    under `work_dir`, timed one fit call at a time (also used by mixed_precision.py)."""

    def __init__(self, name, ds, batch_size, work_dir, l1_penalty, dtype_policy="float32"):
        from cifar10_prune import models, training
        from cifar10_prune.pruning import ista
        from cifar10_prune.spec import ArchSpec
        self.name, self.batch_size, self.logged = name, batch_size, []
        self.source = KeepIterators(ds)
        model = models.build_model(ArchSpec.dense("resnet20"), dtype_policy=dtype_policy)
        optimizer = ista.ISTA(training.learning_rate_schedule(0.1, batch_size),
                              l1_penalty=l1_penalty, penalties=models.penalties(model))
        train_dir = os.path.join(work_dir, name)
        os.makedirs(train_dir)
        self.trainer = training.Trainer(model, optimizer, train_dir,
                                        save_checkpoint_secs=10 ** 9, log=self.logged.append)

    def fit(self, num_steps):
        """Train `num_steps` more steps; returns the rates and times of this call."""
        bs = self.batch_size
        self.logged.clear()
        start = self.trainer.step
        c0, t0 = time.process_time(), time.perf_counter()
        # log_frequency 10**9: one compiled chunk per call, logged once, at its start.
        self.trainer.fit(self.source, start + num_steps, 10 ** 9, bs)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        teardown = self.source.release()
        assert self.trainer.step == start + num_steps, (self.trainer.step, start, num_steps)
        # Trainer's own logged rate: the compiled multi-step call only (no iterator creation,
        # sparsity metrics, summaries or the checkpoint saved at the end of fit).
        match = _RATE.search(self.logged[0]) if self.logged else None
        return {"images_per_sec": num_steps * bs / dt, "seconds": dt,
                "in_loop_images_per_sec": float(match.group(1)) if match else None,
                "iterator_teardown_seconds": teardown,
                "end_to_end_images_per_sec": num_steps * bs / (dt + teardown),
                "cpu_ms_per_image": 1000.0 * cpu / (num_steps * bs)}


def warm_up(runners, steps):
    """One untimed fit of `steps` steps per runner (it also traces); {runner name: seconds}."""
    seconds = {}
    for runner in runners:
        t0 = time.perf_counter()
        runner.fit(steps)
        seconds[runner.name] = time.perf_counter() - t0
        progress("  %s warm-up fit (%d steps, includes tracing): %.1f s"
                 % (runner.name, steps, seconds[runner.name]))
    return seconds


def import_tensorflow():
    """Imports TensorFlow, Keras and the package's modules, after quieting TensorFlow's C++ log.

    Called at the start of `main`, so that the import time is spent before the run's clock
    starts; the functions below import what they use locally (then a dictionary look-up), which
    keeps `--help` and argument errors fast and lets other scripts import this module cheaply."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # log noise only; no effect on speed
    import numpy  # noqa: F401
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    from cifar10_prune import costs, data, export, models, tflite  # noqa: F401
    from cifar10_prune.spec import ArchSpec  # noqa: F401


# ---- 1. input pipeline alone ----------------------------------------------------------------
def measure_pipeline(ds, args):
    """Images/s of iterating `ds` alone for `--pipeline_steps` batches after `--warmup_steps`."""
    bs = args.batch_size
    it = iter(ds)
    # The first batch also fills the 20,000-record shuffle buffer.
    for _ in range(args.warmup_steps):
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


# ---- 2./3. our Trainer: OurTrainer (above; see KeepIterators on timing) ----------------------
# ---- 4. plain keras.Model.fit ---------------------------------------------------------------
def keras_fit_timer():
    """A Keras callback noting when the first batch began, the last batch ended and training
    ended (wall and process CPU time), for `KerasFit`. A factory because its base class is
    Keras', which is imported only when measuring."""
    import keras

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

    return Timer()


class KerasFit:
    """Plain `keras.Model.fit` of a fresh dense resnet20 compiled with SGD(0.1) on dataset `ds`,
    timed one fit call at a time like `OurTrainer` (up to the end of training)."""
    name = "keras_fit"

    def __init__(self, ds, batch_size):
        import keras
        from cifar10_prune import models
        from cifar10_prune.spec import ArchSpec
        self.ds, self.batch_size = ds, batch_size
        self.model = models.build_model(ArchSpec.dense("resnet20"))
        self.model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        self.timer = keras_fit_timer()

    def fit(self, num_steps):
        """Train `num_steps` more steps; returns the rates and times of this call."""
        bs = self.batch_size
        c0, t0 = time.process_time(), time.perf_counter()
        self.model.fit(self.ds, epochs=1, steps_per_epoch=num_steps, verbose=0,
                       shuffle=False, callbacks=[self.timer])  # ds is already shuffled
        total = time.perf_counter() - t0
        dt = self.timer.train_end - t0
        loop = self.timer.last_end - self.timer.first_begin
        return {"images_per_sec": num_steps * bs / dt, "seconds": dt,
                "in_loop_images_per_sec": num_steps * bs / loop,
                "iterator_teardown_seconds": total - dt,
                "end_to_end_images_per_sec": num_steps * bs / total,
                "cpu_ms_per_image": 1000.0 * (self.timer.train_end_cpu - c0) / (num_steps * bs)}


def measure_training(args, tmp_dir):
    """Rows 1-4: input pipeline, our Trainer (ISTA and SGD), plain keras fit, on one dataset
    object shared by all of them, `--rounds` interleaved rounds after a warm-up fit each.
    Returns the measurements per round, the per-round ratios and their medians."""
    from cifar10_prune import data
    bs, steps = args.batch_size, args.steps
    ds = data.train_dataset(args.data_dir, bs)
    progress("building and warming up (tracing) the three training setups")
    runners = [OurTrainer("ours_ista", ds, bs, tmp_dir, args.l1_penalty),
               OurTrainer("ours_sgd", ds, bs, tmp_dir, 0.0), KerasFit(ds, bs)]
    warmup_seconds = warm_up(runners, args.warmup_steps)

    measurements = {"pipeline": [], "ours_ista": [], "ours_sgd": [], "keras_fit": []}
    jobs = [("pipeline", lambda: measure_pipeline(ds, args))] + [
        (r.name, (lambda r=r: r.fit(steps))) for r in runners]
    for rnd in range(args.rounds):
        # Rotating the order spreads the machine's changing load, and whatever a measurement
        # leaves behind for the next one, over all four.
        for name, job in rotate(jobs, rnd):
            result = job()
            result["round"] = rnd
            measurements[name].append(result)
            extra = ""
            if result.get("in_loop_images_per_sec"):
                extra = " (in-loop %.1f)" % result["in_loop_images_per_sec"]
            progress("round %d  %-10s %9.1f images/s%s" % (rnd + 1, name,
                                                             result["images_per_sec"], extra))
    ratios = training_ratios(measurements, args.rounds)
    return {"measurements": measurements, "ratios": ratios,
            "ratio_medians": {k: median(v) for k, v in ratios.items()},
            "warmup_seconds": warmup_seconds, "jit": runners[2].model.jit_compile}


def training_ratios(measurements, rounds):
    """The training ratios of each round, {name: [one per round]}: taken from measurements made
    next to each other, they are less exposed to the machine's load changing than ratios of
    medians."""
    def per_round(fn, key="images_per_sec"):
        return [fn(*(measurements[n][r][key] for n in ("pipeline", "ours_ista", "ours_sgd",
                                                        "keras_fit")))
                for r in range(rounds)]

    return {
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


# ---- 5./6. inference of exported dense and slim models ---------------------------------------
def export_models(args, tmp_dir):
    """Builds the dense resnet20 and the slim one (every prunable width x `--slim_fraction`)
    and exports each as the folded SavedModel with its TFLite file (what export writes) and as
    the unfolded SavedModel, under `tmp_dir`.

    Returns their sizes {name: ...}, the runners {(format, name): (call on a batch, conversion
    of a uint8 numpy batch to its input)} and the loaded SavedModels, which must outlive the
    runners."""
    import numpy as np
    import tensorflow as tf
    from cifar10_prune import costs, export, models, tflite
    from cifar10_prune.spec import ArchSpec
    if args.slim_architecture:
        with open(args.slim_architecture) as f:
            slim_spec = ArchSpec.from_json(f.read(), origin=args.slim_architecture)
        dense_spec = slim_spec.unpruned()
    else:
        dense_spec = ArchSpec.dense("resnet20")
        slim_spec = ArchSpec("resnet20", {u: max(1, int(round(args.slim_fraction * w)))
                                          for u, w in dense_spec.widths.items()})
    progress("exporting dense and slim (%s) %s: folded SavedModel + TFLite, unfolded "
             "SavedModel" % (", ".join("%s %d" % kv for kv in slim_spec.widths.items()),
                             slim_spec.model))
    models_info, runners, keep = {}, {}, []
    for name, spec in (("dense", dense_spec), ("slim", slim_spec)):
        model = models.build_model(spec)
        models_info[name] = {"params": costs.param_count(model),
                             "conv_macs": costs.conv_flops(model),
                             "conv_macs_out_padded_16": padded_conv_macs(model),
                             "widths": spec.widths}
        for fmt, fold in (("savedmodel_folded", True), ("savedmodel_unfolded", False)):
            path = export.export_saved_model(
                model, os.path.join(tmp_dir, "%s_%s" % (name, fmt)),
                fold_batch_norms=fold, tflite_file=fold)
            loaded = tf.saved_model.load(path)
            keep.append(loaded)  # the signature needs its object alive
            fn = loaded.signatures["serving_default"]
            runners[(fmt, name)] = (lambda x, fn=fn: fn(images=x)["logits"].numpy(),
                                    tf.constant)
            if fold:
                run = tflite.runner(os.path.join(path, tflite.MODEL_FILE))
                runners[("tflite_float32", name)] = (lambda x, run=run: run(x)["logits"],
                                                     np.asarray)
    return models_info, runners, keep


def sample_images(data_dir, bs):
    """The first `bs` CIFAR-10 test images, uint8 numpy, as the serving signature takes them:
    real images rather than noise."""
    import numpy as np
    from cifar10_prune import data
    raw, _ = data.raw_dataset(data_dir, "test")
    images, _ = next(iter(raw.batch(bs, drop_remainder=True).take(1)))
    images = images.numpy().astype(np.uint8)
    assert images.shape == (bs, 32, 32, 3), images.shape
    return images


def time_inference(runners, images, batches, args):
    """Times every runner on the first `batch` of `images` in blocks of `calls` calls, for each
    (batch, calls) of `batches`, after `--warmup_steps` checked calls; `--infer_rounds` rounds,
    dense and slim alternating which goes first. Returns images/s and process CPU microseconds
    per image, each {(format, batch, model): [one per round]}."""
    import numpy as np
    from cifar10_prune import models
    rates, cpu_us = {}, {}
    for batch, calls in batches:
        inputs = {fmt: convert(images[:batch]) for (fmt, _), (_, convert) in runners.items()}
        for (fmt, name), (fn, _) in runners.items():
            for _ in range(args.warmup_steps):
                out = fn(inputs[fmt])
            assert out.shape == (batch, models.NUM_CLASSES) and np.all(np.isfinite(out))
        for rnd in range(args.infer_rounds):
            for fmt in INFER_FORMATS:
                for name in ("dense", "slim") if rnd % 2 == 0 else ("slim", "dense"):
                    fn = runners[(fmt, name)][0]
                    x = inputs[fmt]
                    c0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(calls):
                        fn(x)
                    dt = time.perf_counter() - t0
                    rates.setdefault((fmt, batch, name), []).append(calls * batch / dt)
                    # Process CPU time (all threads) per image: less sensitive than wall
                    # time to other processes taking the cores.
                    cpu_us.setdefault((fmt, batch, name), []).append(
                        1e6 * (time.process_time() - c0) / (calls * batch))
            progress("inference batch %d round %d: %s" % (batch, rnd + 1, ", ".join(
                "%s dense %.0f slim %.0f" % (fmt, rates[(fmt, batch, "dense")][-1],
                                             rates[(fmt, batch, "slim")][-1])
                for fmt in INFER_FORMATS)))
    return rates, cpu_us


def inference_speedups(rates, cpu_us, batches):
    """Slim / dense (from images/s and from CPU time) and folded / unfolded, per round."""
    speedups = {}
    for batch, _ in batches:
        for fmt in INFER_FORMATS:
            speedups["slim_vs_dense/%s/batch%d" % (fmt, batch)] = [
                s / d for d, s in zip(rates[(fmt, batch, "dense")],
                                      rates[(fmt, batch, "slim")])]
            speedups["cpu_time_slim_vs_dense/%s/batch%d" % (fmt, batch)] = [
                d / s for d, s in zip(cpu_us[(fmt, batch, "dense")],
                                      cpu_us[(fmt, batch, "slim")])]
        for name in ("dense", "slim"):
            speedups["folded_vs_unfolded/%s/batch%d" % (name, batch)] = [
                f / u for u, f in zip(rates[("savedmodel_unfolded", batch, name)],
                                      rates[("savedmodel_folded", batch, name)])]
    return speedups


def measure_inference(args, tmp_dir):
    """Rows 5-6: the dense and the slim resnet20 exported as the folded SavedModel (what
    export writes), the unfolded SavedModel (batch norms kept) and float32 TFLite, each at
    batch `--batch_size` and batch 1, dense and slim alternating block by block."""
    from cifar10_prune import tflite
    bs = args.batch_size
    models_info, runners, keep = export_models(args, tmp_dir)
    images = sample_images(args.data_dir, bs)
    batches = ((bs, args.infer_calls), (1, args.infer_calls_batch1))
    rates, cpu_us = time_inference(runners, images, batches, args)
    speedups = inference_speedups(rates, cpu_us, batches)
    mac_ratio = models_info["dense"]["conv_macs"] / models_info["slim"]["conv_macs"]
    padded_ratio = (models_info["dense"]["conv_macs_out_padded_16"]
                    / models_info["slim"]["conv_macs_out_padded_16"])
    need = TARGET_SLIM_VS_MACS * mac_ratio
    medians = {k: median(v) for k, v in speedups.items()}
    checks = {
        "slim_vs_dense_savedmodel_batch%d" % bs:
            medians["slim_vs_dense/savedmodel_folded/batch%d" % bs] >= need,
        "slim_vs_dense_tflite_batch%d" % bs:
            medians["slim_vs_dense/tflite_float32/batch%d" % bs] >= need,
        "slim_vs_dense_savedmodel_batch1":
            medians["slim_vs_dense/savedmodel_folded/batch1"] >= TARGET_SLIM_VS_DENSE_BATCH1,
    }
    del keep
    return {"models": models_info, "batches": [b for b, _ in batches],
            "calls": {str(b): c for b, c in batches},
            "images_per_sec": {"%s/batch%d/%s" % k: v for k, v in rates.items()},
            "median_images_per_sec": {"%s/batch%d/%s" % k: median(v) for k, v in rates.items()},
            "cpu_us_per_image": {"%s/batch%d/%s" % k: v for k, v in cpu_us.items()},
            "median_cpu_us_per_image": {"%s/batch%d/%s" % k: median(v)
                                        for k, v in cpu_us.items()},
            "speedups_per_round": speedups, "speedup_medians": medians,
            "mac_ratio_dense_vs_slim": mac_ratio,
            "padded_mac_ratio_dense_vs_slim": padded_ratio,
            "target_slim_vs_dense_batch_bs": need,
            "checks": checks, "tflite_interpreter": tflite._interpreter_class().__module__}


# ---- report ----------------------------------------------------------------------------------
TABLE_HEAD = ["| # | Measurement | images/s or ratio (median) | range over rounds | target | "
              "result |", "|---|---|---:|---:|---|---|"]


def spread(values, fmt="%.0f"):
    """'min to max' of `values`, each formatted with `fmt`."""
    return (fmt + " to " + fmt) % (min(values), max(values))


def verdict(met):
    """The result column of a checked row."""
    return "met" if met else "**missed**"


def training_summary(train):
    """The medians of `measure_training`'s measurements, with its raw measurements and ratios:
    the training part of the JSON result."""
    measurements = train["measurements"]

    def rates(name, key="images_per_sec"):
        return [m[key] for m in measurements[name]]

    training_runs = ("ours_ista", "ours_sgd", "keras_fit")
    return {
        "warmup_seconds": train["warmup_seconds"],
        "measurements": measurements,
        "median_images_per_sec": {name: median(rates(name)) for name in measurements},
        # None where the Trainer logged no rate.
        "median_in_loop_images_per_sec": {
            name: median([x for x in rates(name, "in_loop_images_per_sec") if x])
            for name in training_runs},
        "median_end_to_end_images_per_sec": {
            name: median(rates(name, "end_to_end_images_per_sec")) for name in training_runs},
        "median_cpu_ms_per_image": {name: median(rates(name, "cpu_ms_per_image"))
                                    for name in training_runs},
        "iterator_teardown_seconds": {name: rates(name, "iterator_teardown_seconds")
                                      for name in measurements},
        "ratios_per_round": train["ratios"],
        "ratio_medians": train["ratio_medians"],
    }


def training_checks(ratio_medians):
    """Whether the training ratios meet their targets, {check name: bool}."""
    return {
        "ista_overhead": ratio_medians["ista_overhead"] < TARGET_ISTA_OVERHEAD,
        "ours_ista_vs_keras_fit": ratio_medians["ours_ista_vs_keras_fit"] >= TARGET_OURS_VS_KERAS,
        "pipeline_vs_ours_ista":
            ratio_medians["pipeline_vs_ours_ista"] >= TARGET_PIPELINE_VS_OURS,
    }


def training_rows(summary, checks, args):
    """Table rows 1-4 and their ratios, from `training_summary`."""
    med, ratios, ratio_medians = (summary["median_images_per_sec"],
                                  summary["ratios_per_round"], summary["ratio_medians"])

    def rates(name):
        return [m["images_per_sec"] for m in summary["measurements"][name]]

    return [
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
           verdict(checks["ista_overhead"])),
        "| 2/4 | Ours (ISTA) / plain fit | %.3f | %s | >= 1.0 | %s |"
        % (ratio_medians["ours_ista_vs_keras_fit"],
           spread(ratios["ours_ista_vs_keras_fit"], "%.3f"),
           verdict(checks["ours_ista_vs_keras_fit"])),
        "| 3/4 | Ours (SGD) / plain fit | %.3f | %s | | |"
        % (ratio_medians["ours_sgd_vs_keras_fit"],
           spread(ratios["ours_sgd_vs_keras_fit"], "%.3f")),
        "| 1/2 | Pipeline / ours (ISTA) | %.0f | %s | >= 5 | %s |"
        % (ratio_medians["pipeline_vs_ours_ista"],
           spread(ratios["pipeline_vs_ours_ista"], "%.0f"),
           verdict(checks["pipeline_vs_ours_ista"])),
    ]


def training_diagnostics(summary):
    """The lines under the table: the training rates measured over other windows than the
    table's, process CPU time and the iterator teardowns, from `training_summary`."""
    training_runs = ("ours_ista", "ours_sgd", "keras_fit")
    med_loop, med_e2e = (summary["median_in_loop_images_per_sec"],
                         summary["median_end_to_end_images_per_sec"])
    ratio_medians, teardown = summary["ratio_medians"], summary["iterator_teardown_seconds"]
    return [
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
        "ours SGD %.2f ms, plain fit %.2f ms (less sensitive than wall time to other "
        "processes taking the CPUs)."
        % tuple(summary["median_cpu_ms_per_image"][name] for name in training_runs),
        "- Iterator teardown per fit call, seconds (each round): ours ISTA %s; ours SGD %s; "
        "plain fit %s."
        % tuple(" ".join("%.1f" % x for x in teardown[name]) for name in training_runs),
    ]


# Inference rows: 5 = SavedModel as export writes it (folded), 5u = unfolded, 6 = TFLite.
INFER_LABELS = {"savedmodel_folded": ("5", "SavedModel, BN folded (export's default)"),
                "savedmodel_unfolded": ("5u", "SavedModel, BN kept (`--nofold_batch_norms`)"),
                "tflite_float32": ("6", "TFLite float32 (`--tflite`)")}


def inference_rows(infer, checks, bs):
    """Table rows 5-6 (images/s, slim / dense, folded / unfolded, per batch size), then the
    models' parameter counts and multiply-adds, from `measure_inference`."""
    lines = []
    rate_rounds, sp, sp_med = (infer["images_per_sec"], infer["speedups_per_round"],
                               infer["speedup_medians"])
    for batch in infer["batches"]:
        for fmt in INFER_FORMATS:
            row, what = INFER_LABELS[fmt]
            for name in ("dense", "slim"):
                values = rate_rounds["%s/batch%d/%s" % (fmt, batch, name)]
                lines.append("| %s%s | %s, %s, batch %d | %.0f | %s | | |"
                             % (row, "a" if name == "dense" else "b", what, name, batch,
                                median(values), spread(values)))
            key = "slim_vs_dense/%s/batch%d" % (fmt, batch)
            target, verdict_text = "", ""
            if fmt == "savedmodel_folded":  # the formats the targets are set on
                target = (">= %.2fx (0.8 x MACs)" % infer["target_slim_vs_dense_batch_bs"]
                          if batch == bs else ">= 1.0x")
                verdict_text = verdict(checks["slim_vs_dense_savedmodel_batch%d" % batch])
            elif fmt == "tflite_float32" and batch == bs:
                target = ">= %.2fx (0.8 x MACs)" % infer["target_slim_vs_dense_batch_bs"]
                verdict_text = verdict(checks["slim_vs_dense_tflite_batch%d" % batch])
            lines.append("| %sb/%sa | %s: slim / dense, batch %d | %.2fx | %s | %s | %s |"
                         % (row, row, what, batch, sp_med[key], spread(sp[key], "%.2f"), target,
                            verdict_text))
            key = "cpu_time_slim_vs_dense/%s/batch%d" % (fmt, batch)
            lines.append("| | the same from CPU time per image (dense / slim) | %.2fx | %s | | |"
                         % (sp_med[key], spread(sp[key], "%.2f")))
        for name in ("dense", "slim"):
            key = "folded_vs_unfolded/%s/batch%d" % (name, batch)
            lines.append("| 5/5u | BN folding speed-up, %s, batch %d | %.2fx | %s | | |"
                         % (name, batch, sp_med[key], spread(sp[key], "%.2f")))
    return lines + model_rows(infer)


def model_rows(infer):
    """The table rows of the dense and slim models' parameter counts and conv multiply-adds."""
    dense, slim = infer["models"]["dense"], infer["models"]["slim"]
    return [
        "| | Params dense / slim (as trained, BNs included) | %d / %d (%.1f%%) | | | |"
        % (dense["params"], slim["params"], 100.0 * slim["params"] / dense["params"]),
        "| | Conv multiply-adds per image dense / slim | %d / %d (%.1f%%; dense/slim %.3fx) "
        "| | | |" % (dense["conv_macs"], slim["conv_macs"],
                     100.0 * slim["conv_macs"] / dense["conv_macs"],
                     infer["mac_ratio_dense_vs_slim"]),
        "| | The same with each conv's output channels rounded up to 16 (oneDNN's AVX-512 "
        "block) | %d / %d (dense/slim %.3fx) | | | |"
        % (dense["conv_macs_out_padded_16"], slim["conv_macs_out_padded_16"],
           infer["padded_mac_ratio_dense_vs_slim"]),
    ]


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
        "targets": {"ista_overhead_below": TARGET_ISTA_OVERHEAD,
                    "ours_ista_vs_keras_fit_at_least": TARGET_OURS_VS_KERAS,
                    "pipeline_vs_ours_ista_at_least": TARGET_PIPELINE_VS_OURS,
                    "slim_vs_dense_savedmodel_batch_bs_at_least":
                        infer["target_slim_vs_dense_batch_bs"],
                    "slim_vs_dense_tflite_batch_bs_at_least":
                        infer["target_slim_vs_dense_batch_bs"],
                    "slim_vs_dense_savedmodel_batch1_at_least": TARGET_SLIM_VS_DENSE_BATCH1},
    }


def write_result(path, result):
    """Writes `result` as JSON to `path`, through a temporary file so that an interrupted run
    never leaves a truncated file in place of a previous result."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    progress("wrote %s (%.0f s in all)" % (path, result["seconds_total"]))


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

    train = None if args.inference_only else measure_training(args, tmp.name)
    infer = measure_inference(args, tmp.name)

    checks = dict(infer["checks"])
    lines, diag, summary = list(TABLE_HEAD), [], {}
    if train:
        summary = training_summary(train)
        checks.update(training_checks(train["ratio_medians"]))
        lines += training_rows(summary, checks, args)
        diag = training_diagnostics(summary)
    lines += inference_rows(infer, checks, args.batch_size)
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
