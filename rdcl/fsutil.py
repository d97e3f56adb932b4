"""Output writing that never leaves a half-written file or folder: the one home of rdcl's
atomic writes and staged output folders.

Files: :func:`atomic_write` (and the thin :func:`write_text_atomic`, :func:`write_bytes_atomic`,
:func:`atomic_write_path`) write into a temporary file ``.<name>.<random>.tmp`` in the
destination folder, ``fsync`` it, ``os.replace`` it over the destination and ``fsync`` the
folder, so a crash at any point leaves either the previous file or the new one. The file gets
the mode of a plain new file (``0666 & ~umask``, not ``mkstemp``'s 0600) and on any error the
temporary file is removed and the destination is left untouched. :func:`remove_stale_temps`
deletes the temporary files of a process killed mid-write.

Folders: :func:`check_out_dir` says whether an output folder may be written (refusing a file,
or a non-empty folder without ``overwrite``); :func:`staged_dir` yields a hidden sibling folder
to write into and replaces the output folder with it only when the block succeeds;
:func:`make_staging_dir` is the sibling folder alone, for callers that publish differently.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write",
    "atomic_write_path",
    "check_out_dir",
    "fsync_dir",
    "make_staging_dir",
    "move_into_place",
    "new_dir_mode",
    "new_file_mode",
    "remove_stale_staging",
    "remove_stale_temps",
    "staged_dir",
    "temp_pattern",
    "write_bytes_atomic",
    "write_text_atomic",
]

TEMP_SUFFIX = ".tmp"
"""Temporary files are named ``.<destination name>.<random><TEMP_SUFFIX>[<format suffix>]``."""


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: str | Path) -> None:
    """Give a ``tempfile.mkstemp`` file (mode 0600) the mode of a newly created file
    (``0666 & ~umask``), so that atomically written outputs are as readable as plain ones."""
    os.chmod(path, 0o666 & ~_umask())


def new_dir_mode(path: str | Path) -> None:
    """Give a ``tempfile.mkdtemp`` folder (mode 0700) the mode of a newly created folder
    (``0777 & ~umask``), for output folders that are staged and then renamed into place."""
    os.chmod(path, 0o777 & ~_umask())


def fsync_dir(folder: str | Path) -> None:
    """Persist a rename inside ``folder`` (best effort: some file systems refuse folder fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_pattern(name: str = "*") -> str:
    """Glob pattern of the temporary files written for destinations named ``name``
    (e.g. ``temp_pattern("*.ckpt")`` -> ``".*.ckpt.*.tmp*"``)."""
    return f".{name}.*{TEMP_SUFFIX}*"


def _mkstemp(path: Path, suffix: str) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=TEMP_SUFFIX + suffix, dir=path.parent
    )
    return fd, Path(tmp)


