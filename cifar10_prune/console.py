"""What the console shows: this package's lines, not TensorFlow's start-up notes.

TensorFlow's C++ runtime prints a dozen lines while it loads and finds its devices (oneDNN
notes, CPU instruction hints, "failed call to cuInit" on a machine without a GPU); they are not
about the user's run and bury the original's log lines. Since TensorFlow 2.19 they are written
before its logging is set up, so TF_CPP_MIN_LOG_LEVEL no longer hides them
(tensorflow/tensorflow#100442). The entry points therefore load TensorFlow through
`quiet_tensorflow()`, which holds back the C++ log lines printed during start-up only; anything
else, and every line printed later, reaches the console as usual. `--verbosity` (absl's flag)
shows everything.

Some TensorFlow calls log progress notes of their own from C++ later on: the TFLite converter
prints about ten (`Reading SavedModel from: ...`, `Ignored output_format.`, ...) on every
successful conversion. `quiet_cpp()` holds those back around such a call, the same way.
"""
import contextlib
import os
import re
import sys
import tempfile

from absl import flags

# A C++ log line (absl or TensorFlow format), or absl's note that logging is not set up yet.
_CPP_LOG = re.compile(r"^([IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\]|"
                      r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] [\w./-]+:\d+\]|"
                      r"WARNING: All log messages before absl::InitializeLog\(\))")


def _asked_for_logs(argv):
    return any(a in ("-v", "--verbosity") or a.startswith(("--verbosity=", "-v="))
               for a in argv[1:])


def _configures_devices(argv):
    return any(a.startswith(("--distribution_strategy", "--cpu_replicas")) for a in argv[1:])


def start_up_noise(line):
    """Whether `line` is one of the C++ runtime's log lines that start-up prints."""
    return bool(_CPP_LOG.match(line))


def _without_noise(lines):
    """`lines` minus the C++ log lines and their continuation lines."""
    kept, in_noise = [], False
    for line in lines:
        if start_up_noise(line):
            in_noise = True
        elif in_noise and not line[:1].isspace() and not line.startswith(("Traceback", "error")):
            continue  # e.g. the CPU feature guard's second line
        else:
            in_noise = False
            kept.append(line)
    return kept


@contextlib.contextmanager
def cpp_lines_held_back(keep_on_success=True):
    """Run the block with the process's stderr (file descriptor 2, where TensorFlow's C++
    runtime logs) captured, then pass on what it printed: all of it if the block failed with an
    unexpected error; otherwise all but the C++ log lines, or everything if `keep_on_success`
    and the block succeeded. For a block whose failure is reported as one `error:` line, the
    C++ runtime's own words for that failure are only a noisier copy of it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        outcome = "unexpected"
        try:
            yield
            outcome = "success"
        except Exception as e:
            if type(e).__module__.startswith("cifar10_prune"):
                outcome = "reported"
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines(keepends=True)
            everything = outcome == "unexpected" or (outcome == "success" and keep_on_success)
            sys.stderr.write("".join(lines if everything else _without_noise(lines)))
            sys.stderr.flush()


def quiet_tensorflow(argv=None):
    """Import TensorFlow and find its devices with the C++ start-up log lines held back.

    Call before anything else imports TensorFlow. Lines that are not C++ log lines are passed
    on; if loading fails, everything it printed is shown. Does nothing with `--verbosity`.
    """
    argv = sys.argv if argv is None else argv
    if "tensorflow" in sys.modules or _asked_for_logs(argv):
        return
    with cpp_lines_held_back(keep_on_success=False):
        import tensorflow as tf
        tf.config.list_physical_devices()  # device discovery (cuInit) logs here
        if not _configures_devices(argv):  # which must happen before any op runs
            # oneDNN notes once per process, on the first uint8 transpose (the data
            # pipeline's).
            tf.transpose(tf.zeros([1, 2, 1], tf.uint8)).numpy()


def quiet_cpp():
    """`cpp_lines_held_back(keep_on_success=False)` for a call whose C++ code logs progress
    notes when it succeeds (the TFLite converter): they are held back, while what it prints
    when it fails, and any line that is not a C++ log line, is passed on. With absl's
    `--verbosity` given on the command line, nothing is held back."""
    if flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present:
        return contextlib.nullcontext()
    return cpp_lines_held_back(keep_on_success=False)
