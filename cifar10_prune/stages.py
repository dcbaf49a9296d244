"""Stage directories: stage v lives in `<base>_<v>` with its checkpoints and architecture.json.

Stage 0 starts from scratch; stage v > 0 starts from the compressed model (`model.ckpt-0` plus
architecture.json) that the end of stage v-1 wrote into its directory.
"""
import logging
import os

import tensorflow as tf

from cifar10_prune import costs, models, rebuild, spec as spec_lib, storage, training
from cifar10_prune.ema import ExponentialMovingAverage
from cifar10_prune.spec import ARCHITECTURE_FILE, ArchSpec


class StageError(ValueError):
    """A stage directory is missing, inconsistent, or would be overwritten."""


def stage_dir(base, version):
    return "%s_%d" % (base, version)


def has_architecture(directory):
    """Whether `directory` holds a stage written by this package (its architecture.json)."""
    return os.path.exists(os.path.join(directory, ARCHITECTURE_FILE))


def _train_command(base, version):
    return ("python -m cifar10_prune.train --train_dir %s --checkpoint_version %d "
            "(with that stage's --l1_penalty/--max_steps)" % (base, version))


def spec_for_training(base, version, model, model_explicit=False):
    """The architecture stage `version` trains: dense `model` for a new stage 0, otherwise the
    one stored in its directory. Raises StageError naming the fix when it is missing."""
    directory = stage_dir(base, version)
    if has_architecture(directory):
        spec = ArchSpec.load(directory)
        if model_explicit and spec.model != model:
            raise StageError("--model %s, but %s holds a %s stage; drop --model or use another "
                             "--train_dir" % (model, directory, spec.model))
        return spec
    if version == 0:
        if tf.train.latest_checkpoint(directory):
            raise StageError("%s has checkpoints but no %s; it was not written by this package"
                             % (directory, ARCHITECTURE_FILE))
        return ArchSpec.dense(model)
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
        return ArchSpec.dense(model)
    if not has_architecture(directory):
        raise StageError("%s has no %s (written when a stage starts or is compressed); check "
                         "--checkpoint_dir/--checkpoint_version, or pass --is_compressed=false "
                         "to evaluate it as the dense --model" % (directory, ARCHITECTURE_FILE))
    return ArchSpec.load(directory)


def prepare(directory, spec):
    """Create a stage directory and record its architecture there if it is not yet."""
    os.makedirs(directory, exist_ok=True)
    if not has_architecture(directory):
        spec.save(directory)


def load_averaged(spec, path, weight_decay=0.0005):
    """The model of `spec` holding checkpoint `path`'s averaged weights (what eval and export
    use). A damaged checkpoint, or one of other shapes, gives training.CheckpointError."""
    model = models.build_model(spec, weight_decay)
    training.restore_averaged(model, path)
    return model


def checkpoint_path(directory, iteration=-1):
    """`directory/model.ckpt-<iteration>`, or the newest checkpoint for iteration -1."""
    if iteration < 0:
        path = tf.train.latest_checkpoint(directory)
        if not path:
            raise StageError("no checkpoint found in %s; train that stage first, or check "
                             "--checkpoint_dir and --checkpoint_version" % directory)
        return path
    path = os.path.join(directory, "%s-%d" % (training.CHECKPOINT_NAME, iteration))
    if not tf.io.gfile.exists(path + ".index"):
        state = tf.train.get_checkpoint_state(directory)
        have = [os.path.basename(p) for p in state.all_model_checkpoint_paths] if state else []
        raise StageError("no checkpoint %s; %s holds %s" % (path, directory, have or "none"))
    return path


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


def write_compressed(base, version, spec, model, averages, weight_decay, source,
                     recalibrate=None, trained_with=None, absorb=True, log=print):
    """Compress the end of stage `version` and write it as stage `version + 1`.

    Writes `model.ckpt-0` and architecture.json through `storage.directory`, so a failure or a
    kill leaves nothing half-written. An existing next stage is never overwritten
    once trained: if it is the compression of this same `source` checkpoint it is left as is; if
    it is the untrained compression of an earlier checkpoint of the same stage (the stage was
    resumed to a higher max_steps) it is replaced, saying so; otherwise StageError.
    `recalibrate(new_model)`, if given, runs before saving. `trained_with` (the stage's
    settings, e.g. l1_penalty) is recorded in the new architecture.json for reports. `absorb`
    is `rebuild.compress`'s (False: the original's arithmetic, constants dropped).
    Returns the new ArchSpec.
    """
    target = stage_dir(base, version + 1)
    source = os.path.abspath(source)
    replace = False
    if os.path.isdir(target) and os.listdir(target):
        record = spec_lib.read_extra(target) if has_architecture(target) else {}
        latest = tf.train.latest_checkpoint(target) or ""
        untrained = latest.endswith("-0")
        if untrained and record.get("source") == source:
            log("%s already holds the compression of %s; left as is" % (target, source))
            return ArchSpec.load(target)
        mine = os.path.dirname(str(record.get("source", ""))) == os.path.dirname(source)
        if not (untrained and mine):
            raise StageError("%s already holds a stage that was trained or did not come from "
                             "%s; refusing to overwrite it. Move or delete it to compress "
                             "again." % (target, os.path.dirname(source)))
        # Only the untrained compression of an earlier checkpoint of this same stage: it is
        # derived data, superseded by this later checkpoint.
        log("replacing %s (the untrained compression of %s) with that of %s"
            % (target, record["source"], source))
        replace = True

    new_spec, new_model = rebuild.compress(spec, model, averages, weight_decay, absorb)
    log("compressed %s (%s; total params %d -> %d, conv multiply-adds %d -> %d):"
        % (source, "constants of pruned channels absorbed" if absorb else
           "constants of pruned channels dropped, as the original",
           costs.param_count(model), costs.param_count(new_model),
           costs.conv_flops(model), costs.conv_flops(new_model)))
    for line in spec_lib.width_table(spec, new_spec):
        log("  " + line)
    if recalibrate is not None:
        recalibrate(new_model)

    with storage.writing("stage %d to %s" % (version + 1, target),
                         "The stage it comes from, %s, is intact: once the problem is fixed, "
                         "rerun the same command." % source), \
            storage.directory(target, replace=replace, log=log) as tmp:
        ema = ExponentialMovingAverage(new_model.trainable_variables)
        manager = training.checkpoint_manager(training.make_checkpoint(new_model, ema), tmp)
        path = manager.save(checkpoint_number=0)
        new_spec.save(tmp, source=source, parent_stage=version, trained_with=trained_with or {},
                      recalibrated_bn=recalibrate is not None, absorbed_pruned_constants=absorb)
        _preserve_checkpoint(tmp, path)
    log("wrote stage %d to %s" % (version + 1, target))
    return new_spec
