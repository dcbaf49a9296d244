"""Training on several devices or machines with TensorFlow's own engine, tf.distribute.

The batch size stays the *global* batch whatever the number of replicas, so the recipe's
arithmetic (learning rate, decay steps, rho, logged loss) does not change: each replica computes
its share of the batch, batch norms use the statistics of the whole global batch (see
`layers.PrunableBatchNorm`), gradients are summed across replicas once, and the ISTA step then
runs identically on every replica's copy of the variables.
"""
import os
import shutil
import tempfile

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


class DistributionError(ValueError):
    """The requested strategy cannot be set up here (no GPU, no TF_CONFIG, too late...)."""


def make_strategy(name="default", cpu_replicas=0, tpu=""):
    """The tf.distribute strategy called `name` (one of STRATEGIES).

    default: no distribution (one device). mirrored: every local GPU, or with `cpu_replicas`
    N > 0 the CPU split into N logical devices (for trying the machinery without GPUs).
    multi_worker: MultiWorkerMirroredStrategy over the cluster in $TF_CONFIG. tpu: TPUStrategy
    on the TPU named `tpu` ("" = the local one or the one in the environment).

    Call before TensorFlow runs any operation: logical devices and collective ops can only be
    configured then.
    """
    if name not in STRATEGIES:
        raise ValueError("unknown distribution strategy %r; expected one of %s"
                         % (name, ", ".join(STRATEGIES)))
    if cpu_replicas and name != "mirrored":
        raise DistributionError("--cpu_replicas applies to the mirrored strategy, not %r (a "
                         "multi_worker worker has one replica per GPU, or one CPU)" % name)
    if cpu_replicas:
        _split_cpu(cpu_replicas)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if cpu_replicas:
            return tf.distribute.MirroredStrategy(
                ["/cpu:%d" % i for i in range(cpu_replicas)])
        if not tf.config.list_physical_devices("GPU"):
            raise DistributionError("--distribution_strategy mirrored found no GPU; pass "
                             "--cpu_replicas N to run it on N logical CPU devices")
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise DistributionError("--distribution_strategy multi_worker reads the cluster from the "
                             "TF_CONFIG environment variable, which is not set (see the README's "
                             "'Several devices or machines')")
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _split_cpu(n):
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as e:  # TensorFlow has run an operation already
        raise DistributionError("cannot split the CPU into %d devices now (%s)" % (n, e)) from None


def is_chief(strategy):
    """Whether this process writes the results: always, except on the non-chief workers of a
    multi-worker cluster (the chief is task `chief`, or `worker` 0 when there is none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    return (task_type == "worker" and task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def distribute_dataset(strategy, dataset):
    """`strategy.experimental_distribute_dataset(dataset)`, sharded by file between the workers
    of a cluster and not at all on one machine: there, auto-sharding has nothing to split but
    still rewrites the pipeline, and the rewritten one read the training files in a different
    order from the same seed than the dataset itself (so replicas and one device disagreed)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF)
        dataset = dataset.with_options(options)
    return strategy.experimental_distribute_dataset(dataset)


def check_same_step(strategy, step):
    """Raise DistributionError unless every worker resumes from the same global `step`: the
    workers of a cluster read the chief's checkpoints, so its train_dir must be on a file system
    they all share (otherwise some would silently start from other weights)."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return
    total = strategy.reduce(tf.distribute.ReduceOp.SUM,
                            strategy.run(lambda: tf.constant(step, tf.int64)), axis=None)
    if int(total) != step * replicas:
        raise DistributionError(
            "the workers resume from different checkpoints (this one from step %d); the "
            "train_dir must be on a file system every worker shares" % step)


class WorkerDirectory:
    """Where this process writes checkpoints: the stage directory for the chief; for another
    worker, a private temporary directory removed by `cleanup()`. Every worker has to save (the
    save is part of the synchronized program), but only the chief's files are results, and no
    other worker's may ever be found in a stage directory by a later run."""

    def __init__(self, strategy, train_dir):
        self.chief = is_chief(strategy)
        self.path = train_dir if self.chief else tempfile.mkdtemp(prefix="cifar10_prune_worker_")

    def cleanup(self):
        if not self.chief:
            shutil.rmtree(self.path, ignore_errors=True)
