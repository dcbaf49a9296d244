"""Rows 1-4 of benchmark.py: training speed of our `Trainer` (ISTA and plain SGD) against
plain `keras.Model.fit`, and the input pipeline alone, on one shared dataset (also used by
mixed_precision.py). TensorFlow and the package are imported inside the functions, so that
importing this module stays cheap."""
import os
import re
import time

from measuring import median, progress, rotate, spread, verdict

# Targets the numbers are checked against (see README.md).
TARGET_ISTA_OVERHEAD = 0.03  # ours_sgd / ours_ista - 1 < 3%
TARGET_OURS_VS_KERAS = 1.0  # ours_ista / keras_fit >= 1
TARGET_PIPELINE_VS_OURS = 5.0  # pipeline / ours_ista >= 5

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
