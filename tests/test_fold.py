"""Batch norms folded into convs: the folded model against the unfolded Keras model."""
import keras
import numpy as np
import pytest

from cifar10_prune import fold, models
from cifar10_prune.pruning import EmptyConv2D
from cifar10_prune.spec import ArchSpec
from conftest import randomize_batch_norms


def narrowed(name, **widths):
    return ArchSpec(name, {**ArchSpec.dense(name).widths, **widths})


CASES = {
    "resnet20 dense": ArchSpec.dense("resnet20"),
    # Narrowed, a block whose c0 is pruned to 0 (its c1 is an empty conv), one at the stride-2
    # block (the shortcut conv remains) and one 1-channel layer.
    "resnet20 narrowed": narrowed("resnet20", g1b0c0=0, g1b1c0=10, g2b0c0=1, g2b1c0=19,
                                  g3b0c0=0, g3b2c0=38),
    "cnn4 dense": ArchSpec.dense("cnn4"),
    "cnn4 narrowed": narrowed("cnn4", conv1=57, conv2=115, conv3=3, fc1=230),
    # conv1 gone: conv2 is an empty conv whose bias carries everything before it.
    "cnn4 conv1 pruned away": narrowed("cnn4", conv1=0, conv2=20),
}


@pytest.mark.parametrize("case", CASES)
def test_folded_model_computes_the_unfolded_one(case):
    spec = CASES[case]
    model = randomize_batch_norms(models.build_model(spec), seed=len(case))
    folded = fold.fold_batch_norms(model)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    assert models.spec_of(model) == spec
    images = np.random.default_rng(1).normal(0.0, 1.0, (6, 32, 32, 3)).astype(np.float32)
    expected = model(images, training=False).numpy()
    got = folded(images).numpy()
    assert np.abs(expected).max() > 0.5  # the comparison is not between near-zero outputs
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    # The statistics matter: the same folded weights without them would differ.
    assert np.abs(got - models.build_model(spec)(images, training=False).numpy()).max() > 1e-2


def test_folded_weights_by_hand():
    model = randomize_batch_norms(models.build_model(narrowed("resnet20", g1b0c0=0)), seed=3)
    for conv_name, has_gamma in (("g1b1c0", True), ("first_conv", False)):
        conv, bn = model.get_layer(conv_name), model.get_layer(conv_name + "_bn")
        assert bn.scale == has_gamma
        kernel, bias = fold.folded_weights(conv, bn)
        gamma = bn.gamma.numpy() if has_gamma else 1.0
        scale = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
        np.testing.assert_allclose(kernel, conv.kernel.numpy() * scale, rtol=1e-6)
        np.testing.assert_allclose(bias, bn.beta.numpy() - bn.moving_mean.numpy() * scale,
                                   rtol=1e-6, atol=1e-7)
    # g1b0c1 reads nothing (an empty conv): what is left of it and its BN is the BN's constant.
    empty, bn = model.get_layer("g1b0c1"), model.get_layer("g1b0c1_bn")
    assert isinstance(empty, EmptyConv2D)
    none, constant = fold.folded_weights(empty, bn)
    assert none is None
    np.testing.assert_allclose(
        constant, bn.beta.numpy() - bn.moving_mean.numpy() / np.sqrt(
            bn.moving_variance.numpy() + bn.epsilon), rtol=1e-6, atol=1e-7)


def test_fold_refuses_a_model_it_does_not_know():
    inputs = keras.Input((32, 32, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs), name="mystery")
    with pytest.raises(ValueError, match="built by models.build_model"):
        fold.fold_batch_norms(other)
    model = models.build_model(ArchSpec.dense("cnn4"))
    with pytest.raises(ValueError, match="does not match the folded form"):
        fold.fold_batch_norms(model, narrowed("cnn4", fc1=0))
