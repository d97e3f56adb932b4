"""Type checks of a ``dataset.json`` (nnU-Net v2 raw or MSD) before any field is used.

Each field rdcl reads is checked against what the published formats allow, and a wrong one is
refused with one line naming the file, the key, what was expected and what was found:

- ``name``, ``description``: string; ``file_ending``: string starting with ``.``;
- ``channel_names`` (nnU-Net) / ``modality`` (MSD): object of string names, e.g. ``{"0": "CT"}``;
- ``labels``: object whose values are label values (nnU-Net: ``{"background": 0, "lesion": 1}``,
  regions as lists of ints) or names (MSD: ``{"0": "background", "1": "cancer"}``);
- ``numTraining``: integer >= 0;
- ``training`` / ``test`` (MSD): lists of ``{"image": str, "label": str}`` objects or paths;
- ``rdcl`` (optional): object with ``lesion`` (string), ``normalization`` (``ct``, ``window``,
  ``zscore``), ``window`` ([low, high], checked where it is read), ``label_map`` (object of
  raw value -> 0 or 1), ``units`` (``hu`` or ``mapped``, see
  :mod:`rdcl.data.preprocessing.mapping`) and ``spacing`` (voxel size in mm, array order, for
  files that carry none, e.g. PNG).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rdcl.config import NORMALIZATIONS
from rdcl.data.datasets.spec import UNITS, DatasetError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _found(v: Any) -> str:
    text = repr(v)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(v).__name__})"


def _fail(where: Path, key: str, expected: str, value: Any) -> DatasetError:
    return DatasetError(f'{where}: "{key}" expected {expected}, found {_found(value)}')


def _int_key(k: str) -> bool:
    try:
        return int(k) >= 0
    except ValueError:
        return False


def check_dataset_json(meta: dict[str, Any], where: Path) -> None:
    """Raise :class:`DatasetError` (one line) when a field of the parsed ``dataset.json`` at
    ``where`` has the wrong type (see the module docstring). Unknown keys are ignored."""
    for key in ("name", "description"):
        if key in meta and not isinstance(meta[key], str):
            raise _fail(where, key, "a string", meta[key])
    ending = meta.get("file_ending", ".nii.gz")
    if not (isinstance(ending, str) and ending.startswith(".") and len(ending) > 1):
        raise _fail(where, "file_ending", "a file suffix such as '.nii.gz'", ending)
    for key in ("channel_names", "modality"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _fail(where, key, 'an object of channel names such as {"0": "CT"}', value)
    labels = meta.get("labels")
    if labels is not None:
        ok = isinstance(labels, dict) and all(
            _is_int(v) or isinstance(v, str) or (isinstance(v, list) and all(map(_is_int, v)))
            for v in labels.values()
        )
        if not ok:
            raise _fail(where, "labels", 'an object such as {"background": 0, "lesion": 1}', labels)
    n = meta.get("numTraining")
    if n is not None and not (_is_int(n) and n >= 0):
        raise _fail(where, "numTraining", "an integer >= 0", n)
    for key in ("training", "test"):
        entries = meta.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise _fail(where, key, "a list of cases", entries)
        for entry in entries:
            fine = isinstance(entry, str) or (
                isinstance(entry, dict)
                and isinstance(entry.get("image"), str)
                and isinstance(entry.get("label", ""), (str, type(None)))
            )
            if not fine:
                raise _fail(
                    where, key, 'entries {"image": "path", "label": "path"} or paths', entry
                )
    _check_rdcl_block(meta.get("rdcl", {}), where)


def _check_rdcl_block(extra: Any, where: Path) -> None:
    if extra is None:
        return
    if not isinstance(extra, dict):
        raise _fail(where, "rdcl", "an object of rdcl settings", extra)
    if "lesion" in extra and not isinstance(extra["lesion"], (str, type(None))):
        raise _fail(where, "rdcl.lesion", "a string", extra["lesion"])
    norm = extra.get("normalization")
    if norm is not None and norm not in NORMALIZATIONS:
        raise _fail(where, "rdcl.normalization", f"one of {', '.join(NORMALIZATIONS)}", norm)
    if "units" in extra and extra["units"] not in UNITS:
        raise _fail(where, "rdcl.units", f"one of {', '.join(UNITS)}", extra["units"])
    if "spacing" in extra:
        sp = extra["spacing"]
        ok = (
            isinstance(sp, list)
            and len(sp) in (2, 3)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sp)
            and all(math.isfinite(v) and v > 0 for v in sp)
        )
        if not ok:
            raise _fail(where, "rdcl.spacing", "a list of 2 or 3 positive voxel sizes (mm)", sp)
    if "label_map" in extra:
        lm = extra["label_map"]
        ok = isinstance(lm, dict) and all(
            _int_key(str(k)) and _is_int(v) and v in (0, 1) for k, v in lm.items()
        )
        if not ok:
            raise _fail(
                where,
                "rdcl.label_map",
                'an object of raw value >= 0 -> 0 or 1 such as {"3": 1}',
                lm,
            )
