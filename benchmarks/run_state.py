"""Carry long reproduction runs from one machine to the next, through the repository.

The full-length recipe (docs/reproduction.md) needs more hours than one working session has,
and the next session may get another machine, so the state of a run must not live only on
disk. `save` copies what a run needs to resume and to be reported into a folder of the work
tree (to be committed); `restore` copies it back into a runs directory on a new machine.

What is kept of each run directory (one `run_experiments.sh --train_dir`): every small file
(architecture.json, the checkpoint state file, event files, evals, results, charts) and, of the
checkpoints, each stage's `model.ckpt-0` (its compressed start, which eval reads at
`--checkpoint_iter 0` when a rerun re-evaluates) and its newest one (where training resumes).
Older checkpoints, exported SavedModels and stage locks are left out. The runs directory's own
files (the slot scripts, their logs, COMMIT) are kept too.

    python benchmarks/run_state.py save    ~/runs benchmarks/run_state
    python benchmarks/run_state.py restore ~/runs benchmarks/run_state

`restore` never overwrites: a file already in the runs directory stays as it is (a machine that
kept its runs has newer checkpoints than the repository). Standard library only, so it runs
before anything is installed.
"""
import argparse
import filecmp
import os
import re
import shutil

_CHECKPOINT = re.compile(r"^model\.ckpt-(\d+)\.(index|data-\d+-of-\d+)$")
_SKIPPED_DIRS = {"venv", "src", "data", "bench"}  # rebuilt from the repository and shared data
_SKIPPED_FILES = {".lock"}


def _kept_steps(names):
    """Of the checkpoint files among `names`, the steps to keep: 0 and the newest."""
    steps = {int(m.group(1)) for m in map(_CHECKPOINT.match, names) if m}
    return {s for s in steps if s == 0 or s == max(steps)}


def _wanted(runs_dir):
    """Relative paths of the files under `runs_dir` that `save` keeps."""
    wanted = []
    for root, dirs, files in os.walk(runs_dir):
        rel_root = os.path.relpath(root, runs_dir)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]
        dirs[:] = [d for d in dirs if not d.startswith("saved_model")]
        keep = _kept_steps(files)
        for name in files:
            match = _CHECKPOINT.match(name)
            if name in _SKIPPED_FILES or (match and int(match.group(1)) not in keep):
                continue
            wanted.append(os.path.normpath(os.path.join(rel_root, name)))
    return sorted(wanted)


def save(runs_dir, state_dir):
    """Make `state_dir` hold exactly the kept files of `runs_dir` (stale ones removed)."""
    wanted = set(_wanted(runs_dir))
    for root, _, files in os.walk(state_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), state_dir)
            if rel not in wanted and name != "README.md":
                os.remove(os.path.join(state_dir, rel))
    copied = 0
    for rel in sorted(wanted):
        src, dst = os.path.join(runs_dir, rel), os.path.join(state_dir, rel)
        if os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False):
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
        copied += 1
    print("saved %d files (%d changed) from %s to %s" % (len(wanted), copied, runs_dir, state_dir))


def restore(runs_dir, state_dir):
    """Copy every file of `state_dir` that `runs_dir` lacks; never overwrite."""
    copied = kept = 0
    for root, _, files in os.walk(state_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), state_dir)
            dst = os.path.join(runs_dir, rel)
            if rel == "README.md":
                continue
            if os.path.exists(dst):
                kept += 1
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(root, name), dst)
            if name.endswith(".sh"):
                os.chmod(dst, 0o755)
            copied += 1
    print("restored %d files into %s (%d already there, left as they were)"
          % (copied, runs_dir, kept))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("runs_dir", help="the directory the runs train in, e.g. ~/runs")
    parser.add_argument("state_dir", help="the folder in the work tree, e.g. benchmarks/run_state")
    args = parser.parse_args()
    runs_dir, state_dir = (os.path.expanduser(d) for d in (args.runs_dir, args.state_dir))
    if args.action == "save" and not os.path.isdir(runs_dir):
        parser.error("no runs directory %s to save from" % runs_dir)
    if args.action == "restore" and not os.path.isdir(state_dir):
        parser.error("no saved state in %s (save writes it)" % state_dir)
    os.makedirs(runs_dir if args.action == "restore" else state_dir, exist_ok=True)
    (save if args.action == "save" else restore)(runs_dir, state_dir)


if __name__ == "__main__":
    main()
