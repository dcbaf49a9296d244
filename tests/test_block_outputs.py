"""--prune_block_outputs: resnet20's residual stream pruned as the library's coupled groups say,
checked against the dense model with those channels silenced, against rho counted by hand, and
through the stage directory (later stages and eval build what it records)."""
import json
import os

import keras
import numpy as np
import pytest

from cifar10_prune import costs, fold, models, pruning, rebuild, report, stages
from cifar10_prune.spec import ArchitectureError, ArchSpec
from conftest import one_error_line, run_cli
from test_rebuild import assert_same_function, randomized

# The batch norms of each stage of the residual stream, and the convs reading it.
STREAM = {
    "first_conv": (["first_conv_bn", "g1b0c1_bn", "g1b1c1_bn", "g1b2c1_bn"],
                   ["g1b0c0", "g1b1c0", "g1b2c0", "g2b0c0", "g2b0shortcut"]),
    "g2b0shortcut": (["g2b0shortcut_bn", "g2b0c1_bn", "g2b1c1_bn", "g2b2c1_bn"],
                     ["g2b1c0", "g2b2c0", "g3b0c0", "g3b0shortcut"]),
    "g3b0shortcut": (["g3b0shortcut_bn", "g3b0c1_bn", "g3b1c1_bn", "g3b2c1_bn"],
                     ["g3b1c0", "g3b2c0", "softmax_linear"]),
}


def silence(model, bn_names, channels):
    """gamma = beta = 0 for `channels` of the batch norms `bn_names`: those channels output 0."""
    for name in bn_names:
        bn = model.get_layer(name)
        for var in (bn.gamma, bn.beta):
            value = var.numpy()
            value[list(channels)] = 0.0
            var.assign(value)


def test_the_default_architecture_is_unchanged():
    spec = ArchSpec.dense("resnet20")
    model = models.build_model(spec)
    assert not spec.block_outputs and models.spec_of(model) == spec
    assert costs.param_count(model) == 281304
    assert not any(model.get_layer(n).scale for bns, _ in STREAM.values() for n in bns)
    record = json.loads(spec.to_json())
    assert record["version"] == 1 and "block_outputs" not in record  # files stay version 1


def test_groups_of_the_residual_stream():
    model = models.build_model(ArchSpec.dense("resnet20", block_outputs=True))
    found = {g.unit: g for g in pruning.find_groups(model) if g.prunable}
    for unit, (bns, readers) in STREAM.items():
        assert sorted(bn.name for bn, _ in found[unit].members) == sorted(bns)
        assert sorted(r.name for r, _ in found[unit].readers) == sorted(readers)
    # 16 + 32 + 64 gammas more than the paper's pattern, one per channel of each member
    assert costs.param_count(model) == 281304 + 4 * (16 + 32 + 64)
    assert models.spec_of(model) == ArchSpec.dense("resnet20", True)


def test_rho_of_a_stage_channel_is_the_paper_cost_summed_over_its_group():
    model = models.build_model(ArchSpec.dense("resnet20", block_outputs=True))
    rho = models.penalties(model)
    total = sum(rho[model.get_layer(n).gamma.path] for n in STREAM["first_conv"][0])
    # Counted by hand: the stem's conv (3x3x3) and the three c1 convs (3x3x16), each with its
    # 32x32 map, and the readers: three c0 (16 3x3 filters), g2b0c0 (32 3x3), the shortcut
    # (32 2x2), over 32*32 input pixels.
    by_hand = (27 + 1024 + 3 * (144 + 1024) + 3 * 16 * 9 + 32 * 9 + 32 * 4) / 1024
    assert total == pytest.approx(by_hand, rel=1e-12)
    # The paper's pattern is untouched: the c0 units keep their rho.
    dense = models.build_model(ArchSpec.dense("resnet20"))
    plain = models.penalties(dense)
    for unit in ("g1b0c0", "g2b1c0", "g3b2c0"):
        bn = unit + "_bn"
        assert rho[model.get_layer(bn).gamma.path] == plain[dense.get_layer(bn).gamma.path]


