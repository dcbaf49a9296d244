"""Architecture: parameter counts by hand, layer structure, rho_l, and the JSON spec."""
import json

import keras
import numpy as np
import pytest

from cifar10_prune import costs, models, stages
from cifar10_prune.pruning import ista
from cifar10_prune.spec import ArchitectureError, ArchSpec
from conftest import rho_by_unit

RESNET_UNITS = ["g%db%dc0" % (g, b) for g in (1, 2, 3) for b in range(3)]
GROUP_WIDTH = {1: 16, 2: 32, 3: 64}


def hand_count_resnet20(c0):
    """Parameters of resnet20 with c0 widths `c0` (dict), counted as in docs/original.md
    section 3."""
    bn_gamma, bn_nogamma = 4, 3  # per channel: (gamma,) beta, moving mean, moving variance
    total = 3 * 3 * 3 * 16 + 16 * bn_nogamma
    cin = 16
    for g in (1, 2, 3):
        width = GROUP_WIDTH[g]
        for b in range(3):
            w = c0["g%db%dc0" % (g, b)]
            total += 9 * cin * w + w * bn_gamma          # c0 + BN+gamma
            total += 9 * w * width + width * bn_nogamma  # c1 + BN-nogamma
            if g > 1 and b == 0:
                total += 2 * 2 * cin * width + width * bn_nogamma  # 2x2 projection shortcut
            cin = width
    return total + 64 * 10 + 10 * bn_gamma


def hand_count_cnn4(w1, w2, w3, w4):
    return (25 * 3 * w1 + 4 * w1 + 25 * w1 * w2 + 4 * w2 + 9 * w2 * w3 + 4 * w3
            + 16 * w3 * w4 + 4 * w4 + w4 * 10 + 40)


def test_dense_parameter_counts():
    dense = {u: GROUP_WIDTH[int(u[1])] for u in RESNET_UNITS}
    assert hand_count_resnet20(dense) == 281304
    assert costs.param_count(models.build_model(ArchSpec.dense("resnet20"))) == 281304
    assert hand_count_cnn4(96, 192, 192, 384) == 1986760
    assert costs.param_count(models.build_model(ArchSpec.dense("cnn4"))) == 1986760


def test_reference_convnet_count():
    # The paper's convnet with widths 32-64-64-128 is cnn4 with other widths: 224,008.
    spec = ArchSpec("cnn4", {"conv1": 32, "conv2": 64, "conv3": 64, "fc1": 128})
    assert costs.param_count(models.build_model(spec)) == hand_count_cnn4(32, 64, 64, 128) == 224008


@pytest.mark.parametrize("widths", [
    {u: 5 + i for i, u in enumerate(RESNET_UNITS)},
    {u: (0 if i % 2 else 3) for i, u in enumerate(RESNET_UNITS)},
    {u: 0 for u in RESNET_UNITS},
])
def test_narrow_resnet20_counts(widths):
    model = models.build_model(ArchSpec("resnet20", widths))
    assert costs.param_count(model) == hand_count_resnet20(widths)
    assert model(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 10)


def test_all_c0_pruned_leaves_non_prunable_part():
    # "about 12.7 k": first conv, c1 batch norms, shortcuts and softmax_linear.
    widths = {u: 0 for u in RESNET_UNITS}
    model = models.build_model(ArchSpec("resnet20", widths))
    assert costs.param_count(model) == hand_count_resnet20(widths) == 12696


def test_narrow_cnn4_counts_and_dead_layers():
    model = models.build_model(ArchSpec("cnn4", {"conv1": 7, "conv2": 9, "conv3": 11, "fc1": 13}))
    assert costs.param_count(model) == hand_count_cnn4(7, 9, 11, 13)
    # conv2 gone: conv1 feeds nothing and drops out; conv3 sees no input channels.
    model = models.build_model(ArchSpec("cnn4", {"conv1": 7, "conv2": 0, "conv3": 11, "fc1": 13}))
    assert costs.param_count(model) == hand_count_cnn4(0, 0, 11, 13)
    assert "conv1" not in [layer.name for layer in model.layers]


def test_resnet20_structure():
    model = models.build_model(ArchSpec.dense("resnet20"))
    convs = {l.name: l for l in model.layers if isinstance(l, keras.layers.Conv2D)}
    assert all(not c.use_bias and c.padding == "same" for c in convs.values())
    for g in (2, 3):
        shortcut = convs["g%db0shortcut" % g]
        assert shortcut.kernel_size == (2, 2) and shortcut.strides == (2, 2)
        assert convs["g%db0c0" % g].strides == (2, 2)
    assert convs["g1b0c0"].strides == (1, 1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Add):  # no ReLU after the residual sum
            after = [n.operation for n in layer._outbound_nodes]
            assert not any(isinstance(a, keras.layers.ReLU) for a in after)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert all(bn.momentum == 0.999 and bn.epsilon == 0.001 for bn in bns)
    with_gamma = sorted(bn.name for bn in bns if bn.scale)
    assert with_gamma == sorted([u + "_bn" for u in RESNET_UNITS] + ["softmax_linear_bn"])
    # Weight decay wd * sum(w^2) / 2 on every kernel.
    expected = sum(0.0005 * np.sum(np.square(c.kernel.numpy())) / 2 for c in convs.values())
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert model.get_layer("avg_pool").pool_size == (8, 8)


