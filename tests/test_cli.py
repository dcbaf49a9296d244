"""End to end through the command line on tiny synthetic data: train, eval, stages, export."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf
from absl import flags

from cifar10_prune import console
from conftest import REPO, run_cli, one_error_line, start_training

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: step (\d+), loss = [\d.]+, "
                  r"group lasso = ([\d.]+), fake sparsity = ([\d.]+), "
                  r"\([\d.]+ examples/sec; [\d.]+ sec/batch\)$", re.M)
PRECISION = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+: precision @ 1 = (\d\.\d{4})$", re.M)
LOSS = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+: test loss = (\d+\.\d{4})$", re.M)
TINY = ["--batch_size", 10, "--log_frequency", 2]


def train(data, base, *args, check=True):
    return run_cli("train", "--data_dir", data, "--train_dir", base, *TINY, *args, check=check)


def evaluate(data, base, *args, check=True):
    return run_cli("eval", "--data_dir", data, "--checkpoint_dir", base, "--batch_size", 10,
                   "--eval_dir", base + "_eval", *args, check=check)


def results(proc):
    params = int(re.search(r"^total params: (\d+)$", proc.stdout, re.M).group(1))
    return params, PRECISION.search(proc.stdout).group(1), LOSS.search(proc.stdout).group(1)


def test_resnet20_train_eval_resume(tiny_data, tmp_path):
    base = str(tmp_path / "train")
    out = train(tiny_data, base, "--max_steps", 4).stdout
    lines = LINE.findall(out)
    assert [int(s) for s, _, _ in lines] == [0, 2]
    assert lines[0][1] == "345.00" and lines[0][2] == "0.00"
    assert os.path.exists(base + "_0/model.ckpt-4.index")

    params, precision, _ = results(evaluate(tiny_data, base, "--is_compressed=false",
                                            "--checkpoint_version", 0))
    assert params == 281304 and 0.0 <= float(precision) <= 1.0

    out = train(tiny_data, base, "--max_steps", 6).stdout
    assert "resuming from %s_0/model.ckpt-4 (step 4)" % base in out
    assert [int(s) for s, _, _ in LINE.findall(out)] == [4]
    assert "replacing %s_1" % base in out  # the untrained stage 1 came from model.ckpt-4
    assert json.load(open(base + "_1/architecture.json"))["source"].endswith("model.ckpt-6")


def test_eval_seed_repeats_the_batch_norm_re_estimation(tiny_data, tmp_path):
    base = str(tmp_path / "train")
    train(tiny_data, base, "--max_steps", 3)
    again = ["--checkpoint_version", 1, "--recalibrate_bn", 2]
    first, same = (results(evaluate(tiny_data, base, *again, "--seed", 5)) for _ in range(2))
    other = results(evaluate(tiny_data, base, *again, "--seed", 6))
    assert first == same  # the same batches drawn: the same statistics, to the digit
    assert other[2] != first[2]  # other batches, other statistics: the seed is what decides


def test_cnn4_dense_count(tiny_data, tmp_path):
    base = str(tmp_path / "cnn4")
    out = train(tiny_data, base, "--model", "cnn4", "--max_steps", 1, "--squeeze_model=false").stdout
    assert LINE.findall(out)[0][1] == "3515.16"
    assert not os.path.exists(base + "_1")
    params, _, _ = results(evaluate(tiny_data, base, "--checkpoint_version", 0,
                                    "--is_compressed=false", "--model", "cnn4"))
    assert params == 1986760


def test_no_penalty_stage_evaluates_like_its_parent(tiny_data, tmp_path):
    base = str(tmp_path / "l1zero")
    out = train(tiny_data, base, "--max_steps", 3, "--l1_penalty", 0).stdout
    assert {f for _, _, f in LINE.findall(out)} == {"0.00"}
    v0 = results(evaluate(tiny_data, base, "--checkpoint_version", 0))
    v1 = results(evaluate(tiny_data, base, "--checkpoint_version", 1))
    assert v0 == v1 and v0[0] == 281304


def test_full_sparsity_stage_chain_and_export(tiny_data, tmp_path):
    base = str(tmp_path / "l1big")
    out = train(tiny_data, base, "--max_steps", 3, "--l1_penalty", 50, "--log_frequency", 1).stdout
    assert [f for _, _, f in LINE.findall(out)] == ["0.00", "1.00", "1.00"]
    assert "g3b2c0: 64 -> 0" in out
    v1 = evaluate(tiny_data, base, "--checkpoint_version", 1)
    assert results(v1)[0] == 12696 and "g1b0c0: 16 -> 0" in v1.stdout

    # Stage 1 builds from the JSON; its rho are recomputed (nothing prunable is left).
    out = train(tiny_data, base, "--checkpoint_version", 1, "--max_steps", 2).stdout
    assert "from the compressed model %s_1/model.ckpt-0" % base in out and LINE.findall(out)[0][1] == "0.00"
    params, precision, _ = results(evaluate(tiny_data, base, "--checkpoint_version", 2))
    assert params == 12696

    export_dir = str(tmp_path / "slim")
    out = run_cli("export", "--checkpoint_dir", base, "--checkpoint_version", 2,
                  "--export_dir", export_dir, "--tflite").stdout
    assert "total params: 12696 (dense resnet20: 281304)" in out
    assert "TFLite model (float32): %s" % os.path.join(export_dir, "model.tflite") in out
    # Load it in a process that never imports cifar10_prune, on the raw test records.
    script = """
