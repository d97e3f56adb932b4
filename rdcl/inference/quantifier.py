"""Quantification while predicting (``rdcl predict --report``): one report row per predicted mask.

:class:`Quantifier` checks the report path and the lung-mask source before any prediction, finds
each input's lung mask (a single file, a folder of masks named like the inputs, or ``"auto"``),
checks that it overlays the image, computes :func:`rdcl.inference.quantify.quantify` for each
mask passed to :meth:`Quantifier.add` (a predictor's ``on_mask``) and writes the CSV and JSON.
:meth:`Quantifier.check_inputs` checks every lung mask (found, binary, non-empty, on the input's
grid) before the first prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdcl.data.io import (
    Geometry,
    drop_channel_suffix,
    is_image_file,
    read_image,
    read_info,
    strip_suffix,
)
from rdcl.errors import RdclInputError
from rdcl.inference.quantify import (
    Quantification,
    auto_lung_mask,
    lung_voxels,
    quantify,
    write_report,
)

AUTO = "auto"
"""The ``lung`` value that asks for the approximate HU-threshold lung mask
(:func:`rdcl.inference.quantify.auto_lung_mask`)."""


class Quantifier:
    """Collects a :class:`~rdcl.inference.quantify.Quantification` per predicted mask.

    Use: ``q = Quantifier("quant.csv", lung="auto")``, then
    ``predictor.predict_folder(..., on_mask=q.add)`` (or ``predict_file``), then ``q.write()``.

    Args:
        report: the CSV file to write; the JSON goes beside it (same name, ``.json``).
        lung: None (no lung figures), ``"auto"``, a lung-mask file (single input) or a folder of
            lung masks named like the inputs (``CASE.*`` or, for ``CASE_0000.*``, ``CASE.*``).
        folder: the inputs are a folder of images (``lung`` must then be a folder or ``"auto"``).
        overwrite: replace existing report files.

    Raises (at construction, before any prediction): IsADirectoryError (``report`` is a folder),
    RdclInputError (not a ``.csv`` path), FileExistsError (a report file exists and not
    ``overwrite``), FileNotFoundError (``lung`` missing), NotADirectoryError (a lung file for
    folder input).
    """

    def __init__(
        self,
        report: str | Path,
        lung: str | Path | None = None,
        *,
        folder: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(report)
        self.lung = lung if lung in (None, AUTO) else Path(lung)
        if self.path.is_dir():
            raise IsADirectoryError(f"--report must be a file path, found a folder: {self.path}")
        if self.path.suffix.lower() != ".csv":
            raise RdclInputError(f"--report expected a .csv path, found {self.path}")
        for p in (self.path, self.path.with_suffix(".json")):
            if p.exists() and not overwrite:
                raise FileExistsError(f"report exists (pass --overwrite to replace it): {p}")
        if isinstance(self.lung, Path):
            if not self.lung.exists():
                raise FileNotFoundError(f"--lung-mask not found: {self.lung}")
            if folder and not self.lung.is_dir():
                raise NotADirectoryError(
                    f"--lung-mask must be a folder (or auto) for folder input, found {self.lung}"
                )
        self.rows: list[Quantification] = []

    def check_inputs(self, inputs: Sequence[Path]) -> None:
        """Check each input's lung mask before any prediction: found (a folder of masks), a
        binary non-empty mask (:func:`rdcl.inference.quantify.lung_voxels`) on the input's grid
        (shape and geometry from the headers; DICOM folders are checked in :meth:`add`).
        Raises RdclInputError or FileNotFoundError naming the mask; a no-op without a lung-mask
        file or folder."""
        if not isinstance(self.lung, Path):
            return
        for src in inputs:
            path = find_lung_mask(self.lung, src) if self.lung.is_dir() else self.lung
            lung, lung_geom = read_image(path)
            lung_voxels(lung, f"{strip_suffix(src)}: lung mask {path}")
            if Path(src).is_file():
                shape, geometry = read_info(src)
                _check_overlay(path, src, lung.shape, lung_geom, shape, geometry)

    def add(self, src: Path, image: np.ndarray, mask: np.ndarray, geometry: Geometry) -> None:
        """Quantify ``mask`` (0/1, the shape of ``image``) predicted for the input file ``src``;
        the signature of a predictor's ``on_mask``. Raises RdclInputError when the lung mask
        does not overlay the image, FileNotFoundError when a lung folder has none for ``src``."""
        approximate = self.lung == AUTO
        if approximate:
            lung, source = auto_lung_mask(image, geometry.spacing), "auto (approximate)"
        elif self.lung is None:
            lung, source = None, None
        else:
            path = find_lung_mask(self.lung, src) if self.lung.is_dir() else self.lung
            lung, source = _read_overlaying(path, src, mask.shape, geometry), str(path)
        row = quantify(
            strip_suffix(src), mask, geometry.spacing, lung, source, approximate=approximate
        )
        self.rows.append(row)

    def write(self) -> tuple[Path, Path]:
        """Write the CSV and the JSON report (atomically); returns both paths."""
        return write_report(self.rows, self.path)


def find_lung_mask(folder: Path, src: Path) -> Path:
    """The lung mask in ``folder`` for the input ``src``: the same name, or the same name
    without the ``_0000`` channel suffix, with any image suffix (FileNotFoundError if none)."""
    stem = strip_suffix(src)
    stems = {stem, drop_channel_suffix(stem)}
    hits = [p for p in sorted(folder.iterdir()) if is_image_file(p) and strip_suffix(p) in stems]
    if not hits:
        raise FileNotFoundError(f"no lung mask for {src.name} in {folder} (expected {stem}.*)")
    return hits[0]


def _read_overlaying(
    path: Path, src: Path, shape: tuple[int, ...], geometry: Geometry
) -> np.ndarray:
    """The lung mask at ``path``, refused unless it has the image's shape and geometry."""
    lung, lung_geom = read_image(path)
    _check_overlay(path, src, lung.shape, lung_geom, shape, geometry)
    return lung


def _check_overlay(
    path: Path,
    src: Path,
    lung_shape: tuple[int, ...],
    lung_geom: Geometry,
    shape: tuple[int, ...],
    geometry: Geometry,
) -> None:
    if lung_shape != shape:
        raise RdclInputError(
            f"lung mask {path} has shape {lung_shape}, expected the image's {shape}"
        )
    if not lung_geom.matches(geometry, atol=1e-3):
        raise RdclInputError(f"lung mask {path} does not overlay {src} (geometry differs)")
