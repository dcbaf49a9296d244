"""cifar10-prune: channel pruning by ISTA on batch-norm gammas (Ye et al., ICLR 2018),
ported from TensorFlow 1 to TensorFlow 2 / Keras 3."""