def test_cnn4_structure():
    model = models.build_model(ArchSpec.dense("cnn4"))
    assert not model.losses  # no weight decay
    fc1 = model.get_layer("fc1")
    assert fc1.kernel_size == (4, 4) and fc1.padding == "valid"
    assert model.get_layer("conv3_pool").output.shape[1:3] == (4, 4)
    assert all(bn.scale for bn in model.layers if isinstance(bn, keras.layers.BatchNormalization))


RESNET_RHO = {"g1": 1.28125, "g2b0": 0.671875, "g2": 0.8125, "g3b0": 0.90625, "g3": 1.1875}


def _resnet_expected(unit):
    return RESNET_RHO.get(unit[:4], RESNET_RHO[unit[:2]])


def test_resnet20_rho_table():
    model = models.build_model(ArchSpec.dense("resnet20"))
    rho = rho_by_unit(model)
    assert rho == {u: _resnet_expected(u) for u in RESNET_UNITS}
    assert model.get_layer("softmax_linear_bn").gamma.path not in models.penalties(model)
    lasso, fake, _ = ista.sparsity(model, models.penalties(model))
    assert lasso == pytest.approx(345.0) and fake == 0.0


def test_cnn4_rho_with_quirk():
    model = models.build_model(ArchSpec.dense("cnn4"))
    rho = {u: r * 1024 for u, r in rho_by_unit(model).items()}
    assert rho == {"conv1": 5899, "conv2": 4384, "conv3": 5248, "fc1": 3083}
    assert ista.sparsity(model, models.penalties(model))[0] == pytest.approx(3515.15625)


def test_rho_recomputed_on_narrower_model():
    model = models.build_model(ArchSpec("cnn4", {"conv1": 50, "conv2": 100, "conv3": 120, "fc1": 200}))
    rho = {u: r * 1024 for u, r in rho_by_unit(model).items()}
    # H*W and C_in are the narrow model's; the next conv is counted with its dense width
    # (conv2 192, conv3 192, fc1 384), as the original does after a compression.
    assert rho == {"conv1": 1024 + 25 * 3 + 192 * 25,
                   "conv2": 256 + 25 * 50 + 192 * 9,
                   "conv3": 64 + 9 * 100 + 384 * 9,  # the original's 3x3 for fc1
                   "fc1": 1 + 16 * 120 + 10 * 1}
    narrow = models.build_model(ArchSpec("resnet20", {u: 3 for u in RESNET_UNITS}))
    # c0's own width is not in its rho, so a narrower resnet20 keeps the dense weights.
    assert rho_by_unit(narrow) == {
        u: _resnet_expected(u) for u in RESNET_UNITS}


def test_spec_json_round_trip(tmp_path):
    spec = ArchSpec("cnn4", {"conv1": 1, "conv2": 2, "conv3": 3, "fc1": 0})
    stages.write_architecture(str(tmp_path), spec, source="x")
    assert stages.read_architecture(str(tmp_path)) == spec


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["widths"].update(conv1=97), "from 0 to 96"),
    (lambda r: r["widths"].update(conv1=-1), "from 0 to 96"),
    (lambda r: r["widths"].update(conv1="12"), "integer"),
    (lambda r: r["widths"].pop("fc1"), "exactly the layers"),
    (lambda r: r["widths"].update(conv9=3), "exactly the layers"),
    (lambda r: r.update(model="vgg"), "unknown model"),
    (lambda r: r.update(version=7), "format version"),
    (lambda r: r.pop("format"), "not a cifar10_prune architecture"),
])
def test_hand_edited_json_is_rejected(tmp_path, edit, message):
    record = json.loads(ArchSpec.dense("cnn4").to_json())
    edit(record)
    (tmp_path / "architecture.json").write_text(json.dumps(record))
    with pytest.raises(ArchitectureError, match=message) as err:
        stages.read_architecture(str(tmp_path))
    assert "architecture.json" in str(err.value)


def test_corrupt_json_is_rejected(tmp_path):
    (tmp_path / "architecture.json").write_text('{"format": "cifar10_prune.archi')
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        stages.read_architecture(str(tmp_path))


def test_batch_norm_moving_variance_is_unbiased_like_tf1_fused():
    from cifar10_prune.layers import PrunableBatchNorm
    rng = np.random.RandomState(0)
    x = rng.normal(1.0, 2.0, (4, 3, 3, 5)).astype(np.float32)
    for scale in (True, False):
        bn = PrunableBatchNorm(scale=scale)
        bn.build(x.shape)
        bn.beta.assign(rng.normal(size=5))
        if scale:
            bn.gamma.assign(rng.normal(size=5))
        out = bn(x, training=True).numpy()
        flat = x.reshape(-1, 5)
        expected = (x - flat.mean(0)) / np.sqrt(flat.var(0) + 0.001)  # biased for normalizing
        if scale:
            expected = expected * bn.gamma.numpy()
        np.testing.assert_allclose(out, expected + bn.beta.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(bn.moving_mean.numpy(), 0.001 * flat.mean(0), rtol=1e-4)
        np.testing.assert_allclose(bn.moving_variance.numpy(),  # unbiased for the average
                                   0.999 + 0.001 * flat.var(0, ddof=1), rtol=1e-5)
        inference = bn(x, training=False).numpy()
        np.testing.assert_allclose(
            inference, (x - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + 0.001)
            * (bn.gamma.numpy() if scale else 1.0) + bn.beta.numpy(), rtol=1e-4, atol=1e-4)
