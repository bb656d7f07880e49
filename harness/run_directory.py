"""One run's directory while a run uses it: an OS lock against a second writer, a writability probe
before any training, removal of what killed writes left behind, and the completeness test that lets
``--resume`` skip finished runs of a recipe."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from .errors import RunError
from .results import PENDING_SUFFIX, RECORD_FILE, RecordError, read_record, samples_path

LOCK_FILE = ".lock"


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock`` holding the owner's PID. The kernel drops the lock
    when the process dies, so a killed run never leaves the directory locked."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self.handle: Any = None

    def acquire(self) -> "RunLock":
        import fcntl

        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunError(f"run directory {self.path.parent} is in use by process {holder} (lock {self.path}); "
                           "wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self, tidy: bool = False) -> None:
        """Drop the lock; with `tidy`, remove the directory when the run left nothing in it but the lock
        (a run that failed before writing anything leaves no empty run directory behind)."""
        if self.handle is None:
            return
        run_dir = self.path.parent
        if tidy and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            self.path.unlink(missing_ok=True)
            run_dir.rmdir()
        self.handle.close()  # closing drops the flock
        self.handle = None


def settle_failure(run_dir: Path, keep: bool) -> str:
    """After a run failed in plugin code: keep the last epoch checkpoint for ``--resume`` when `keep` (a
    resumable failure) and there is one; otherwise remove the run's checkpoints, so that nothing of it is
    left (`RunLock.release` then removes the directory it leaves holding only the lock). What happened, in
    words, for the error line."""
    from .training import BEST_CHECKPOINT, CHECKPOINT, remove_checkpoints

    if keep and (run_dir / CHECKPOINT).is_file():
        return f"the last epoch checkpoint in {run_dir} is kept: fix it and rerun the same command with --resume"
    had = [name for name in (CHECKPOINT, BEST_CHECKPOINT) if (run_dir / name).is_file()]
    remove_checkpoints(run_dir)
    return "its checkpoints were removed (the failure is not resumable)" if had else "nothing was kept"


def prepare(run_dir: Path) -> None:
    """Create the directory and prove it writable before any training, so a permission or disk problem is
    found in a second, not after hours."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{os.getpid()}.tmp"
        with open(probe, "wb") as stream:
            stream.write(b"0" * 4096)
            stream.flush()
            os.fsync(stream.fileno())
        probe.unlink()
    except OSError as error:
        raise RunError(write_failure(error, run_dir, trained=False)) from None


def remove_orphans(run_dir: Path) -> list[Path]:
    """Temporary files of killed writes (`write_atomic`'s ``.*.tmp``) and staged samples no record names."""
    expected = None
    if (run_dir / RECORD_FILE).is_file():
        try:
            expected = read_record(run_dir / RECORD_FILE).get("artifacts", {}).get("samples", {}).get("sha256")
        except RecordError:
            expected = None
    removed = []
    for path in [*run_dir.glob(".*.tmp"), *run_dir.glob(f"*{PENDING_SUFFIX}")]:
        if path.name.endswith(PENDING_SUFFIX) and expected and expected[:16] in path.name:
            continue  # the staged samples of a record that names them: `samples_path` finishes the write
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def is_complete(run_dir: Path) -> bool:
    """A record that validates and samples that match its hash: nothing to redo."""
    try:
        samples_path(run_dir, read_record(run_dir / RECORD_FILE))
    except (RecordError, OSError):
        return False
    return True


def _cause(error: OSError) -> str:
    return {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "the file system is read-only"}.get(error.errno, error.strerror or str(error))


def write_failure(error: OSError, path: Path, trained: bool) -> str:
    """One line naming the path, the cause and what to do next."""
    where = getattr(error, "filename", None) or path
    then = ("the trained checkpoint is kept: fix it and rerun the same command with --resume to write the "
            "results without training again") if trained else "fix it and rerun; nothing was trained"
    return f"cannot write {where}: {_cause(error)}; {then}"


def checkpoint_failure(error: OSError, path: Path) -> str:
    """A checkpoint that cannot be written during training: the harness's write, not the plugin's code."""
    where = getattr(error, "filename", None) or path
    return (f"cannot write checkpoint {where}: {_cause(error)}; fix it and rerun the same command with --resume "
            "to continue from the last checkpoint written")
