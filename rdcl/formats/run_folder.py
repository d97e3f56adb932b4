"""A training run folder: the names of its files and :func:`find_checkpoint` (the checkpoint a
run folder or a file names, what ``rdcl predict -m`` and ``rdcl export -m`` use).

Layout (written by :mod:`rdcl.training`; docs/architecture.md, "Run folder")::

    RUN_DIR/config.json         the resolved config (+ "run")
    RUN_DIR/log.jsonl           one record per step (rdcl.formats.run_log)
    RUN_DIR/last.ckpt           every train.checkpoint_every steps (rdcl.formats.checkpoint)
    RUN_DIR/final.ckpt          at the end of the stage, without optimiser state
    RUN_DIR/snapshots/          <stage>_step_NNNNNNN.ckpt when train.snapshots > 0
    RUN_DIR/pretrain/...        stage 1, same layout
    RUN_DIR/.rdcl.lock          held while a run lives (rdcl.training.runlock)
"""

from __future__ import annotations

from pathlib import Path

from rdcl.errors import CheckpointError
from rdcl.paths import require_dir, require_file, require_path

LAST = "last.ckpt"
"""File name of the rolling checkpoint written every ``train.checkpoint_every`` steps."""

FINAL = "final.ckpt"
"""File name of the checkpoint written when a stage completes (no optimiser state)."""

LOG_NAME = "log.jsonl"
"""File name of the per-step log inside a stage's output folder."""

CONFIG_NAME = "config.json"
"""File name of the resolved config inside a stage's output folder."""

PRETRAIN_DIR = "pretrain"
"""Sub-folder of the run folder that holds stage 1."""

SNAPSHOT_DIR = "snapshots"
"""Run sub-folder of the weights kept by ``train.snapshots``."""

LOCK_NAME = ".rdcl.lock"
"""The lock file of a living run."""


def find_checkpoint(path: str | Path, *, what: str = "checkpoint") -> Path:
    """The checkpoint file ``path`` names: the file itself, or a finished run folder's
    ``final.ckpt`` (:data:`FINAL`).

    Args:
        path: a checkpoint file or a run folder.
        what: how messages name ``path`` (e.g. ``"model"`` for ``-m``).

    Raises:
        CheckpointError: nothing at ``path``, or a run folder without ``final.ckpt`` (the
            message points to its ``last.ckpt`` when the run has not finished).
        PermissionError: ``path`` (or a folder on its way) is not readable.
    """
    path = Path(path)
    try:
        require_path(path, what)
    except FileNotFoundError as exc:
        raise CheckpointError(str(exc)) from None
    if not path.is_dir():
        return require_file(path, what)
    require_dir(path, f"{what} run folder")
    if (path / FINAL).is_file():
        return path / FINAL
    last = path / LAST
    hint = f"; the run has not finished, pass {last} to use its latest weights"
    raise CheckpointError(
        f"no checkpoint in run folder {path}: expected {FINAL}" + (hint if last.is_file() else "")
    )


def existing_run_files(out_dir: Path) -> list[Path]:
    """The files in ``out_dir`` that a new run would overwrite (checkpoints and the log)."""
    return [out_dir / n for n in (LAST, FINAL, LOG_NAME) if (out_dir / n).exists()]
