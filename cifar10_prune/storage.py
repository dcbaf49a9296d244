"""Writing results so that a crash, a kill or a full disk never leaves a half-written one.

A directory result (a compressed stage, a SavedModel) is written into a hidden temporary
sibling and renamed into place, so a reader sees either nothing or the whole of it. A write
that fails (typically a full disk) becomes one WriteError saying what was not written and
what is still intact.
"""
import contextlib
import glob
import os
import re
import shutil
import tempfile

import tensorflow as tf

from cifar10_prune import console


class WriteError(RuntimeError):
    """A file could not be written (e.g. the disk is full); what existed before is intact."""


def _reason(error):
    """The operating system's words from an OSError or a TensorFlow I/O error, without the
    op and function names TensorFlow wraps them in."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    found = re.search(r";\s*([^;\[]+?)\s*\[Op:", text)
    return found.group(1) if found else text


@contextlib.contextmanager
def writing(what, intact):
    """Turn an OSError or TensorFlow error raised while writing `what` into WriteError, whose
    message adds `intact` (what the user still has, and how to go on)."""
    with console.cpp_lines_held_back():  # TensorFlow's C++ log of a failure repeats ours
        try:
            yield
        except FileExistsError:
            raise  # says what is in the way by itself
        except (OSError, tf.errors.OpError) as e:
            reason = _reason(e)
            full = re.search(r"space|too large|quota", reason, re.I)
            raise WriteError("could not write %s (%s%s). %s" % (
                what, reason, ": is the disk full?" if full else "", intact)) from None


def _temporary_prefix(target):
    return ".%s.tmp-" % os.path.basename(target)


@contextlib.contextmanager
def directory(target, replace=False, log=print):
    """Yield a temporary directory that becomes `target` when the block ends without error.

    The temporary directory is a hidden sibling of `target` with the umask's mode (so it is
    readable like any directory the user makes); on any error, or a kill, `target` is as it
    was. Leftovers of an earlier write that was killed are removed first. An existing `target`
    is an error unless it is an empty directory, or `replace` is true.
    """
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    # A temporary sibling exists only while a write is under way: one that is there now was
    # left by a write that was killed (two writers of the same result would be a user error).
    for stale in glob.glob(os.path.join(parent, glob.escape(_temporary_prefix(target)) + "*")):
        shutil.rmtree(stale, ignore_errors=True)
        log("removed %s, left by an interrupted write of %s" % (stale, target))
    tmp = tempfile.mkdtemp(prefix=_temporary_prefix(target), dir=parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
        yield tmp
        if os.path.isdir(target) and (replace or not os.listdir(target)):
            shutil.rmtree(target)
        elif os.path.exists(target):
            raise FileExistsError("%s already exists" % target)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
