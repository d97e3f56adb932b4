"""Training checkpoints: the checkpoint dict, atomic writes and validated reads.

A checkpoint is a ``torch.save`` dict (docs/architecture.md, "Checkpoint")::

    {"format": "rdcl-checkpoint/1", "config": Config.to_dict(), "kind": "single"|"dual"|...,
     "stage": "pretrain"|"train", "step": int, "model": state_dict,
     "optimizer": state_dict | None, "rng": {...}, "intensity": IntensityStats.to_dict(),
     "dataset": {"name": str, "dim": int}}

``step`` counts completed optimiser steps. Writes are atomic: the payload goes to a temporary file
in the destination folder, is fsync'ed, then ``os.replace``'d over the target, so a crash at any
point leaves either the previous checkpoint or the new one, never a half-written file.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "rdcl-checkpoint/1"
"""The format tag written into, and required from, every checkpoint."""

REQUIRED_KEYS = ("format", "config", "kind", "stage", "step", "model")
"""Keys a readable checkpoint must hold (``optimizer``, ``rng`` ... may be absent or None)."""

LAST = "last.ckpt"
"""File name of the rolling checkpoint written every ``train.checkpoint_every`` steps."""

FINAL = "final.ckpt"
"""File name of the checkpoint written when a stage completes (no optimiser state)."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not an rdcl checkpoint of a known format."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with ``torch.save`` atomically (temp file + fsync + ``os.replace``).

    Args:
        path: destination file; its folder must exist.
        payload: the checkpoint dict; must carry ``"format": FORMAT``.

    Returns:
        The destination path. On any error the temporary file is removed and an existing
        checkpoint at ``path`` is left untouched.
    """
    path = Path(path)
    if payload.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint payload must carry format {FORMAT!r}, found {payload.get('format')!r}"
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600: give a plain new file's mode
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (best effort: some file systems refuse directory fsync)."""
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


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: one line naming the file and what was wrong: missing file, not a
            checkpoint (unreadable or not a dict with the required keys), or another format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"not an rdcl checkpoint: {path} (torch.load failed: {type(exc).__name__})"
        ) from exc
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(
            f"not an rdcl checkpoint: {path} (expected a dict with a 'format' key, found "
            f"{type(payload).__name__})"
        )
    if payload["format"] != FORMAT:
        raise CheckpointError(
            f"unsupported checkpoint format in {path}: expected {FORMAT!r}, found "
            f"{payload['format']!r}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing keys {missing}")
    return payload


def rng_state() -> dict[str, Any]:
    """Snapshot of the torch (CPU and CUDA), numpy and Python global random generators."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global generator is saved on purpose)
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot taken by :func:`rng_state` (CUDA states only where CUDA exists)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
