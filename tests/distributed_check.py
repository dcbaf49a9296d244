"""Run by tests/test_distribute.py in a fresh process (the CPU can only be split into logical
devices before TensorFlow runs an operation): a few ISTA steps of resnet20 on one device and,
from the same weights and batches, under MirroredStrategy on two logical CPU devices. Prints
the largest differences as JSON."""
import json
import sys
import tempfile

from cifar10_prune import distribute

mirrored = distribute.make_strategy("mirrored", cpu_replicas=2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cifar10_prune import data, models, training  # noqa: E402
from cifar10_prune.pruning import ista  # noqa: E402
from cifar10_prune.spec import ArchSpec  # noqa: E402


keras.utils.set_random_seed(0)


def trainer(strategy, weights=None):
    with strategy.scope():
        model = models.build_model(ArchSpec.dense("resnet20"), 0.0005)
        if weights is not None:
            model.set_weights(weights)
        optimizer = ista.ISTA(training.learning_rate_schedule(LR, BATCH), l1_penalty=L1,
                              penalties=models.penalties(model))
    return training.Trainer(model, optimizer, tempfile.mkdtemp(), log=lambda *a: None,
                            strategy=strategy)


data_dir, BATCH, STEPS, LR, L1 = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]),
                                  float(sys.argv[5]))
DATA_SEED = int(sys.argv[6]) if len(sys.argv) > 6 else 1
one = trainer(tf.distribute.get_strategy())
two = trainer(mirrored, one.model.get_weights())
for t in (one, two):
    t.fit(data.train_dataset(data_dir, BATCH, seed=DATA_SEED), STEPS, log_frequency=2, batch_size=BATCH)

images, labels = next(iter(data.eval_dataset(data_dir, BATCH, num_examples=BATCH)[0]))
result = {"replicas": two.strategy.num_replicas_in_sync, "steps": [one.step, two.step]}
result["zero_gammas"] = [sum(z for z, _ in ista.sparsity(t.model, t.penalties)[2].values())
                        for t in (one, two)]
pairs = list(zip(ista.penalized(one.model, one.penalties), ista.penalized(two.model, two.penalties)))
result["same_zeros"] = all(np.array_equal(g1 == 0, g2 == 0) for (_, _, g1), (_, _, g2) in pairs)
# A gamma that the soft threshold leaves within float rounding of zero on one side may be zero
# on the other: the largest |gamma| among gammas zero on only one side says how close it was.
result["zero_mismatch_gamma"] = max([0.0] + [float(np.max(np.abs(g1 - g2)[(g1 == 0) != (g2 == 0)]))
                                             for (_, _, g1), (_, _, g2) in pairs
                                             if np.any((g1 == 0) != (g2 == 0))])


def difference(a, b):
    """Largest difference relative to the tensor's scale (at least 1)."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1.0))


result["weights"] = max(difference(a, b)
                        for a, b in zip(one.model.get_weights(), two.model.get_weights()))
result["averages"] = max(difference(one.ema.averages()[k], v)
                         for k, v in two.ema.averages().items())
result["logits"] = float(np.max(np.abs(one.model(images, training=False).numpy()
                                       - two.model(images, training=False).numpy())))
print(json.dumps(result))
