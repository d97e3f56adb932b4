"""The per-step training log ``log.jsonl`` (JSON Lines): :class:`JsonlLog` writes it,
:func:`read_log` reads it; light enough for the report to import.

Every step appends one JSON object (keys :data:`LOG_KEYS`, in order)::

    {"step": int, "stage": "pretrain"|"train", "lr": float, "ramp": float | null,
     "loss": float, "seg": float, "d_g": float | null, "d_t": float | null,
     "loss_g": float | null, "loss_t": float | null, "grad_norm": float, "seconds": float,
     "world_size": int, "batch": int, "g_rank": float | null, "g_rms": float | null}

``step`` is 1-based (the number of optimiser steps done after this one), ``seconds`` the wall time
of the step; terms a method does not use are ``null``. ``world_size`` is the number of DDP ranks
and ``batch`` the per-rank batch (``data.batch_size / world_size``); under DDP the loss terms are
the means over the ranks, i.e. the global-batch values. A line is flushed as soon as it is written,
so a killed run keeps its log; on resume, lines past the checkpoint's step are dropped so the log
of a resumed run equals the log of an uninterrupted one (apart from ``seconds``).

``g_rank`` and ``g_rms`` watch the general encoder G of the networks that have one (dual and
multi-encoder; ``rdcl.training.feature_stats``): the effective rank (1 .. C) and the RMS of G's
bottleneck features on the step's COVID batch X_c, before the step's update, computed every
``train.feature_stats_every`` steps (and at the last step) from the features the step already
computed; ``null`` on the other steps and for single-encoder networks. Under DDP they are the means
over the ranks of each rank's batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rdcl.errors import RdclInputError
from rdcl.fsutil import write_text_atomic
from rdcl.paths import require_file

__all__ = ["LOG_KEYS", "JsonlLog", "read_log"]

LOG_KEYS = (
    "step",
    "stage",
    "lr",
    "ramp",
    "loss",
    "seg",
    "d_g",
    "d_t",
    "loss_g",
    "loss_t",
    "grad_norm",
    "seconds",
    "world_size",
    "batch",
    "g_rank",
    "g_rms",
)
"""The keys of every log record, in order."""


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSON-lines training log, in order; blank lines are skipped.

    Raises:
        FileNotFoundError, PermissionError, IsADirectoryError: no readable file at ``path``
            (:func:`rdcl.paths.require_file`).
        RdclInputError: a line that is not a JSON object (the message names the line).
    """
    path = require_file(path, "training log")
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RdclInputError(f"{path}:{i}: expected a JSON object per line: {exc}") from None
        if not isinstance(rec, dict):
            raise RdclInputError(f"{path}:{i}: expected a JSON object, found {type(rec).__name__}")
        records.append(rec)
    return records


class JsonlLog:
    """Append-only JSON Lines writer for one stage's log.

    Args:
        path: the ``log.jsonl`` file.
        keep_until: ``None`` starts a new log (an existing file is replaced). An int keeps the
            existing lines with ``step <= keep_until`` (resume from that checkpoint step) and
            drops the rest.
    """

    def __init__(self, path: str | Path, *, keep_until: int | None = None) -> None:
        self.path = Path(path)
        kept: list[str] = []
        if keep_until is not None and self.path.is_file():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and _step_of(line) <= keep_until
            ]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self._fh = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (keys in :data:`LOG_KEYS` order) and flush it to disk."""
        ordered = {k: record.get(k) for k in LOG_KEYS}
        self._fh.write(json.dumps(ordered) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file (further writes raise)."""
        self._fh.close()

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        # a torn last line of a killed run: drop it
        return 1 << 62
