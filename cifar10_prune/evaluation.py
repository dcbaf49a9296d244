"""Top-1 precision and mean cross-entropy over an evaluation set."""
import keras
import tensorflow as tf


def evaluate(model, dataset):
    """Run `model` in inference mode over `dataset` ((images, labels) batches, each example
    once). Returns (precision @ 1, mean softmax cross-entropy, number of examples)."""
    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    @tf.function
    def batch_stats(images, labels):
        logits = model(images, training=False)
        # in_top_k as the original: a label whose logit ties for the top counts as a hit.
        hits = tf.reduce_sum(tf.cast(tf.math.in_top_k(tf.cast(labels, tf.int32),
                                                      tf.cast(logits, tf.float32), 1), tf.int64))
        return hits, xent(labels, logits), tf.shape(labels)[0]

    hits = count = 0
    loss = 0.0
    for images, labels in dataset:
        h, l, n = batch_stats(images, labels)
        hits, loss, count = hits + int(h), loss + float(l), count + int(n)
    if count == 0:
        raise ValueError("the evaluation dataset is empty")
    return hits / count, loss / count, count