def test_compression_equals_the_dense_model_with_the_channels_silenced():
    spec = ArchSpec.dense("resnet20", block_outputs=True)
    dense = randomized(spec, seed=3)
    cut = {"first_conv": [0, 5, 15], "g2b0shortcut": range(0, 32, 3), "g3b0shortcut": range(40)}
    for unit, channels in cut.items():
        silence(dense, STREAM[unit][0], channels)
    silence(dense, ["g2b1c0_bn"], range(7))  # a unit of the paper's pattern at the same time
    # A channel zero in only some members of its group stays (the sum is not constant there).
    partly = dense.get_layer("g1b1c1_bn")
    partly.gamma.assign(np.where(np.arange(16) == 3, 0.0, partly.gamma.numpy()))

    new_spec, slim = rebuild.narrow(spec, dense)
    expected = dict(spec.widths, first_conv=13, g2b0shortcut=21, g3b0shortcut=24, g2b1c0=25)
    assert new_spec == ArchSpec("resnet20", expected, block_outputs=True)
    assert slim.get_layer("g2b1c1").kernel.shape == (3, 3, 25, 21)
    assert slim.get_layer("g3b0shortcut").kernel.shape == (2, 2, 21, 24)
    assert slim.get_layer("softmax_linear").kernel.shape == (1, 1, 24, 10)
    assert_same_function(dense, slim)
    # What the budget counts before compressing is what the compressed model costs.
    assert pruning.estimate(dense) == pruning.Costs(costs.conv_flops(slim), costs.param_count(slim))
    # The library's own compression (exact borders) agrees, and with constant channels too.
    silence_beta = randomized(spec, seed=4)
    for unit, channels in cut.items():
        for name in STREAM[unit][0]:
            bn = silence_beta.get_layer(name)
            bn.gamma.assign(np.where(np.isin(np.arange(bn.gamma.shape[0]), list(channels)),
                                     0.0, bn.gamma.numpy()))  # betas left: constant channels
    compressed = pruning.compress(silence_beta)
    assert compressed.get_layer("softmax_linear").kernel.shape == (1, 1, 24, 10)
    assert_same_function(silence_beta, compressed, tol=1e-4)


def test_a_stage_with_no_channel_left_is_refused():
    spec = ArchSpec.dense("resnet20", block_outputs=True)
    dense = randomized(spec)
    silence(dense, STREAM["g2b0shortcut"][0], range(32))
    with pytest.raises(ValueError, match="g2b0shortcut.*l1_penalty"):
        rebuild.narrow(spec, dense)


def test_architecture_records():
    spec = ArchSpec("resnet20", dict(ArchSpec.dense("resnet20", True).widths, first_conv=9),
                    block_outputs=True)
    record = json.loads(spec.to_json(source="x"))
    assert record["version"] == 2 and record["block_outputs"] is True
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert models.spec_of(models.build_model(spec)) == spec
    with pytest.raises(ArchitectureError, match="version 2"):
        ArchSpec.from_record(dict(record, version=1))
    with pytest.raises(ArchitectureError, match="at least 1"):
        ArchSpec("resnet20", dict(spec.widths, g3b0shortcut=0), block_outputs=True)
    with pytest.raises(ArchitectureError, match="only in resnet20"):
        ArchSpec.dense("cnn4", block_outputs=True)
    with pytest.raises(ArchitectureError, match="exactly the layers"):
        ArchSpec("resnet20", ArchSpec.dense("resnet20").widths, block_outputs=True)
    with pytest.raises(ArchitectureError, match="versions 1 and 2"):
        ArchSpec.from_record(dict(record, version=3))


def test_the_recorded_setting_is_what_stages_and_eval_build(tmp_path):
    base = str(tmp_path / "t")
    spec = ArchSpec("resnet20", dict(ArchSpec.dense("resnet20", True).widths, first_conv=7),
                    block_outputs=True)
    os.makedirs(base + "_1")
    stages.write_architecture(base + "_1", spec, source="x")
    assert stages.spec_for_training(base, 1, "resnet20") == spec
    assert stages.spec_for_training(base, 1, "resnet20", block_outputs=True) == spec
    with pytest.raises(stages.StageError, match="--noprune_block_outputs.*are pruned"):
        stages.spec_for_training(base, 1, "resnet20", block_outputs=False)
    assert stages.spec_for_eval(base + "_1", "resnet20", True) == spec
    assert stages.spec_for_eval(base + "_1", "resnet20", False) == spec.unpruned()
    # A new stage 0 is dense, with the stream prunable only when asked.
    assert stages.spec_for_training(base, 0, "resnet20", block_outputs=True).block_outputs
    assert stages.spec_for_training(base, 0, "resnet20") == ArchSpec.dense("resnet20")
    # A stage of the paper's pattern refuses the flag.
    os.makedirs(base + "_2")
    stages.write_architecture(base + "_2", ArchSpec.dense("resnet20"))
    with pytest.raises(stages.StageError, match="--prune_block_outputs.*not pruned"):
        stages.spec_for_training(base, 2, "resnet20", block_outputs=True)


