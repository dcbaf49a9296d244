"""The one home of the on-disk layout of a run: the names of stage directories and the files in
them, their formats, and reading and writing them. Other modules call these functions instead of
building such a path or parsing a file name, so the layout can change in one place.

- Stage directories: stage v of `--train_dir base` is `<base>_<v>` (`stage_dir`). Stage 0
  starts from scratch; stage v > 0 starts from the compressed model (`model.ckpt-0` plus
  architecture.json) that the end of stage v-1 wrote into its directory (`write_compressed`:
  a `StageEnd` compressed as a `Compression` says).
  `spec_for_training`, `spec_for_eval` and `prepare` find or create a stage's architecture.
- Checkpoints: their names, `model.ckpt-<step>` (`CHECKPOINT_NAME`, `checkpoint_file`,
  `checkpoint_step`), their object layout (`make_checkpoint`, `checkpoint_manager`), and
  finding, listing, checking and reading them (`checkpoint_path`, `checkpoints_on_disk`,
  `intact`, `read_checkpoint`, `restore_averaged`, `load_averaged`, `CheckpointError`).
- The architecture file, `architecture.json` (`ARCHITECTURE_FILE`): written with provenance
  fields (`write_architecture`), read and validated (`read_architecture`), its whole record
  for the provenance (`read_provenance`), and whether a directory has one (`has_architecture`).
- The layout run_experiments.sh makes inside its --train_dir, which report.py reads: stages
  `cifar10_train_<v>` (`RUN_STAGE_PREFIX`, `run_stage_dir`) and evals `eval_<v>`
  (`run_eval_dir`).
"""
import dataclasses
import json
import logging
import os

import tensorflow as tf

from cifar10_prune import costs, models, rebuild, spec as spec_lib, storage
from cifar10_prune.pruning import ExponentialMovingAverage
from cifar10_prune.spec import ArchitectureError, ArchSpec

ARCHITECTURE_FILE = "architecture.json"
CHECKPOINT_NAME = "model.ckpt"
# run_experiments.sh trains every stage with --train_dir <its --train_dir>/cifar10_train.
RUN_STAGE_PREFIX = "cifar10_train"


class StageError(ValueError):
    """A stage directory is missing, inconsistent, or would be overwritten."""


class CheckpointError(ValueError):
    """A checkpoint is damaged or does not fit the model it is read into."""


# --- stage directories ----------------------------------------------------------------------

def stage_dir(base, version):
    """The directory of stage `version` of the run whose --train_dir is `base`: `<base>_<v>`."""
    return "%s_%d" % (base, version)


def run_stage_dir(train_dir, version):
    """Stage `version`'s directory in the --train_dir of run_experiments.sh:
    `<train_dir>/cifar10_train_<v>`."""
    return stage_dir(os.path.join(train_dir, RUN_STAGE_PREFIX), version)


def run_eval_dir(train_dir, version):
    """Where run_experiments.sh has eval write the results of stage directory `version` (the
    compressed end of stage `version - 1`): `<train_dir>/eval_<v>`."""
    return os.path.join(train_dir, "eval_%d" % version)


# --- the architecture file ------------------------------------------------------------------

def _architecture_file(directory):
    return os.path.join(directory, ARCHITECTURE_FILE)


def has_architecture(directory):
    """Whether `directory` holds a stage written by this package (its architecture.json)."""
    return os.path.exists(_architecture_file(directory))


def write_architecture(directory, spec, **provenance):
    """Write `spec` as `directory/architecture.json`, with the `provenance` fields (e.g. the
    checkpoint it was compressed from) stored alongside. Returns the file's path."""
    path = _architecture_file(directory)
    # Through a temporary file and a rename, so a kill never leaves it half-written.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(spec.to_json(**provenance))
    os.replace(tmp, path)
    return path


def read_architecture(directory):
    """The ArchSpec of `directory/architecture.json`, validated; ArchitectureError, naming the
    file, if it is not one this package wrote or can build."""
    path = _architecture_file(directory)
    with open(path) as f:
        text = f.read()
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArchitectureError("%s is not valid JSON (%s); it should be the %s written "
                                "when a stage is compressed" % (path, e, ARCHITECTURE_FILE))
    return ArchSpec.from_record(record, origin=path)


