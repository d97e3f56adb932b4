"""Input path checks that tell "does not exist" from "permission denied".

``Path.exists()``/``is_file()`` answer False both for a missing path and (for some errors) for
one that cannot be looked at, and a file that exists but cannot be read passes them; reporting
either as "not found" sends the user looking for a file that is there. These helpers ``stat`` the
path and test access, and raise one-line errors naming what was expected and what was found:

- :class:`FileNotFoundError` ``"<what> not found: <path>"``;
- :class:`PermissionError` ``"permission denied: cannot read <what> <path> ..."``;
- :class:`IsADirectoryError` / :class:`NotADirectoryError` for the wrong kind of entry.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["require_dir", "require_file", "require_path"]


def require_path(path: str | Path, what: str) -> os.stat_result:
    """``os.stat(path)``, or a one-line FileNotFoundError/PermissionError.

    Args:
        path: the input path (file or folder).
        what: how the message names it, e.g. ``"checkpoint"``, ``"--data folder"``.

    Raises:
        FileNotFoundError: nothing at ``path`` (or a component of it is not a folder).
        PermissionError: a folder on the path cannot be searched.
        OSError: any other error of ``stat`` (e.g. a symlink loop), with ``what`` and the path.
    """
    path = Path(path)
    try:
        return path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except NotADirectoryError:
        raise FileNotFoundError(
            f"{what} not found: {path} (a part of the path is a file)"
        ) from None
    except PermissionError:
        raise PermissionError(
            f"permission denied: cannot access {what} {path} (a folder on its path is not "
            "searchable by this user)"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, f"{what} {path} is a symlink loop") from None
        raise OSError(exc.errno, f"cannot access {what} {path}: {exc.strerror}") from None


def require_file(path: str | Path, what: str) -> Path:
    """``path`` if it is a readable file (see :func:`require_path` for the errors).

    Raises:
        IsADirectoryError: ``path`` is a folder.
        PermissionError: the file exists but this user may not read it.
    """
    path = Path(path)
    st = require_path(path, what)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{what} must be a file, found a folder: {path}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"permission denied: cannot read {what} {path}")
    return path


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` if it is a folder this user may list and enter.

    Raises:
        NotADirectoryError: ``path`` is a file.
        PermissionError: the folder exists but may not be listed or entered.
    """
    path = Path(path)
    st = require_path(path, what)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{what} must be a folder, found a file: {path}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise PermissionError(f"permission denied: cannot read {what} {path}")
    return path
