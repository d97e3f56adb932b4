"""Checkpoint files (``*.ckpt``): the checkpoint dict, atomic writes and validated reads.

A checkpoint is a ``torch.save`` dict (docs/architecture.md, "Checkpoint")::

    {"format": "rdcl-checkpoint/1", "config": Config.to_dict(), "kind": "single"|"dual"|...,
     "stage": "pretrain"|"train", "step": int, "model": state_dict,
     "optimizer": state_dict | None, "rng": {...}, "distributed": {world size, batches},
     "intensity": IntensityStats.to_dict(), "data": [identity of every dataset read],
     "dataset": {"name": str, "dim": int, "normalization": str, "window": [lo, hi] | None},
     "recipe": int, "loss_growth": {"baseline", "over", "since", "last"} (last.ckpt only)}

(``distributed`` from ``Stage.run_record``; ``intensity``, ``data`` and ``dataset`` from
:func:`rdcl.training.data_streams.dataset_meta`; ``recipe`` the training-recipe version
(:mod:`rdcl.training.recipe`; absent: version 1, written before rdcl recorded it);
``loss_growth`` the divergence guard's state,
:meth:`rdcl.training.divergence.LossGrowthGuard.state_dict`, absent from checkpoints written before
rdcl saved it.)

``step`` counts completed optimiser steps. Writes are atomic: the payload goes to a temporary file
``.<name>.<random>.tmp`` in the destination folder, is fsync'ed, then ``os.replace``'d over the
target (:func:`rdcl.fsutil.atomic_write`), so a crash at any point leaves either the previous
checkpoint or the new one, never a half-written file; :func:`remove_stale_temps` deletes the
temporary files a killed run left.

Everything but tensors is plain data (dicts, lists, str, int, float, bool, None; the RNG states
included), so reads use ``torch.load(weights_only=True)``: a checkpoint cannot run code when it
is opened, and one that tries is refused with a :class:`CheckpointError`. A checkpoint whose
weights hold NaN/inf is never written (:func:`save_checkpoint` refuses it).
"""

from __future__ import annotations

import pickle
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdcl.errors import CheckpointError
from rdcl.fsutil import atomic_write
from rdcl.fsutil import remove_stale_temps as _remove_stale_temps
from rdcl.model.networks import KINDS
from rdcl.paths import require_file

FORMAT = "rdcl-checkpoint/1"
"""The format tag written into, and required from, every checkpoint."""

REQUIRED_KEYS = ("format", "config", "kind", "stage", "step", "model")
"""Keys a readable checkpoint must hold (``optimizer``, ``rng`` ... may be absent or None)."""


_NP_CORE = getattr(np, "_core", None) or np.core
_LEGACY_SAFE_GLOBALS = [
    _NP_CORE.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
]
"""numpy's plain-array types, allowed so that checkpoints written before the RNG state became
plain data (they hold numpy's MT19937 key as an array) still load; they carry data, not code."""


