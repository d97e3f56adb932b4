"""rdcl's typed errors: what the user can fix, told apart from what is a bug.

Every error the library raises because of its *input* (a file, a folder, a config value, a
function argument, a device name) is a :class:`RdclInputError` or one of its subclasses, with a
one-line message saying what was expected and what was found. They subclass :class:`ValueError`,
so ``except ValueError`` keeps working for callers of the Python API.

The command line (:mod:`rdcl.cli`) reports these, and :class:`OSError` (missing files, permission
denied, an output that exists), as ``rdcl <command>: error: <message>`` with exit status 2 and no
traceback. Any other exception, a plain :class:`ValueError` from inside the library included, is
a bug: the command line lets its traceback through (exit 1). :data:`USER_ERRORS` and
:func:`one_line` are that policy, shared by the command line and the study's unit processes
(:mod:`rdcl.study.unit`).

Hierarchy::

    ValueError
    └── RdclInputError                 any bad input (argument values, shapes, names)
        ├── ConfigError                a config file, preset or value
        ├── DatasetError               a dataset folder or one of its cases
        ├── ImageReadError             an image file (missing, corrupt, unsupported)
        ├── ImageWriteError            an image that cannot be written as asked
        ├── CheckpointError            a checkpoint (missing, not rdcl's, mismatching)
        └── TrainingDivergedError      a loss or gradient became NaN/inf (lower the LR)
"""

from __future__ import annotations

__all__ = [
    "USER_ERRORS",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ImageReadError",
    "ImageWriteError",
    "RdclInputError",
    "TrainingDivergedError",
    "one_line",
]


class RdclInputError(ValueError):
    """The input (a value, file, folder or argument) is not what rdcl expects; the message is
    one line naming what was expected and what was found."""


class ConfigError(RdclInputError):
    """A configuration value or file is invalid."""


class DatasetError(RdclInputError):
    """A dataset folder or one of its cases is invalid (one-line message naming the file)."""


class ImageReadError(RdclInputError):
    """An image file is missing, unreadable, corrupt or of an unsupported kind."""


class ImageWriteError(RdclInputError):
    """SimpleITK could not write an image (unwritable path, pixel type the format cannot hold)."""


class CheckpointError(RdclInputError):
    """A checkpoint file is missing, unreadable or not an rdcl checkpoint of a known format."""


class TrainingDivergedError(RdclInputError):
    """A loss term or the gradient norm became NaN or infinite; training stopped before the step
    (the configuration, usually ``train.lr``, needs changing)."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    RdclInputError,  # ConfigError, DatasetError, ImageReadError, CheckpointError, ... (above)
    OSError,  # FileExistsError, FileNotFoundError, PermissionError, symlink loops, disk full, ...
)
"""Exception types reported as user errors (exit 2, one line, no traceback). Anything else is a
bug and keeps its traceback."""


def one_line(exc: BaseException) -> str:
    """How a user error is reported: its message on one line (an :class:`OSError` as
    ``strerror: filename``, without the ``[Errno N]`` prefix), else the exception's type name."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:  # no "[Errno N]" prefix
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    text = " ".join(text.split())
    return text or type(exc).__name__
