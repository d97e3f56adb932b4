"""Reading a training log (``log.jsonl``: one JSON object per line, written by
:class:`rdcl.training.step_log.JsonlLog`); light enough for the report to import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rdcl.errors import RdclInputError
from rdcl.paths import require_file

__all__ = ["read_log"]


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