def read_provenance(directory):
    """The whole JSON record of `directory/architecture.json`, with the provenance fields that
    `write_architecture` stored (e.g. source, trained_with), unvalidated."""
    with open(_architecture_file(directory)) as f:
        return json.load(f)


# --- checkpoints ----------------------------------------------------------------------------

def checkpoint_file(directory, step):
    """The path of global step `step`'s checkpoint in `directory`, `model.ckpt-<step>` (the
    prefix of its .index and .data files), whether or not it exists."""
    return os.path.join(directory, "%s-%d" % (CHECKPOINT_NAME, step))


def checkpoint_step(path):
    """The global step of checkpoint `path` (`.../model.ckpt-<step>`)."""
    return int(path.rsplit("-", 1)[1])


def make_checkpoint(model, ema, optimizer=None, gamma_rescale=None):
    """The one checkpoint layout every stage writes and reads: model (raw weights), ema
    (their averages), and when training, the optimizer (global step) and the gamma rescale."""
    parts = {"model": model, "ema": _ema_trackable(ema)}
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if gamma_rescale is not None:
        parts["gamma_rescale"] = gamma_rescale
    return tf.train.Checkpoint(**parts)


def _ema_trackable(ema):
    """The averages as checkpoints have always held them (`ema/shadows/<i>`, from when the
    library's `ExponentialMovingAverage` was a `tf.Module`): the library's class is
    backend-neutral, not a TensorFlow trackable, so a module carries its shadows here. It
    tracks the averaged variables too, as the `tf.Module` did (the model's trainable weights
    are stored under `ema/_variables/<i>`), so the files keep their keys."""
    module = tf.Module(name="ema")
    module._variables = list(ema._variables)
    module.shadows = list(ema.shadows)
    return module


def checkpoint_manager(checkpoint, directory, max_to_keep=5):
    """Checkpoints named `model.ckpt-<global step>`, as the original's."""
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep,
                                      checkpoint_name=CHECKPOINT_NAME)


def checkpoints_on_disk(directory):
    """The `model.ckpt-<step>` paths present in `directory`, oldest first (by global step),
    including a stage's preserved `model.ckpt-0`, which the checkpoint state no longer lists."""
    suffix = ".index"
    found = tf.io.gfile.glob(os.path.join(directory, "%s-*%s" % (CHECKPOINT_NAME, suffix)))
    paths = [p[:-len(suffix)] for p in found if p[:-len(suffix)].rsplit("-", 1)[1].isdigit()]
    return sorted(paths, key=checkpoint_step)


