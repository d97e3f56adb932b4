"""Axial 2D lesion slices from a labelled 3D data set (``rdcl prepare slices``), for 2D studies:
which slices (:func:`lesion_slices`), their geometry (:func:`slice_geometry`) and the converter
(:func:`prepare_slices`), writing rdcl's native layout in HU with the lung window.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rdcl.data import io
from rdcl.data.datasets import published
from rdcl.data.datasets.layout import load_case, load_dataset
from rdcl.data.datasets.native import as_int16, native_meta
from rdcl.data.datasets.spec import Case, DatasetError, DatasetSpec
from rdcl.errors import RdclInputError
from rdcl.fsutil import staged_dir

__all__ = ["SLICE_WINDOW", "lesion_slices", "prepare_slices", "slice_geometry"]

SLICE_WINDOW = published.CORONACASES_WINDOW
"""Window (HU) of the slices :func:`prepare_slices` writes: the COVID-19-CT-Seg lung window."""


def _image_label_pairs(src: Path) -> list[Case]:
    """``<name>_image.<ext>`` + ``<name>_label.<ext>`` files side by side (e.g. lung_tumour_ct)."""
    cases = []
    for img in sorted(src.iterdir()):
        stem = io.strip_suffix(img)
        if not (io.is_image_file(img) and stem.endswith("_image")):
            continue
        name = stem[: -len("_image")]
        labels = [p for p in src.glob(f"{name}_label.*") if io.is_image_file(p)]
        if labels:
            cases.append(Case(name, img, labels[0]))
    return cases


def slice_geometry(geometry: io.Geometry) -> io.Geometry:
    """The 2D geometry of an axial slice of a 3D image: in-plane spacing (y, x), origin (x, y)
    and the in-plane block of the direction cosines (SimpleITK order)."""
    d = geometry.direction
    return io.Geometry(
        spacing=tuple(geometry.spacing[1:]),
        origin=tuple(geometry.origin[:2]),
        direction=(d[0], d[1], d[3], d[4]),
    )


def lesion_slices(label: np.ndarray, max_slices: int) -> list[int]:
    """Up to ``max_slices`` axial indices of a (z, y, x) label with lesion, spread evenly over
    the lesion's extent (the largest slice always included), sorted."""
    area = label.reshape(label.shape[0], -1).sum(axis=1)
    zs = np.flatnonzero(area)
    if zs.size == 0 or max_slices < 1:
        return []
    if zs.size <= max_slices:
        return zs.tolist()
    picked = {int(zs[i]) for i in np.linspace(0, zs.size - 1, max_slices).round().astype(int)}
    largest = int(zs[np.argmax(area[zs])])
    if largest not in picked:
        picked.discard(min(picked, key=lambda z: area[z]))
        picked.add(largest)
    return sorted(picked)


def prepare_slices(
    src: str | Path,
    out: str | Path,
    *,
    max_per_case: int = 1,
    lesion: str = "tumour",
    overwrite: bool = False,
) -> DatasetSpec:
    """Axial 2D slices with lesion from a 3D data set (``rdcl prepare slices``), for 2D studies.

    ``src``: any layout :func:`~rdcl.data.datasets.layout.load_dataset` reads (e.g. lidc_nodules'
    ``images/`` + ``masks/``) or ``<name>_image.*`` + ``<name>_label.*`` files (lung_tumour_ct).
    Each 3D case gives up to ``max_per_case`` lesion slices (:func:`lesion_slices`) named
    ``<case>_zNNN``, written as 2D NIfTI in HU with :func:`slice_geometry`; ``dataset.json`` marks
    ``window`` normalisation with :data:`SLICE_WINDOW`. Returns the prepared dataset.
    """
    src = Path(src)
    try:
        cases = list(load_dataset(src).cases)
    except DatasetError:
        cases = _image_label_pairs(src)
        if not cases:
            raise
    if max_per_case < 1:
        raise RdclInputError(f"expected at least 1 slice per case, found {max_per_case}")
    out = Path(out)
    n = 0
    with staged_dir(out, overwrite=overwrite) as tmp:
        for case in cases:
            image, label, geometry = load_case(case)
            if image.ndim != 3 or label is None:
                raise DatasetError(f"{case.image}: expected a labelled 3D image")
            geom2 = slice_geometry(geometry)
            for z in lesion_slices(label, max_per_case):
                name = f"{case.name}_z{z:03d}"
                io.write_image(
                    as_int16(image[z]), geom2, tmp / "imagesTr" / io.channel_file_name(name)
                )
                io.write_image(
                    label[z].astype(np.uint8), geom2, tmp / "labelsTr" / f"{name}.nii.gz"
                )
                n += 1
        if n == 0:
            raise DatasetError(f"{src}: no case has a lesion slice")
        meta = native_meta(f"{src.name}_slices", n, lesion, "window", SLICE_WINDOW)
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return load_dataset(out)
