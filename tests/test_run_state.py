"""benchmarks/run_state.py: what it carries of a runs directory, and that restoring never
overwrites (file level; resuming from a restored run was checked by hand, docs/reproduction.md)."""
import importlib.util
import os

from conftest import REPO

_spec = importlib.util.spec_from_file_location(
    "run_state", os.path.join(REPO, "benchmarks", "run_state.py"))
run_state = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_state)


def _write(root, rel, text="x"):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _files(root):
    return sorted(os.path.relpath(os.path.join(r, n), root)
                  for r, _, names in os.walk(root) for n in names)


def _ckpt(stage, step):
    return ["%s/model.ckpt-%d.index" % (stage, step),
            "%s/model.ckpt-%d.data-00000-of-00001" % (stage, step)]


def test_save_keeps_start_and_newest_checkpoint_and_restore_never_overwrites(tmp_path):
    runs, state, fresh = (str(tmp_path / n) for n in ("runs", "state", "fresh"))
    s0, s1 = "full/cifar10_train_0", "full/cifar10_train_1"
    kept = (["slotA.sh", "slotA.log", "full/eval_1/events.out.tfevents.1",
             s0 + "/architecture.json", s0 + "/checkpoint", s1 + "/checkpoint"]
            + _ckpt(s0, 30000) + _ckpt(s1, 0) + _ckpt(s1, 900))
    left_out = (_ckpt(s0, 29000) + _ckpt(s1, 800) + [s1 + "/.lock", "venv/bin/python",
                "data/cifar-10-batches-bin/test_batch.bin", "full/saved_model/saved_model.pb"])
    for rel in kept + left_out:
        _write(runs, rel)

    run_state.save(runs, state)
    assert _files(state) == sorted(kept)

    # The run goes on: a newer checkpoint replaces the saved newest one, which is removed.
    for rel in _ckpt(s1, 900):
        os.remove(os.path.join(runs, rel))
    for rel in _ckpt(s1, 1000):
        _write(runs, rel, "newer")
    run_state.save(runs, state)
    assert _files(state) == sorted(set(kept) - set(_ckpt(s1, 900)) | set(_ckpt(s1, 1000)))

    run_state.restore(fresh, state)
    assert _files(fresh) == _files(state)
    assert os.access(os.path.join(fresh, "slotA.sh"), os.X_OK)
    # A machine that kept its runs keeps its own (newer) files.
    _write(fresh, "slotA.log", "longer log of this machine")
    run_state.restore(fresh, state)
    with open(os.path.join(fresh, "slotA.log")) as f:
        assert f.read() == "longer log of this machine"
