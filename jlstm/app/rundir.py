"""The run directory's rules: one run at a time in it, and never a silent overwrite of a run.

``claim(out, resume=..., overwrite=...)`` holds a run directory for the whole of a run:

- it takes an exclusive lock (``fcntl.flock``) on ``out/.lock`` and writes its pid into it. The OS
  drops the lock when the process ends, however it ends, so a SIGKILLed run leaves no stale lock; a
  second run into the same ``out`` is refused at once (``RunDirBusy``, naming the directory and the pid);
- a directory that holds anything but the lock is refused (a ``ValueError``) unless ``resume`` (continue
  the run in it) or ``overwrite`` (start again). ``overwrite`` first removes the files a run writes, so
  that no checkpoint of the old run can become the new run's fallback; other files are left alone.

The other rules live where the files are written: ``checkpoint.save_checkpoint`` never rotates a bad
checkpoint over a good one, ``metrics.read_history`` drops a line cut short by a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from jlstm.app import tasks as tasks_lib
from jlstm.app.checkpoint import CHECKPOINT, RunError
from jlstm.app.metrics import METRICS, SUMMARY

LOCK = ".lock"


class RunDirBusy(RunError):
    """Another process holds the lock of the run directory."""


@contextlib.contextmanager
def claim(out: Path, *, resume: bool, overwrite: bool) -> Iterator[None]:
    """Create ``out``, lock it for the ``with`` block and apply the rules above.

    Raises:
      RunDirBusy: another run holds ``out``.
      ValueError: ``out`` holds files and neither ``resume`` nor ``overwrite`` is set.
    """
    out.mkdir(parents=True, exist_ok=True)
    fd = _lock(out)
    try:
        if overwrite:
            remove_run_files(out)
        elif not resume:
            _refuse_a_used_directory(out)
        yield
    finally:
        # Closing releases the lock. The file stays: unlinking it would let a run that opened the old
        # file and one that creates a new one both hold "the" lock.
        os.close(fd)


def _lock(out: Path) -> int:
    path = out / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise RunDirBusy(
            f"another run is using {out}{pid}: it holds {path} until it ends. Wait for it to end, or "
            "choose another --out."
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _refuse_a_used_directory(out: Path) -> None:
    held = sorted(p.name for p in out.iterdir() if p.name != LOCK)
    if held:
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise ValueError(
            f"out: {out} is not empty (it holds {shown}). Pass --resume to continue the run in it, or "
            "--overwrite to start it again (its run files are removed first), or choose another --out."
        )


def run_files(out: Path) -> list[Path]:
    """The files of a run in ``out`` that exist: its log, summary, figures and checkpoints."""
    names = [METRICS, SUMMARY, "loss.png", *(f"{task}.png" for task in tasks_lib.TASKS)]
    files = [out / name for name in names]
    ckpt_dir = out / CHECKPOINT.parent
    if ckpt_dir.is_dir():  # state.npz, state.prev.npz, state.corrupt.npz and temporary files
        files += sorted(ckpt_dir.glob(CHECKPOINT.stem + ".*"))
    return [p for p in files if p.is_file()]


def remove_run_files(out: Path) -> None:
    """Remove the files of a run in ``out`` (``run_files``), and its checkpoint directory if left empty."""
    for path in run_files(out):
        path.unlink()
    with contextlib.suppress(OSError):  # not empty (a file of the user's) or not there
        (out / CHECKPOINT.parent).rmdir()