def nonfinite_weights(state: dict[str, Any]) -> tuple[int, str | None]:
    """Number of NaN/inf values in the floating-point tensors of a state dict, and the name of
    the first tensor holding one (``(0, None)`` when all are finite)."""
    count, first = 0, None
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            bad = int((~torch.isfinite(value.detach())).sum())
            if bad and first is None:
                first = name
            count += bad
    return count, first


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with ``torch.save`` atomically (temp file + fsync + ``os.replace``).

    Args:
        path: destination file; its folder must exist.
        payload: the checkpoint dict; must carry ``"format": FORMAT``.

    Returns:
        The destination path. On any error the temporary file is removed and an existing
        checkpoint at ``path`` is left untouched.

    Raises:
        CheckpointError: no format tag, or non-finite values in ``payload["model"]`` (nothing is
            written).
    """
    path = Path(path)
    if payload.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint payload must carry format {FORMAT!r}, found {payload.get('format')!r}"
        )
    bad, where = nonfinite_weights(payload.get("model") or {})
    if bad:
        raise CheckpointError(
            f"refusing to write checkpoint {path}: the weights hold {bad} NaN/inf values "
            f"(first in {where!r}); expected finite weights"
        )
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the ``.<name>.ckpt.<random>.tmp`` files that a run killed inside
    :func:`save_checkpoint` left in ``folder``; returns the removed paths.

    Call it only while no other process writes checkpoints into ``folder`` (the training loop
    holds the run folder's lock, see :mod:`rdcl.training.runlock`).
    """
    return _remove_stale_temps(folder, "*.ckpt")


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    The file is read with ``torch.load(weights_only=True)``: tensors and plain data only, so a
    crafted file cannot run code; one that references any other object is refused.

    Raises:
        CheckpointError: one line naming the file and what was wrong: missing file, not a
            checkpoint (unreadable, unsafe or not a dict with the required keys), another format.
        PermissionError: the file (or a folder on its path) is not readable.
    """
    path = Path(path)
    try:
        require_file(path, "checkpoint")
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise CheckpointError(str(exc)) from None
    try:
        with torch.serialization.safe_globals(_LEGACY_SAFE_GLOBALS), warnings.catch_warnings():
            # torch warns (UserWarning) about pickle protocols other than 2 before it reads on;
            # the outcome is what counts: a clean load, or one CheckpointError line below
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if not found:  # not a pickle rdcl could read at all (e.g. an image file)
            why = type(exc).__name__
            if "Unsupported operand" in str(exc):
                why += ", a pickle that torch's safe loader cannot read"
            raise CheckpointError(
                f"not an rdcl checkpoint: {path} (torch.load failed: {why})"
            ) from exc
        raise CheckpointError(
            f"not a safe rdcl checkpoint: {path} references a Python object "
            f"({found.group(1)}) that could "
            "run code when loaded; expected tensors and plain data only (not loaded)"
        ) from None
    except PermissionError:
        raise
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
    check_entries(payload, path)
    return payload


_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "config": (dict,),
    "stage": (str,),
    "model": (dict,),
    "optimizer": (dict, type(None)),
    "rng": (dict, type(None)),
    "distributed": (dict, type(None)),
    "intensity": (dict, type(None)),
    "data": (list, type(None)),
    "dataset": (dict, type(None)),
    "loss_growth": (dict, type(None)),
}
"""The Python type each checkpoint entry must have when present (``kind``/``step`` below)."""


def check_entries(payload: dict[str, Any], path: str | Path) -> None:
    """Refuse, with one :class:`CheckpointError` line, a checkpoint whose entries are not what
    :func:`save_checkpoint` writes: ``kind`` one of the network kinds, ``stage`` ``"pretrain"`` or
    ``"train"``, ``step`` an int >= 0, every entry of its type, ``model`` a dict of tensors with
    finite floating-point values (NaN/inf weights would predict garbage without an error)."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} is damaged or not rdcl's: {what}")

    for key, types in _ENTRY_TYPES.items():
        if key in payload and not isinstance(payload[key], types):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise bad(f"{key!r} must be {names}, found {type(payload[key]).__name__}")
    if not (isinstance(payload["kind"], str) and payload["kind"] in KINDS):
        raise bad(f"network kind must be one of {list(KINDS)}, found {payload['kind']!r}")
    if payload["stage"] not in ("pretrain", "train"):
        raise bad(f"stage must be 'pretrain' or 'train', found {payload['stage']!r}")
    step = payload["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise bad(f"step must be an integer >= 0, found {step!r}")
    model = payload["model"]
    if not model or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        raise bad("'model' must map parameter names to tensors")
    count, first = nonfinite_weights(model)
    if count:
        raise bad(f"the weights hold {count} NaN/inf values (first in {first!r})")


def rng_state() -> dict[str, Any]:
    """Snapshot of the torch (CPU and CUDA), numpy and Python global random generators.

    Plain data and tensors only (numpy's MT19937 key as a list of ints), so that the checkpoint
    loads with ``weights_only=True``."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (saved on purpose)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [str(kind), [int(k) for k in key], int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot taken by :func:`rng_state` (CUDA states only where CUDA exists)."""
    torch.set_rng_state(state["torch"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np_state = (kind, np.asarray(key, dtype=np.uint32), int(pos), int(has_gauss), float(gauss))
    np.random.set_state(np_state)  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