import json, sys
import numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
records = np.fromfile(sys.argv[2], np.uint8).reshape(-1, 3073)
images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
out = serve(images=tf.constant(images))
loaded = tf.saved_model.load(sys.argv[1])
lite = tf.lite.Interpreter(model_path=sys.argv[1] + "/model.tflite")
lite_out = lite.get_signature_runner("serving_default")(images=images)
print(json.dumps({
    "tflite_vs_savedmodel": float(np.abs(lite_out["logits"] - out["logits"].numpy()).max()),
    "params": int(sum(np.prod(v.shape) for v in loaded.variables)),
    "inputs": str(serve.structured_input_signature),
    "logits": list(out["logits"].shape), "probabilities": list(out["probabilities"].shape),
    "prob_sums": float(np.abs(out["probabilities"].numpy().sum(1) - 1).max()),
    "precision": float(np.mean(np.argmax(out["logits"], 1) == records[:, 0])),
    "imported": "cifar10_prune" in sys.modules}))
"""
    proc = subprocess.run([sys.executable, "-c", script, export_dir,
                           os.path.join(tiny_data, "cifar-10-batches-bin", "test_batch.bin")],
                          capture_output=True, text=True, cwd=str(tmp_path), check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # The SavedModel serves the folded form: no BN statistics, a bias per conv instead. By hand:
    # first conv 3*3*3*16 + 16, the empty c1 convs' biases 3*(16+32+64), the shortcuts
    # 2*2*16*32 + 32 and 2*2*32*64 + 64, the logits 64*10 + 10.
    assert got["params"] == 11770 and not got["imported"]
    assert "uint8" in got["inputs"] and "images" in got["inputs"]
    assert got["logits"] == [30, 10] and got["probabilities"] == [30, 10]
    assert got["prob_sums"] < 1e-5
    assert got["tflite_vs_savedmodel"] < 1e-4
    assert "%.4f" % got["precision"] == precision

    again = run_cli("export", "--checkpoint_dir", base, "--checkpoint_version", 2,
                    "--export_dir", export_dir, check=False)
    assert again.returncode != 0 and "already exists" in again.stderr


def test_stage_errors(tiny_data, tmp_path):
    base = str(tmp_path / "err")
    proc = train(tiny_data, base, "--checkpoint_version", 2, "--max_steps", 1, check=False)
    assert proc.returncode == 1
    assert "stage 2 starts from the compressed model that stage 1 writes into %s_2" % base in proc.stderr
    assert "--checkpoint_version 1" in proc.stderr and "Traceback" not in proc.stderr

    train(tiny_data, base, "--max_steps", 1, "--l1_penalty", 0)
    train(tiny_data, base, "--checkpoint_version", 1, "--max_steps", 1, "--squeeze_model=false")
    listing = sorted(os.listdir(base + "_1"))
    # Rerunning the finished stage 0 (as a rerun of run_experiments.sh does) is not an error:
    # stage 1 came from that very checkpoint, and stays as it is.
    again = train(tiny_data, base, "--max_steps", 1, "--l1_penalty", 0)
    assert "already holds the compression of %s_0/model.ckpt-1 (trained since)" % base in again.stdout
    assert sorted(os.listdir(base + "_1")) == listing
    # The same in a copy of the run elsewhere (a run carried to another disk or machine): the
    # provenance's absolute path differs, the run does not.
    moved = str(tmp_path / "elsewhere" / "err")
    for v in (0, 1):
        shutil.copytree("%s_%d" % (base, v), "%s_%d" % (moved, v))
    again = train(tiny_data, moved, "--max_steps", 1, "--l1_penalty", 0)
    assert "already holds the compression of %s_0/model.ckpt-1 (trained since)" % moved in again.stdout
    proc = train(tiny_data, base, "--max_steps", 2, check=False)  # stage 1 is trained now
    assert proc.returncode == 1 and "refusing to overwrite" in proc.stderr
    assert sorted(os.listdir(base + "_1")) == listing

    with open(base + "_1/architecture.json", "w") as f:
        f.write('{"format": "cifar10_prune.architecture", "version": 1, "model": "resnet20", '
                '"widths": {"g1b0c0": 99}}')
    proc = evaluate(tiny_data, base, "--checkpoint_version", 1, check=False)
    assert proc.returncode == 1 and "architecture.json" in proc.stderr and "exactly the layers" in proc.stderr

    proc = evaluate(tiny_data, base, "--checkpoint_version", 7, check=False)
    assert proc.returncode == 1 and "%s_7" % base in proc.stderr

    proc = evaluate(tiny_data, base, "--checkpoint_version", 0, "--checkpoint_iter", 5, check=False)
    assert proc.returncode == 1 and "model.ckpt-5" in proc.stderr and "model.ckpt-1" in proc.stderr


def _snapshot(directory):
    """{file name: bytes} of a directory, to check that a failed run changed nothing."""
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))}


def test_damaged_stage_files_and_odd_requests(tiny_data, tmp_path):
    base = str(tmp_path / "dmg")
    train(tiny_data, base, "--max_steps", 2, "--l1_penalty", 0, "--log_frequency", 1,
          "--save_checkpoint_secs", 1)
    assert oct(os.stat(base + "_1").st_mode & 0o777) == oct(os.stat(base + "_0").st_mode & 0o777)

    # Hand-edited architecture.json, narrower than the checkpoint it sits beside.
    with open(base + "_1/architecture.json") as f:
        record = json.load(f)
    record["widths"]["g2b1c0"] = 20
    with open(base + "_1/architecture.json", "w") as f:
        json.dump(record, f)
    before = _snapshot(base + "_1")
    proc = train(tiny_data, base, "--checkpoint_version", 1, "--max_steps", 3, check=False)
    one_error_line(proc, "%s_1/model.ckpt-0 does not fit the resnet20 architecture" % base,
                    "architecture.json")
    assert _snapshot(base + "_1") == before
    record["widths"]["g2b1c0"] = 32
    with open(base + "_1/architecture.json", "w") as f:
        json.dump(record, f)

    # A checkpoint cut short: eval says so; train names the intact older checkpoint.
    state = tf.train.get_checkpoint_state(base + "_0")
    newest = state.model_checkpoint_path
    older = [p for p in state.all_model_checkpoint_paths if p != newest]
    assert older  # --save_checkpoint_secs 1 and two chunks: an older checkpoint exists
    data_file = newest + ".data-00000-of-00001"
    with open(data_file, "r+b") as f:
        f.truncate(os.path.getsize(data_file) // 2)
    before = _snapshot(base + "_0")
    proc = evaluate(tiny_data, base, "--checkpoint_version", 0, "--is_compressed=false", check=False)
    one_error_line(proc, "%s is damaged" % newest)
    proc = train(tiny_data, base, "--max_steps", 4, "--squeeze_model=false", check=False)
    one_error_line(proc, "%s is damaged" % newest, "newest intact checkpoint is %s" % older[-1])
    assert _snapshot(base + "_0") == before
    # Doing what the message says resumes from the intact checkpoint.
    aside = tmp_path / "aside"
    aside.mkdir()
    for name in os.listdir(base + "_0"):
        if name.startswith(os.path.basename(newest) + "."):
            os.rename(os.path.join(base + "_0", name), aside / name)
    out = train(tiny_data, base, "--max_steps", 4, "--squeeze_model=false").stdout
    assert "resuming from %s (step %s)" % (older[-1], older[-1].rsplit("-", 1)[1]) in out

    # Export onto an existing file.
    target = tmp_path / "taken"
    target.write_text("mine")
    proc = run_cli("export", "--checkpoint_dir", base, "--checkpoint_version", 1,
                   "--export_dir", str(target), check=False)
    one_error_line(proc, "already exists")
    assert target.read_text() == "mine"

    # A flag missing its value: absl would take the next flag as the value.
    proc = run_cli("train", "--data_dir", tiny_data, "--train_dir", "--checkpoint_version", "1",
                   check=False)
    one_error_line(proc, "unexpected argument '1'")

    # A stage directory that does not exist is named; nothing is created.
    missing = tmp_path / "nothing_here"
    proc = run_cli("eval", "--checkpoint_dir", missing, "--is_compressed=false", "--data_dir",
                   tmp_path / "no_data", "--eval_dir", tmp_path / "no_eval", check=False)
    one_error_line(proc, "%s_1 does not exist" % missing)
    assert not any(os.path.exists(tmp_path / n) for n in ("no_data", "no_eval"))


def test_bad_flag_value_exits_naming_the_flag(tmp_path):
    proc = run_cli("train", "--l1_penalty", "-1", "--train_dir", str(tmp_path), check=False)
    assert proc.returncode != 0 and "--l1_penalty" in proc.stderr
    assert not os.listdir(str(tmp_path))


@pytest.mark.parametrize("args, name", [
    (["--l1_penalty=-0.1"], "l1_penalty"), (["--learning_rate=-1"], "learning_rate"),
    (["--batch_size=0"], "batch_size"), (["--model=vgg16"], "model"),
    (["--gamma_rescale=0"], "gamma_rescale"), (["--use_fp16=maybe"], "use_fp16"),
    (["--dataset_source=web"], "dataset_source"), (["--max_steps=-5"], "max_steps"),
])
def test_train_flag_validation(args, name):
    from cifar10_prune.flags.train import define_train_flags
    fv = flags.FlagValues()
    define_train_flags(fv)
    with pytest.raises(flags.IllegalFlagValueError, match=name):
        fv(["train"] + args)


def test_use_fp16_is_accepted():
    from cifar10_prune.flags.train import define_train_flags
    fv = flags.FlagValues()
    define_train_flags(fv)
    fv(["train", "--use_fp16"])
    assert fv.use_fp16 is True


def test_mixed_precision_train_then_float32_eval(tiny_data, tmp_path):
    """--use_fp16 says which policy it picked (bfloat16: this machine has no GPU); its
    checkpoints and the compressed stage it writes are read by the float32 eval."""
    base = str(tmp_path / "mixed")
    out = train(tiny_data, base, "--model", "cnn4", "--max_steps", 2, "--use_fp16",
                "--l1_penalty", 0.5).stdout
    assert re.search(r"^precision: mixed_bfloat16 \(--use_fp16: convolutions in bfloat16;",
                     out, re.M)
    assert [int(s) for s, _, _ in LINE.findall(out)] == [0]
    assert "wrote stage 1" in out
    for version in (0, 1):  # the mixed run's checkpoint, and the compressed stage
        _, precision, loss = results(evaluate(tiny_data, base, "--checkpoint_version", version))
        assert 0.0 <= float(precision) <= 1.0 and float(loss) > 0


def test_flag_defaults_are_the_originals():
    from cifar10_prune.flags.eval import define_eval_flags
    from cifar10_prune.flags.train import define_train_flags
    train_fv, eval_fv = flags.FlagValues(), flags.FlagValues()
    define_train_flags(train_fv)
    define_eval_flags(eval_fv)
    train_fv(["train"])
    eval_fv(["eval"])
    assert {k: train_fv[k].value for k in [
        "batch_size", "data_dir", "use_fp16", "weight_decay", "train_dir", "max_steps",
        "log_frequency", "checkpoint_version", "l1_penalty", "learning_rate", "squeeze_model",
        "log_device_placement", "checkpoint_dir", "base_stride"]} == {
        "batch_size": 125, "data_dir": "/tmp/cifar10_data", "use_fp16": False,
        "weight_decay": 0.0005, "train_dir": "/tmp/cifar10_train", "max_steps": 100000,
        "log_frequency": 100, "checkpoint_version": 0, "l1_penalty": 0.005,
        "learning_rate": 0.1, "squeeze_model": True, "log_device_placement": False,
        "checkpoint_dir": "/tmp/cifar10_train_0", "base_stride": 192}
    assert {k: eval_fv[k].value for k in [
        "eval_dir", "eval_data", "checkpoint_dir", "checkpoint_version", "checkpoint_iter",
        "num_examples", "run_once", "eval_interval_secs", "is_compressed", "batch_size"]} == {
        "eval_dir": "/tmp/cifar10_eval", "eval_data": "test", "checkpoint_dir": "/tmp/cifar10_train",
        "checkpoint_version": 1, "checkpoint_iter": -1, "num_examples": 10000, "run_once": True,
        "eval_interval_secs": 300, "is_compressed": True, "batch_size": 125}
    assert train_fv["model"].value == "resnet20" and train_fv["dataset_source"].value == "binary"


@pytest.mark.slow
def test_run_experiments_script_with_baseline(tiny_data, tmp_path):
    out_dir = str(tmp_path / "recipe")
    proc = subprocess.run(["bash", "run_experiments.sh", "--data_dir", tiny_data, "--train_dir", out_dir,
                           "--steps_scale", "0.0001", "--batch_size", "10", "--num_examples", "50",
                           "--l1_penalties", "0.002,0.003,0", "--baseline"],
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| stage | l1_penalty | steps | total params |" in proc.stdout
    assert "Dense baseline (same schedule, l1_penalty 0)" in proc.stdout
    assert re.search(r"Pruned vs dense baseline: [\d.]+% of the parameters", proc.stdout)
    # What the user sees is this package's lines, not TensorFlow's start-up notes.
    noise = [l for l in (proc.stdout + proc.stderr).splitlines() if console.start_up_noise(l)]
    assert not noise, noise[:3]
    with open(os.path.join(out_dir, "results.json")) as f:
        result = json.load(f)
    assert [(r["stage"], r["l1_penalty"], r["steps"]) for r in result["stages"]] == [
        (0, 0.002, 3), (1, 0.003, 5), (2, 0.0, 5)]
    assert [(r["l1_penalty"], r["total_params"], r["fake_sparsity"]) for r in result["baseline"]] == [
        (0.0, 281304, 0.0)] * 3
    assert all(r["precision_at_1"] is not None and r["total_params"] <= 281304 for r in result["stages"])
    assert set(result["inference_images_per_sec"]) == {"dense baseline", "slim"}
    assert os.path.isdir(os.path.join(out_dir, "saved_model_dense"))
    assert not os.path.exists(os.path.join(out_dir, "saved_model_stage0"))
    assert os.path.exists(os.path.join(out_dir, "results.md"))
    assert open(os.path.join(out_dir, "widths.svg")).read().startswith("<svg")
    curves = open(os.path.join(out_dir, "curves.svg")).read()
    assert curves.count("<polyline") == 12  # 2 charts x 2 runs x 3 stages
    tradeoff = open(os.path.join(out_dir, "params_precision.svg")).read()
    assert tradeoff.count("<circle") == 6  # three stages, run and baseline

    # The same command again, on the finished run: every stage is left as it is, and each row
    # still measures the compressed end of its stage (model.ckpt-0 of the next stage), not that
    # stage's later training.
    again = subprocess.run(proc.args, cwd=REPO, capture_output=True, text=True, timeout=900,
                           env=dict(os.environ, PYTHON=sys.executable))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    with open(os.path.join(out_dir, "results.json")) as f:
        rerun = json.load(f)
    assert [r["precision_at_1"] for r in rerun["stages"]] == [
        r["precision_at_1"] for r in result["stages"]]


def test_run_experiments_stops_at_first_failure(tmp_path):
    proc = subprocess.run(["bash", "run_experiments.sh", "--data_dir", str(tmp_path), "--train_dir",
                           str(tmp_path / "x"), "--batch_size", "0"],
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 1
    assert "step failed with exit code 1" in proc.stderr and "cifar10_prune.eval" not in proc.stdout


def test_continuous_eval_picks_up_new_checkpoints(tiny_data, tmp_path):
    base = str(tmp_path / "watch")
    train(tiny_data, base, "--max_steps", 1, "--squeeze_model=false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifar10_prune.eval", "--data_dir", tiny_data, "--checkpoint_dir", base,
         "--checkpoint_version", "0", "--batch_size", "10", "--eval_dir", base + "_eval",
         "--run_once=false", "--eval_interval_secs", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=str(tmp_path))
    try:
        seen = []
        for line in proc.stdout:
            if "precision @ 1" in line:
                seen.append(line)
                if len(seen) == 1:
                    train(tiny_data, base, "--max_steps", 2, "--squeeze_model=false")
                else:
                    break
        assert len(seen) == 2
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_saves_and_resumes(tiny_data, tmp_path):
    import signal
    import time
    base = str(tmp_path / "interrupt")
    proc = start_training(tiny_data, base, tmp_path)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "interrupted (SIGINT) at step" in err, err[-2000:]
    step = int(re.search(r"at step (\d+); saved \S*model\.ckpt-(\d+)", err).group(2))
    assert os.path.exists("%s_0/model.ckpt-%d.index" % (base, step))
    out = train(tiny_data, base, "--max_steps", step + 1, "--squeeze_model=false").stdout
    assert "resuming from %s_0/model.ckpt-%d (step %d)" % (base, step, step) in out


def test_precision_counts_ties_as_hits_as_in_top_k():
    import keras
    import numpy as np
    from cifar10_prune import evaluation
    inputs = keras.Input((3,))
    identity = keras.Model(inputs, inputs)  # its logits are its inputs
    logits = np.array([[1, 1, 0], [1, 1, 0], [0, 2, 2], [3, 0, 1]], np.float32)
    labels = np.array([1, 0, 0, 2], np.int32)  # a tie won, a tie won, a tie lost, a miss
    ds = tf.data.Dataset.from_tensor_slices((logits, labels)).batch(3)
    precision, _, n = evaluation.evaluate(identity, ds)
    assert n == 4 and precision == 2 / 4


def test_sigterm_saves_and_resumes_even_in_a_background_job(tiny_data, tmp_path):
    import signal
    base = str(tmp_path / "term")
    # As `nohup cmd &` starts it: SIGINT ignored (so kill -INT must be honoured anyway).
    proc = start_training(tiny_data, base, tmp_path,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "interrupted (SIGTERM) at step" in err, err[-2000:]
    step = int(re.search(r"saved \S*model\.ckpt-(\d+)", err).group(1))
    out = train(tiny_data, base, "--max_steps", step + 1, "--squeeze_model=false").stdout
    assert "resuming from %s_0/model.ckpt-%d (step %d)" % (base, step, step) in out