def _publish(tmp: Path, path: Path) -> None:
    new_file_mode(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def move_into_place(tmp: str | Path, path: str | Path) -> Path:
    """Publish the finished file ``tmp`` (written by another writer, on ``path``'s file
    system) as ``path``: fsync it, give it a plain new file's mode, ``os.replace`` it over
    ``path`` and fsync the folder. Returns ``path`` as a Path."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    _publish(tmp, path)
    return path


def atomic_write(path: str | Path, writer: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` atomically with ``writer(fh)``, ``fh`` a binary file open for writing.

    The data goes to a temporary file in ``path``'s folder (created if missing), which is
    fsync'ed and renamed over ``path``; the folder is then fsync'ed. Returns ``path`` as a Path.
    On any error (the writer's included) the temporary file is removed, ``path`` is untouched,
    and the error propagates.
    """
    path = Path(path)
    fd, tmp = _mkstemp(path, "")
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_path(
    path: str | Path, writer: Callable[[Path], None], *, suffix: str | None = None
) -> Path:
    """Like :func:`atomic_write` for writers that take a file name, not a file object
    (SimpleITK, ``torch.jit.save``, AOTInductor packages).

    ``writer(tmp)`` must write the whole file at ``tmp``; ``tmp`` ends in ``suffix`` (default
    ``path``'s last suffix) so that writers choosing the format by extension choose the right
    one. Returns ``path``; on any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = _mkstemp(path, path.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        writer(tmp)
        move_into_place(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (line endings as given); returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda fh: fh.write(data))


def remove_stale_temps(folder: str | Path, name: str = "*") -> list[Path]:
    """Delete the temporary files that a process killed inside an atomic write left in
    ``folder`` for destinations named ``name`` (a glob, e.g. ``"*.ckpt"``); returns them.

    Call it only while no other process writes into ``folder``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.glob(temp_pattern(name)) if p.is_file())
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_out_dir(path: str | Path, *, overwrite: bool, what: str = "output folder") -> None:
    """Refuse to write the output folder ``path`` when it is a file, or a non-empty folder
    and ``overwrite`` is false (nothing is changed either way).

    Raises:
        FileExistsError: one line naming ``what`` and the path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{what} exists and is not a folder (expected a folder): {path}")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{what} exists and is not empty (pass overwrite=True / --overwrite): {path}"
        )


def _host_tag() -> str:
    """8 hex digits naming this machine (staging folders on a shared disk name their host)."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def make_staging_dir(out: str | Path, tag: str = "tmp") -> Path:
    """A fresh hidden sibling folder ``.<out name>.<tag>-<pid>-<host>-<random>`` of ``out`` (its
    parent is created if missing), with a plain new folder's mode; the caller moves or removes
    it. The owner's PID and host in the name let :func:`remove_stale_staging` clean up after a
    killed process."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.{tag}-{os.getpid()}-{_host_tag()}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
    new_dir_mode(tmp)
    return tmp


def _process_started_after(pid: int, when: float) -> bool:
    """Whether the live process ``pid`` started after the time ``when`` (a reused PID), read
    from Linux's /proc; False where that cannot be told."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # starttime, clock ticks after boot
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return btime + ticks / os.sysconf("SC_CLK_TCK") > when + 1.0
    except (OSError, ValueError, IndexError, StopIteration):
        return False


def _owner_alive(pid: int, created: float) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return not _process_started_after(pid, created)


def remove_stale_staging(out: str | Path, tag: str) -> list[Path]:
    """Delete the staging folders :func:`make_staging_dir` made for ``out`` with ``tag`` whose
    owner process on this host is gone (killed before it could clean up; its PID reused by a
    younger process counts as gone); returns them. Folders of live owners, of other hosts and
    of other names are left alone. Use only for staging that holds nothing but the output
    being built (e.g. ``"predict"``), never for the ``"old"`` folders of a replaced output."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.{re.escape(tag)}-(\d+)-([0-9a-f]{{8}})-")
    host, removed = _host_tag(), []
    for p in sorted(out.parent.iterdir()):
        m = pattern.match(p.name)
        if not m or m.group(2) != host or not p.is_dir() or p.is_symlink():
            continue
        try:
            created = p.stat().st_mtime
        except OSError:
            continue
        if _owner_alive(int(m.group(1)), created):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` to ``out``; an existing ``out`` is moved aside first,
    put back if the move fails, and deleted last."""
    if not out.exists():
        os.replace(tmp, out)
        fsync_dir(out.parent)
        return
    old = make_staging_dir(out, "old")
    os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / out.name, out)
        raise
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(out: str | Path, *, overwrite: bool, what: str = "output folder") -> Iterator[Path]:
    """Check ``out`` (:func:`check_out_dir`), then yield a fresh hidden sibling folder to write
    into; when the block succeeds it replaces ``out`` (checked again first).

    On any error the sibling folder is removed and ``out`` is left exactly as it was, so a
    writer that fails halfway leaves nothing behind.
    """
    out = Path(out)
    check_out_dir(out, overwrite=overwrite, what=what)
    remove_stale_staging(out, "tmp")  # left by a killed writer of the same output
    tmp = make_staging_dir(out)
    try:
        yield tmp
        check_out_dir(out, overwrite=overwrite, what=what)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
