"""TensorBoard scalar summaries without depending on the tensorboard package.

TensorFlow 2.21 no longer installs TensorBoard, and `tf.summary.scalar` refuses to work without
it. A scalar summary is just a tensor summary tagged for the "scalars" plugin, which
`tf.summary.write` (part of TensorFlow itself) can write, so TensorBoard shows these as usual.
"""
import struct

import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from tensorflow.core.util import event_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


def scalars(writer, step, values):
    """Write {tag: number} to `writer` (a `tf.summary.create_file_writer`) at `step`."""
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.write(tag, tf.constant(float(value), tf.float32),
                             metadata=_SCALAR_METADATA)
    writer.flush()


def _records(path):
    """The records of a TFRecord file (an events file); a last record still being written is
    left out. Read directly: TFRecordDataset logs a C++ note on every use."""
    with tf.io.gfile.GFile(path, "rb") as f:
        while True:
            header = f.read(12)  # uint64 length, uint32 CRC of the length
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:  # then the data's CRC
                return
            yield data


def read_scalars(logdir):
    """{tag: [(step, value)]} from the event files in `logdir` (for tests and reports)."""
    out = {}
    for path in sorted(tf.io.gfile.glob(tf.io.gfile.join(logdir, "events.out.tfevents.*"))):
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                number = tf.make_ndarray(value.tensor) if value.HasField("tensor") else value.simple_value
                out.setdefault(value.tag, []).append((event.step, float(number)))
    return out
