"""One training run per stage directory at a time.

Two `train` commands on one stage (two terminals, or a job restarted while its old process
still runs) would interleave their checkpoints in one directory. The lock is an advisory
`fcntl.flock` on `<stage>/.lock`, which the kernel releases when its process ends however it
ends, so a killed run never leaves a lock that blocks a rerun; the file's text (pid, host,
start time) names the holder in the refusal and tells a later run whose lock it took over.
"""
import datetime
import fcntl
import json
import os
import socket

LOCK_FILE = ".lock"


class StageInUseError(RuntimeError):
    """Another live process trains this stage."""


def _describe(record):
    return "pid %s on host %s, started %s" % (record.get("pid", "?"), record.get("host", "?"),
                                             record.get("started", "?"))


def _read(f):
    f.seek(0)
    try:
        return json.loads(f.read() or "{}")
    except ValueError:
        return {}


class StageLock:
    """Context manager holding the lock of stage directory `directory` (created if missing).

    Entering raises StageInUseError if another process holds it; if the file names an earlier
    holder that has ended, `log` says the lock is taken over. Leaving releases it.
    """

    def __init__(self, directory, log=print):
        self.path = os.path.join(directory, LOCK_FILE)
        self.log = log
        self._file = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        while True:
            f = open(self.path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(f)
                f.close()
                raise StageInUseError(
                    "%s is being trained by another run (%s); wait for it to end or stop it, "
                    "then rerun this command (it resumes from the newest checkpoint)"
                    % (os.path.dirname(self.path), _describe(holder))) from None
            # The holder we waited on may have removed the file as it released it: then this
            # lock is on a file no one else will open; start again with the current one.
            try:
                if os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            f.close()
        before = _read(f)
        if before:
            self.log("taking over the lock of %s left by a run that has ended (%s)"
                     % (os.path.dirname(self.path), _describe(before)))
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "started": datetime.datetime.now().isoformat(timespec="seconds")}))
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc):
        # Removed before release: a lock file left with a holder in it means that holder
        # never released it (it was killed), which the next run reports.
        os.unlink(self.path)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None
        return False
