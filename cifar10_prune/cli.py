"""What the entry points share: turning this package's errors into one clear line and exit 1."""
import logging as std_logging
import sys

from absl import app, flags, logging

from cifar10_prune.data import DataError
from cifar10_prune.distribute import DistributionError
from cifar10_prune.lock import StageInUseError
from cifar10_prune.spec import ArchitectureError
from cifar10_prune.stages import CheckpointError, StageError
from cifar10_prune.storage import WriteError
from cifar10_prune.training import TrainingError

# Problems with the user's input or files: reported without a traceback.
USER_ERRORS = (DataError, ArchitectureError, StageError, TrainingError,
               CheckpointError, FileExistsError, WriteError, DistributionError, StageInUseError)


def run(main, define_flags):
    """`absl.app.run(main)` after `define_flags()`, reporting USER_ERRORS as
    `error: <message>` and exit status 1.

    Flags are defined here rather than at import, so importing an entry module has no side
    effect; the ones `define_flags` adds become key flags of the main module (absl names it by
    sys.argv[0]), so `--help` lists them although their definitions live in cifar10_prune.flags.
    """
    before = set(flags.FLAGS)
    define_flags()
    for name in set(flags.FLAGS) - before:
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.WARNING)  # TF's INFO lines would bury the log
        if len(argv) > 1:
            # e.g. `--train_dir --checkpoint_version 1`: absl took the flag name as the value.
            print("error: unexpected argument%s %s: every option is a flag, --name=value or "
                  "--name value (is a flag missing its value?)"
                  % ("s" if len(argv) > 2 else "", " ".join(repr(a) for a in argv[1:])),
                  file=sys.stderr, flush=True)
            sys.exit(1)
        try:
            return main(argv)
        except USER_ERRORS as e:
            print("error: %s" % e, file=sys.stderr, flush=True)
            # A failed checkpoint read leaves objects that, collected at exit, log every value
            # they could not match: dozens of lines after the one that says what is wrong.
            std_logging.getLogger("tensorflow").setLevel(std_logging.ERROR)
            sys.exit(1)
    app.run(guarded)