def checkpoint_path(directory, iteration=-1):
    """`directory/model.ckpt-<iteration>`, or the newest checkpoint for iteration -1."""
    if iteration < 0:
        path = tf.train.latest_checkpoint(directory)
        if not path:
            raise StageError("no checkpoint found in %s; train that stage first, or check "
                             "--checkpoint_dir and --checkpoint_version" % directory)
        return path
    path = checkpoint_file(directory, iteration)
    if not tf.io.gfile.exists(path + ".index"):
        state = tf.train.get_checkpoint_state(directory)
        have = [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []
        raise StageError("no checkpoint %s; %s holds %s" % (path, directory, have or "none"))
    return path


def intact(path):
    """Whether every tensor of checkpoint `path` can be read in full."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (ValueError, IndexError, tf.errors.OpError):
        return False
    return True


def read_checkpoint(checkpoint, path, model_name="this"):
    """`checkpoint.read(path)`, turning what can go wrong with the file into CheckpointError:
    damaged (cut short, unreadable) or made for another architecture."""
    damaged = mismatch = None
    try:
        checkpoint.read(path).expect_partial()
    except (IndexError, tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
        damaged = str(e)
    except (ValueError, tf.errors.OpError) as e:
        mismatch = str(e).strip().splitlines()[0]
    if damaged is not None:
        raise CheckpointError("%s is damaged (%s): it was cut short or corrupted, e.g. by a full "
                              "disk or a copy that broke off" % (path, damaged))
    if mismatch is not None:
        raise CheckpointError("%s does not fit the %s architecture (%s); was architecture.json "
                              "edited or replaced, or is --is_compressed wrong for this stage?"
                              % (path, model_name, mismatch))


def restore_averaged(model, path):
    """Load checkpoint `path` into `model` and replace its trainable weights by their moving
    averages (this port always evaluates the averages; see the README's Faithfulness section).
    Returns the EMA object. Raises CheckpointError for a damaged or mismatched file."""
    ema = ExponentialMovingAverage(model.trainable_variables)
    read_checkpoint(make_checkpoint(model, ema), path, model.name)
    ema.copy_to_variables()
    return ema


def load_averaged(spec, path, weight_decay=0.0005):
    """The model of `spec` holding checkpoint `path`'s averaged weights (what eval and export
    use). A damaged checkpoint, or one of other shapes, gives CheckpointError."""
    model = models.build_model(spec, weight_decay)
    restore_averaged(model, path)
    return model


# --- stages ---------------------------------------------------------------------------------

def _train_command(base, version):
    return ("python -m cifar10_prune.train --train_dir %s --checkpoint_version %d "
            "(with that stage's --l1_penalty/--max_steps)" % (base, version))


def spec_for_training(base, version, model, model_explicit=False, block_outputs=None):
    """The architecture stage `version` trains: dense `model` for a new stage 0 (with its block
    outputs prunable if `block_outputs`), otherwise the one stored in its directory, whose
    setting of block outputs holds (`block_outputs` None: not given; a given one must agree).
    Raises StageError naming the fix when it is missing or contradicted."""
    directory = stage_dir(base, version)
    if has_architecture(directory):
        spec = read_architecture(directory)
        if model_explicit and spec.model != model:
            raise StageError("--model %s, but %s holds a %s stage; drop --model or use another "
                             "--train_dir" % (model, directory, spec.model))
        if block_outputs is not None and block_outputs != spec.block_outputs:
            raise StageError("--%sprune_block_outputs, but %s holds a stage whose block outputs "
                             "are %spruned (its %s says so); drop the flag or use another "
                             "--train_dir" % ("" if block_outputs else "no", directory,
                                              "" if spec.block_outputs else "not ",
                                              ARCHITECTURE_FILE))
        return spec
    if version == 0:
        if tf.train.latest_checkpoint(directory):
            raise StageError("%s has checkpoints but no %s; it was not written by this package"
                             % (directory, ARCHITECTURE_FILE))
        return ArchSpec.dense(model, bool(block_outputs))
    raise StageError(
        "stage %d starts from the compressed model that stage %d writes into %s, but %s has no "
        "%s. Produce it first with:\n  %s"
        % (version, version - 1, directory, directory, ARCHITECTURE_FILE,
           _train_command(base, version - 1)))


def spec_for_eval(directory, model, is_compressed):
    """The architecture to evaluate a checkpoint of `directory` with."""
    if not os.path.isdir(directory):
        raise StageError("%s does not exist; check --checkpoint_dir and --checkpoint_version "
                         "(stage N is read from <checkpoint_dir>_N)" % directory)
    if not is_compressed:
        # The dense --model, with gammas on its residual stream if the stage was trained so.
        recorded = has_architecture(directory) and read_architecture(directory).block_outputs
        return ArchSpec.dense(model, recorded)
    if not has_architecture(directory):
        raise StageError("%s has no %s (written when a stage starts or is compressed); check "
                         "--checkpoint_dir/--checkpoint_version, or pass --is_compressed=false "
                         "to evaluate it as the dense --model" % (directory, ARCHITECTURE_FILE))
    return read_architecture(directory)


def prepare(directory, spec):
    """Create a stage directory and record its architecture there if it is not yet."""
    os.makedirs(directory, exist_ok=True)
    if not has_architecture(directory):
        write_architecture(directory, spec)


def _preserve_checkpoint(directory, path):
    """Mark `path` (the only checkpoint in `directory`) as preserved in the checkpoint state, so
    the next stage's CheckpointManager never deletes it (it only manages checkpoints newer than
    the state's last_preserved_timestamp): like the original's, the stage's starting point
    stays on disk for `eval --checkpoint_iter 0`."""
    stamp = os.path.getmtime(path + ".index")
    name = os.path.basename(path)  # relative: the directory is renamed into place afterwards
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # its deprecation notice says to use CheckpointManager,
    try:                               # which has no public way to preserve a checkpoint
        tf.compat.v1.train.update_checkpoint_state(
            directory, name, all_model_checkpoint_paths=[name],
            all_model_checkpoint_timestamps=[stamp], last_preserved_timestamp=stamp)
    finally:
        tf_logger.setLevel(level)


def _tail(path, n):
    """The last `n` components of `path`: a stage's provenance names its source by absolute path,
    but a run directory moved elsewhere (another disk, another machine) is still the same run, so
    sources are compared by stage directory and checkpoint name only."""
    return os.path.normpath(path).split(os.sep)[-n:]


@dataclasses.dataclass
class StageEnd:
    """The end of a trained stage, as compression reads it."""
    spec: ArchSpec
    model: object  # the trained keras.Model
    averages: list  # its weights' moving averages, in model.trainable_variables order
    checkpoint: str  # the checkpoint they were saved in: the next stage's recorded source


@dataclasses.dataclass
class Compression:
    """How the end of a stage becomes the next stage."""
    weight_decay: float
    absorb: bool = True  # rebuild.narrow's: False drops the constants, as the original
    recalibrate: object = None  # recalibrate(new_model), if given, runs before saving
    trained_with: dict = dataclasses.field(default_factory=dict)  # recorded for reports


def write_compressed(base, version, end, how, log=print):
    """Compress `end` (a StageEnd of stage `version`) as `how` (a Compression) says, and write it
    as stage `version + 1`: `model.ckpt-0` and architecture.json, through `storage.directory`,
    so a failure or a kill leaves nothing half-written. An existing next stage is never
    overwritten (`_existing_next_stage` says what happens instead). Returns the new ArchSpec.
    """
    target = stage_dir(base, version + 1)
    source = os.path.abspath(end.checkpoint)
    kept, replace = _existing_next_stage(target, source, log)
    if kept is not None:
        return kept

    new_spec, new_model = rebuild.narrow(end.spec, end.model, end.averages, how.weight_decay,
                                         how.absorb)
    log("compressed %s (%s; total params %d -> %d, conv multiply-adds %d -> %d):"
        % (source, "constants of pruned channels absorbed" if how.absorb else
           "constants of pruned channels dropped, as the original",
           costs.param_count(end.model), costs.param_count(new_model),
           costs.conv_flops(end.model), costs.conv_flops(new_model)))
    for line in spec_lib.width_table(end.spec, new_spec):
        log("  " + line)
    if how.recalibrate is not None:
        how.recalibrate(new_model)

    with storage.writing("stage %d to %s" % (version + 1, target),
                         "The stage it comes from, %s, is intact: once the problem is fixed, "
                         "rerun the same command." % source), \
            storage.directory(target, replace=replace, log=log) as tmp:
        ema = ExponentialMovingAverage(new_model.trainable_variables)
        manager = checkpoint_manager(make_checkpoint(new_model, ema), tmp)
        path = manager.save(checkpoint_number=0)
        write_architecture(tmp, new_spec, source=source, parent_stage=version,
                           trained_with=how.trained_with,
                           recalibrated_bn=how.recalibrate is not None,
                           absorbed_pruned_constants=how.absorb)
        _preserve_checkpoint(tmp, path)
    log("wrote stage %d to %s" % (version + 1, target))
    return new_spec


def _existing_next_stage(target, source, log):
    """What to do about a next stage `target` already on disk, when compressing `source`.

    Returns (spec, False) to leave it as is: it is the compression of this same checkpoint
    (trained since or not), as when all of run_experiments.sh is rerun after an interruption in
    a later stage. Returns (None, True) to replace it: it is only the untrained compression of an
    earlier checkpoint of the same stage (the stage was resumed to a higher max_steps), derived
    data. Returns (None, False) when there is none. Raises StageError otherwise.
    """
    if not (os.path.isdir(target) and os.listdir(target)):
        return None, False
    record = read_provenance(target) if has_architecture(target) else {}
    untrained = (tf.train.latest_checkpoint(target) or "").endswith("-0")
    recorded = str(record.get("source", ""))
    if _tail(recorded, 2) == _tail(source, 2):
        log("%s already holds the compression of %s%s; left as is"
            % (target, source, "" if untrained else " (trained since)"))
        return read_architecture(target), False
    same_stage = _tail(os.path.dirname(recorded), 1) == _tail(os.path.dirname(source), 1)
    if not (untrained and same_stage):
        raise StageError("%s already holds a stage that was trained or did not come from "
                         "%s; refusing to overwrite it. Move or delete it to compress "
                         "again." % (target, os.path.dirname(source)))
    log("replacing %s (the untrained compression of %s) with that of %s"
        % (target, recorded, source))
    return None, True
