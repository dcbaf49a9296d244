"""Train one stage of the recipe (the original cifar10_train.py).

    python -m cifar10_prune.train --l1_penalty 0.001 --max_steps 30000 --checkpoint_version 0

Stage v trains in train_dir_v, resuming from its newest checkpoint, until global step max_steps;
with --squeeze_model it then removes the channels whose gamma is exactly zero and writes the
narrower model as stage v+1 (train_dir_{v+1}/model.ckpt-0 + architecture.json).
"""
from cifar10_prune import console

console.quiet_tensorflow()  # before TensorFlow loads; its start-up lines are not the user's

import contextlib
import sys

import tensorflow as tf
from absl import flags

from cifar10_prune import (cli, data, distribute, mixed_precision, models, pruning, rescale,
                           seeding, stages, training)
from cifar10_prune.lock import StageLock
from cifar10_prune.flags.train import define_train_flags
from cifar10_prune.pruning import ista
from cifar10_prune.recalibrate import recalibrate_bn

FLAGS = flags.FLAGS


def main(argv):
    del argv
    # First: devices and collective ops can only be configured before TensorFlow runs an op.
    strategy = distribute.make_strategy(FLAGS.distribution_strategy, FLAGS.cpu_replicas, FLAGS.tpu)
    tf.debugging.set_log_device_placement(FLAGS.log_device_placement)
    version = FLAGS.checkpoint_version
    train_dir = stages.stage_dir(FLAGS.train_dir, version)
    spec = stages.spec_for_training(
        FLAGS.train_dir, version, FLAGS.model, FLAGS["model"].present,
        FLAGS.prune_block_outputs if FLAGS["prune_block_outputs"].present else None)
    print(seeding.seed_everything(FLAGS.seed))

    policy = mixed_precision.policy_name(FLAGS.use_fp16)
    print(mixed_precision.describe(policy))
    warning = None if FLAGS.tpu else mixed_precision.cpu_warning(policy)
    if warning:
        print(warning, file=sys.stderr)
    with strategy.scope():
        model = models.build_model(spec, FLAGS.weight_decay, dtype_policy=policy)
        penalties = models.penalties(model)
        optimizer = ista.ISTA(training.learning_rate_schedule(FLAGS.learning_rate,
                                                              FLAGS.batch_size),
                              l1_penalty=FLAGS.l1_penalty, penalties=penalties,
                              adaptive=_has_budget(), coupled=_coupled(model, penalties))
        optimizer = mixed_precision.wrap_optimizer(optimizer, policy)  # loss scaling for float16 only
    budget = _budget(spec, optimizer) if _has_budget() else None
    trainer = training.Trainer(model, optimizer, train_dir, FLAGS.save_checkpoint_secs,
                               strategy=strategy)
    with StageLock(train_dir) if trainer.workdir.chief else contextlib.nullcontext():
        train_stage(trainer, version, train_dir, spec, budget)


def _has_budget():
    return FLAGS.target_macs is not None or FLAGS.target_params is not None


def _coupled(model, penalties):
    """The groups --coupled_threshold thresholds together (None without it)."""
    if not FLAGS.coupled_threshold:
        return None
    found = pruning.coupled(model, penalties)
    if not found:
        raise stages.StageError("--coupled_threshold: %s has no penalized channels coupled "
                                "across batch norms (resnet20 has them with "
                                "--prune_block_outputs); drop the flag or add "
                                "--prune_block_outputs" % model.name)
    return found


def _budget(spec, optimizer):
    """The `pruning.Budget` of --target_macs / --target_params, steering `optimizer`: its
    fractions are of the dense model of `spec`'s kind (block outputs or not), not of the model
    the stage starts from; it checks at each log line, watches whether it is met every
    10 steps between them and, once met, holds the zeros."""
    multiple = FLAGS.budget_channel_multiple
    dense = pruning.estimate(models.build_model(spec.unpruned(), FLAGS.weight_decay),
                             multiple=multiple)
    return pruning.Budget(target_macs=FLAGS.target_macs, target_params=FLAGS.target_params,
                          dense=dense, max_steps=max(1, round(FLAGS.budget_meet_by
                                                              * FLAGS.max_steps)),
                          check_every=FLAGS.log_frequency, channel_multiple=multiple,
                          optimizer=optimizer)


def train_stage(trainer, version, train_dir, spec, budget=None):
    """Resume or start stage `version`, train it to --max_steps and, with --squeeze_model,
    write its compression as the next stage."""
    if trainer.workdir.chief:
        stages.prepare(train_dir, spec)
    resumed = trainer.restore()
    # Seeded from where this run starts, so a resumed stage does not replay its first batches.
    dataset = data.train_dataset(FLAGS.data_dir, FLAGS.batch_size, source=FLAGS.dataset_source,
                                 seed=seeding.derive(FLAGS.seed, version, trainer.step))
    if not resumed:
        start = "from scratch"
    elif trainer.step == 0:
        start = "from the compressed model %s" % resumed
    else:
        start = "resuming from %s (step %d)" % (resumed, trainer.step)
    replicas = trainer.strategy.num_replicas_in_sync
    print("stage %d in %s: %s, %s%s" % (version, train_dir, spec.model, start,
                                       "" if FLAGS.distribution_strategy == "default" else
                                       "; %s on %d replica%s" % (FLAGS.distribution_strategy,
                                                                 replicas, "s"[:replicas > 1])))
    rescale.begin_stage(trainer, FLAGS.gamma_rescale)

    try:
        # With a budget, a compiled call runs only as many steps as it waits between its
        # tests whether it is met, so it sees the target met within that many steps.
        trainer.fit(dataset, FLAGS.max_steps, FLAGS.log_frequency, FLAGS.batch_size,
                    callbacks=[budget] if budget else [],
                    steps_per_execution=budget.watch_every if budget else None)
    finally:
        trainer.workdir.cleanup()

    if FLAGS.squeeze_model:
        rescale.end_stage(trainer)
    if FLAGS.squeeze_model and trainer.workdir.chief:
        recalibrate = None
        if FLAGS.recalibrate_bn:
            recalibrate = lambda m: recalibrate_bn(m, dataset, FLAGS.recalibrate_bn)  # noqa: E731
        settings = {k: FLAGS[k].value for k in ("l1_penalty", "learning_rate", "max_steps",
                                                 "batch_size", "weight_decay", "gamma_rescale",
                                                 "absorb_pruned_constants", "seed", "use_fp16")}
        if FLAGS.coupled_threshold:  # as the budget's: recorded only when used
            settings.update(coupled_threshold=True)
        if budget is not None:  # recorded only when used: other stages' records stay as they were
            settings.update(target_macs=FLAGS.target_macs, target_params=FLAGS.target_params,
                            budget_meet_by=FLAGS.budget_meet_by, budget_met_at_step=budget.met_at,
                            budget_channel_multiple=FLAGS.budget_channel_multiple,
                            final_l1_penalty=budget.optimizer.l1_penalty
                            * float(budget.optimizer.penalty_scale.numpy()))
        end = stages.StageEnd(spec, trainer.model, trainer.ema.averages(),
                              trainer.manager.latest_checkpoint)
        stages.write_compressed(FLAGS.train_dir, version, end, stages.Compression(
            FLAGS.weight_decay, FLAGS.absorb_pruned_constants, recalibrate, settings))


def run():
    cli.run(main, define_train_flags)


if __name__ == "__main__":
    run()