@pytest.mark.slow  # four runs of train / eval: 1-5 min on two cores, by load
def test_later_stages_and_eval_build_what_the_stage_records(tiny_data, tmp_path):
    base = str(tmp_path / "t")
    tiny = ["--data_dir", tiny_data, "--train_dir", base, "--batch_size", 10,
            "--log_frequency", 2, "--seed", 1]
    out = run_cli("train", *tiny, "--prune_block_outputs", "--max_steps", 4).stdout
    assert "wrote stage 1" in out
    with open(os.path.join(base + "_1", "architecture.json")) as f:
        record = json.load(f)
    assert record["block_outputs"] is True and "first_conv" in record["widths"]
    # Stage 1 without the flag: built from the record (a checkpoint with the stream's gammas).
    out = run_cli("train", *tiny, "--checkpoint_version", 1, "--max_steps", 2,
                  "--squeeze_model=false").stdout
    assert "from the compressed model" in out and "first_conv" in out
    spec = ArchSpec.from_record(record)
    out = run_cli("eval", "--data_dir", tiny_data, "--checkpoint_dir", base,
                  "--checkpoint_version", 1, "--batch_size", 10, "--num_examples", 10,
                  "--eval_dir", str(tmp_path / "e")).stdout
    assert "total params: %d" % costs.param_count(models.build_model(spec)) in out
    # Saying otherwise is refused, naming the record.
    proc = run_cli("train", *tiny, "--checkpoint_version", 1, "--max_steps", 4,
                   "--noprune_block_outputs", check=False)
    one_error_line(proc, "--noprune_block_outputs", "architecture.json")


def test_a_pruned_stream_folds_for_serving():
    spec = ArchSpec.dense("resnet20", block_outputs=True)
    dense = randomized(spec, seed=5)
    silence(dense, STREAM["g2b0shortcut"][0], range(9))
    new_spec, slim = rebuild.narrow(spec, dense)
    assert new_spec.widths["g2b0shortcut"] == 23
    assert_same_function(slim, fold.fold_batch_norms(slim), tol=1e-4)


def test_coupled_names_the_residual_stream_groups():
    model = models.build_model(ArchSpec.dense("resnet20", block_outputs=True))
    found = pruning.coupled(model, models.penalties(model))
    by_path = {bn.gamma.path: bn.name for bn in model.layers if getattr(bn, "gamma", None)
               is not None}
    assert sorted(sorted(by_path[p] for p, _, _ in g) for g in found) == \
        sorted(sorted(bns) for bns, _ in STREAM.values())
    assert sorted({(o, w) for g in found for _, o, w in g}) == [(0, 16), (0, 32), (0, 64)]
    # The paper's pattern couples nothing it penalizes (the stream has no gammas).
    dense = models.build_model(ArchSpec.dense("resnet20"))
    assert pruning.coupled(dense, models.penalties(dense)) == []


def test_coupled_threshold_zeros_a_stream_channel_in_every_member_at_once():
    keras.utils.set_random_seed(3)
    model = models.build_model(ArchSpec.dense("resnet20", block_outputs=True))
    penalties = models.penalties(model)
    found = pruning.coupled(model, penalties)
    # Half the stem stage's channels small: 0.2 in the stem, under 0.02 in the other members.
    # Together (norm < 0.21) they are under the group's threshold (lr 0.001 * 50 * the summed rho
    # 5.28 = 0.26, far above the gradient steps) and go in the first step; alone, the stem's 0.2
    # would outlast the two steps (its own threshold is 0.062). The others (norm 2) stay.
    rng = np.random.RandomState(0)
    weights = {v.path: v for v in model.weights}
    odd = np.arange(16) % 2 == 1
    for i, (path, _, _) in enumerate(found[0]):
        small = np.full(16, 0.2) if i == 0 else rng.uniform(0.0, 0.02, 16)
        weights[path].assign(np.where(odd, small, 1.0).astype(np.float32))
    model.compile(optimizer=pruning.ISTA(0.001, l1_penalty=50.0, penalties=penalties,
                                         coupled=found),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(16, 32, 32, 3)).astype(np.float32)
    model.fit(x, rng.randint(0, 10, 16), batch_size=8, epochs=1, verbose=0)
    for group in found:
        zero = [weights[p].numpy()[o:o + w] == 0 for p, o, w in group]
        assert all(np.array_equal(z, zero[0]) for z in zero)  # no member alone at zero
    stem = np.stack([weights[p].numpy() for p, _, _ in found[0]])
    assert np.array_equal(np.all(stem == 0, axis=0), odd)


def test_coupled_threshold_needs_coupled_channels_and_is_recorded(tiny_data, tmp_path):
    base = str(tmp_path / "cifar10_train")  # the layout the report reads
    tiny = ["--data_dir", tiny_data, "--train_dir", base, "--batch_size", 10, "--max_steps", 2,
            "--seed", 1, "--coupled_threshold"]
    one_error_line(run_cli("train", *tiny, check=False), "--coupled_threshold",
                   "--prune_block_outputs")
    assert not os.path.exists(base + "_1")
    run_cli("train", *tiny, "--prune_block_outputs")
    with open(os.path.join(base + "_1", "architecture.json")) as f:
        assert json.load(f)["trained_with"]["coupled_threshold"] is True
    assert "stage 0: each residual-stream channel's gammas thresholded as one " \
        "(--coupled_threshold)" in report.markdown(report.collect(str(tmp_path)))
