"""Writing rdcl's native layout (nnU-Net v2 raw: ``dataset.json``, ``imagesTr/CASE_0000.nii.gz``,
``labelsTr/CASE.nii.gz`` 0/1), shared by the converters of :mod:`rdcl.data.datasets.prepare` and
:mod:`rdcl.data.datasets.slices`.

The output folder appears only when complete (:func:`rdcl.fsutil.staged_dir`); images and labels
are written through :mod:`rdcl.data.io`, so spacing, origin and direction are kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rdcl.data import io
from rdcl.data.datasets.layout import load_case, load_dataset
from rdcl.data.datasets.spec import Case, DatasetError, DatasetSpec
from rdcl.fsutil import staged_dir

logger = logging.getLogger(__name__)

__all__ = ["as_int16", "native_meta", "write_native"]


def as_int16(image: np.ndarray) -> np.ndarray:
    """HU as int16 (rounded) when it fits, else float32."""
    rounded = np.rint(image)
    if rounded.size and (rounded.min() < -32768 or rounded.max() > 32767):
        return image.astype(np.float32)
    return rounded.astype(np.int16)


def native_meta(
    name: str,
    n: int,
    lesion: str,
    normalization: str,
    window: tuple[float, float] | None,
) -> dict[str, Any]:
    """The ``dataset.json`` of a native-layout set: ``n`` cases, one CT channel, labels
    background 0 and ``lesion`` 1, and rdcl's entry (lesion kind, ``normalization``, the HU
    ``window`` (lo, hi) when given)."""
    extra: dict = {"lesion": lesion, "normalization": normalization}
    if window is not None:
        extra["window"] = [float(window[0]), float(window[1])]
    return {
        "name": name,
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, lesion: 1},
        "numTraining": n,
        "file_ending": ".nii.gz",
        "rdcl": extra,
    }


def write_native(
    out: Path,
    cases: list[Case],
    meta: dict,
    convert: Callable[[Case, np.ndarray], np.ndarray],
    *,
    overwrite: bool,
) -> DatasetSpec:
    """Write ``cases`` (validated by :func:`load_case`) in the native layout into ``out``:
    each image passed through ``convert(case, image)``, labels as uint8, ``meta`` (from
    :func:`native_meta`) with its case count. Returns the written dataset; DatasetError when
    ``cases`` is empty or a case has no label; FileExistsError for a non-empty ``out`` unless
    ``overwrite``."""
    if not cases:
        raise DatasetError("no cases found to prepare")
    with staged_dir(out, overwrite=overwrite) as tmp:
        for case in cases:
            image, label, geometry = load_case(case)
            if label is None:
                raise DatasetError(f"{case.image}: no label; expected a labelled case")
            image = convert(case, image)
            io.write_image(image, geometry, tmp / "imagesTr" / io.channel_file_name(case.name))
            label_path = tmp / "labelsTr" / f"{case.name}.nii.gz"
            io.write_image(label.astype(np.uint8), geometry, label_path)
            logger.info("prepared %s", case.name)
        meta = {**meta, "numTraining": len(cases)}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return load_dataset(out)
