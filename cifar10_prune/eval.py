"""Evaluate a stage's checkpoint with its averaged weights (the original cifar10_eval.py).

    python -m cifar10_prune.eval --checkpoint_version 2

Prints `total params: N`, then `<time>: precision @ 1 = ...` and `<time>: test loss = ...`.
"""
from cifar10_prune import console

console.quiet_tensorflow()  # before TensorFlow loads; its start-up lines are not the user's

import datetime
import os

import tensorflow as tf
from absl import flags

from cifar10_prune import cli, costs, data, evaluation, seeding, stages, summaries
from cifar10_prune.flags.eval import define_eval_flags
from cifar10_prune.recalibrate import recalibrate_bn
from cifar10_prune.spec import width_table

FLAGS = flags.FLAGS


def evaluate_checkpoint(spec, path, dataset, train_dataset, writer):
    model = stages.load_averaged(spec, path, FLAGS.weight_decay)
    params = costs.param_count(model)
    print("total params: %d" % params)
    if spec != spec.unpruned():
        print("channels kept (dense -> this model):")
        for line in width_table(spec.unpruned(), spec):
            print("  " + line)
    if train_dataset is not None:
        recalibrate_bn(model, train_dataset, FLAGS.recalibrate_bn)
    precision, loss, _ = evaluation.evaluate(model, dataset)
    print("%s: precision @ 1 = %.4f" % (datetime.datetime.now(), precision))
    print("%s: test loss = %.4f" % (datetime.datetime.now(), loss), flush=True)
    step = stages.checkpoint_step(path)
    summaries.scalars(writer(), step, {"precision_at_1": precision, "test_loss": loss,
                                       "total_params": params})


def main(argv):
    del argv
    directory = stages.stage_dir(FLAGS.checkpoint_dir, FLAGS.checkpoint_version)
    spec = stages.spec_for_eval(directory, FLAGS.model, FLAGS.is_compressed)
    once = FLAGS.run_once or FLAGS.checkpoint_iter >= 0
    path = stages.checkpoint_path(directory, FLAGS.checkpoint_iter) if once else None
    dataset, _ = data.eval_dataset(FLAGS.data_dir, FLAGS.batch_size, FLAGS.eval_data,
                                   FLAGS.num_examples, source=FLAGS.dataset_source)
    train_dataset = None  # only for --recalibrate_bn; made once, also when watching
    if FLAGS.recalibrate_bn:
        seed = seeding.derive(FLAGS.seed, FLAGS.checkpoint_version)
        train_dataset = data.train_dataset(FLAGS.data_dir, FLAGS.batch_size,
                                           source=FLAGS.dataset_source, seed=seed)
    writers = []

    def writer():  # made when there is a result to write: a failed eval leaves no events file
        if not writers:
            os.makedirs(FLAGS.eval_dir, exist_ok=True)
            writers.append(tf.summary.create_file_writer(FLAGS.eval_dir))
        return writers[0]

    if once:
        evaluate_checkpoint(spec, path, dataset, train_dataset, writer)
        return
    # Like the original's loop, but each checkpoint is evaluated once, when it appears.
    print("watching %s for checkpoints every %d s (Ctrl-C stops)"
          % (directory, FLAGS.eval_interval_secs), flush=True)
    for path in tf.train.checkpoints_iterator(directory,
                                              min_interval_secs=FLAGS.eval_interval_secs):
        evaluate_checkpoint(spec, path, dataset, train_dataset, writer)


def run():
    cli.run(main, define_eval_flags)


if __name__ == "__main__":
    run()
