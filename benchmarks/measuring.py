"""What the benchmark scripts here share: their command line, progress lines, medians,
the machine they ran on, the table's verdicts and the JSON result file."""
import argparse
import datetime
import json
import os
import platform
import statistics


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


def scaled_widths(widths, fraction):
    """`widths` ({layer: width}) each times `fraction`, rounded, at least 1: the benchmarks'
    slim models."""
    return {u: max(1, int(round(fraction * w))) for u, w in widths.items()}


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


def spread(values, fmt="%.0f"):
    """'min to max' of `values`, each formatted with `fmt`."""
    return (fmt + " to " + fmt) % (min(values), max(values))


def verdict(met):
    """The result column of a checked row."""
    return "met" if met else "**missed**"


def write_result(path, result):
    """Writes `result` as JSON to `path`, through a temporary file so that an interrupted run
    never leaves a truncated file in place of a previous result."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    progress("wrote %s (%.0f s in all)" % (path, result["seconds_total"]))
