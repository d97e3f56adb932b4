"""One run per run folder: an advisory lock held for the run's life, and SIGTERM as an exit.

:func:`run_lock` takes ``fcntl.flock`` on ``<run folder>/.rdcl.lock``, writes the holder's PID into
it and removes it when the run ends. A second run asking for the same folder (another process,
or the same one) gets :class:`RunInUseError` ("run folder ... in use by PID N"); the kernel drops
the lock when the holder exits, however it ends (crash, ``kill -9``), so a stale lock file never
blocks a later run. A run takes it once (:func:`rdcl.training.stages.run_plan`). Under
``torchrun`` only global rank 0 (``RANK`` unset or ``0``) takes it: the other ranks of the same
run share the folder with rank 0 by design. Where ``fcntl`` does not exist (Windows) no lock is
taken.

:func:`exit_on_sigterm` turns SIGTERM (``kill``, job schedulers) into ``SystemExit(143)`` while a
run is active, so ``finally`` blocks run: the checkpoint writer removes its temporary file.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rdcl.formats.run_folder import LOCK_NAME

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None  # type: ignore[assignment]


class RunInUseError(FileExistsError):
    """Another process holds the run folder's lock (exit 2 at the command line)."""


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0").strip() in ("", "0")


@contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    """Hold the advisory lock of run folder ``folder`` (which must exist) for the block.

    Raises:
        RunInUseError: another process holds it; the message names its PID.
    """
    folder = Path(folder)
    if fcntl is None or not _is_rank_zero():
        yield
        return
    path = folder / LOCK_NAME
    fd = _acquire(path, folder)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # still locked: nobody can take the removed file
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(path: Path, folder: Path) -> int:
    """Open and lock ``path``; retry when the holder removed the file between our open and our
    lock (then we would hold a lock on a file nobody else can see)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunInUseError(
                f"run folder {folder} in use by PID {holder}; wait for that run to finish or "
                "choose another --out"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` in the main thread (elsewhere, or
    when the process already handles SIGTERM, nothing changes).

    Not under torchrun with several ranks (``WORLD_SIZE`` > 1): torchrun stops the healthy ranks
    with SIGTERM when one fails, and a rank waiting inside a collective cannot run a Python
    handler until the collective times out, so the default action (exit at once) is kept; the
    temporary file of an interrupted checkpoint write is removed when the run is resumed."""
    distributed = os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1")
    if distributed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
