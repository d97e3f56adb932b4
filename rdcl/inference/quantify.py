"""Infection quantification: lesion volume, lesion count and the share of the lung infected.

Per case, from a predicted 0/1 mask and its voxel spacing (mm):

- ``infection_ml``: lesion voxels x voxel volume (product of the spacing, mm^3) / 1000;
- ``lesions``: connected components of the mask, full connectivity (26-neighbourhood in 3D,
  8 in 2D);
- with a lung mask: ``lung_ml`` (lung voxels, lesions inside the lung included) and
  ``percent_infected`` = 100 x infected lung voxels / lung voxels (infection outside the lung mask
  is not counted in the percentage).

A lung mask is checked like a label before any number comes from it (:func:`lung_voxels`,
:func:`check_infection_inside`): 0 outside the lung and 1 inside (0/255 as in PNG masks, and the
left/right lung labels 1 and 2 of COVID-19-CT-Seg's ``Lung_Mask`` are accepted too; fractional or
other values are refused), the image's shape and geometry, not empty, and holding at least
:data:`MIN_INFECTION_INSIDE` of the predicted infection (a lung mask that misses most of it
belongs to another case or another grid). A given lung mask that fails a check stops with one
:class:`~rdcl.errors.RdclInputError` line; a number that cannot be computed is left empty (None,
"" in the CSV), never written as 0.

``--lung-mask auto`` builds :func:`auto_lung_mask`: an APPROXIMATE HU-threshold lung mask (like
the derived masks in ``../shared/data``), marked ``lung_mask = "auto (approximate)"`` in reports;
where it finds no lung, or misses most of the infection, the lung figures are left empty and
``lung_mask`` says why.
2D cases report areas in the same columns with a unit voxel depth of 1 mm (``*_ml`` = mm^2 / 1000),
stated per row in ``dim``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from rdcl.errors import RdclInputError
from rdcl.fsutil import write_text_atomic

AUTO_LUNG_HU = -400.0
"""Voxels below this HU are lung (or air) candidates in :func:`auto_lung_mask`."""

AUTO_LUNG_MIN_ML = 50.0
"""Smallest component (mL) kept as lung by :func:`auto_lung_mask` (drops bowel gas, noise)."""

MIN_INFECTION_INSIDE = 0.5
"""Smallest share of the predicted infection voxels a lung mask must hold (see the module
docstring): below it the mask does not describe this case's lungs and no percentage is given."""

LUNG_VALUE_SETS = (frozenset({0, 1}), frozenset({0, 255}), frozenset({0, 1, 2}))
"""Accepted lung-mask value sets: 0/1, 0/255 (PNG masks), 0/1/2 (left/right lung labels)."""

CSV_COLUMNS = (
    "case",
    "dim",
    "spacing_mm",
    "infection_ml",
    "lesions",
    "lung_ml",
    "percent_infected",
    "lung_mask",
)


@dataclass(frozen=True)
class Quantification:
    """One case's numbers (see the module docstring); lung fields are None without a lung mask."""

    case: str
    dim: int
    spacing_mm: tuple[float, ...]
    infection_ml: float
    lesions: int
    lung_ml: float | None
    percent_infected: float | None
    lung_mask: str | None


def voxel_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in mL (2D: area in mm^2 x 1 mm / 1000)."""
    return float(np.prod([float(s) for s in spacing])) / 1000.0


def count_lesions(mask: np.ndarray) -> int:
    """Number of connected components of ``mask > 0`` (full connectivity)."""
    m = np.asarray(mask) > 0
    structure = ndimage.generate_binary_structure(m.ndim, m.ndim)
    return int(ndimage.label(m, structure=structure)[1])


def auto_lung_mask(image: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Approximate lung mask (uint8 0/1) of a HU image, (z, y, x) or (y, x).

    Steps: ``image < -400 HU`` (face connectivity); drop the components that touch the in-plane
    image border (outside air); keep components of at least 50 mL (3D) or the two largest (2D);
    fill holes in every axial slice (vessels, airway walls, lesions enclosed by aerated lung).
    Includes trachea and main bronchi; dense lesions against the chest wall may fall outside.
    Not an expert annotation.
    """
    x = np.asarray(image)
    cand = x < AUTO_LUNG_HU
    structure = ndimage.generate_binary_structure(x.ndim, 1)
    labels, n = ndimage.label(cand, structure=structure)
    if n == 0:
        return np.zeros(x.shape, np.uint8)
    border = np.zeros(x.shape, bool)
    if x.ndim == 3:
        border[:, 0, :] = border[:, -1, :] = border[:, :, 0] = border[:, :, -1] = True
    else:
        border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    outside = np.unique(labels[border & cand])
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[outside] = 0
    if x.ndim == 3:
        min_voxels = AUTO_LUNG_MIN_ML / voxel_ml(spacing)
        keep = np.flatnonzero(sizes >= min_voxels)
    else:
        keep = np.argsort(sizes)[::-1][:2]
        keep = keep[sizes[keep] > 0]
    lung = np.isin(labels, keep)
    if x.ndim == 3:
        lung = np.stack([ndimage.binary_fill_holes(s) for s in lung])
    else:
        lung = ndimage.binary_fill_holes(lung)
    return lung.astype(np.uint8)


def lung_voxels(lung: np.ndarray, where: str) -> np.ndarray:
    """The lung voxels (bool) of a lung mask, refused with one :class:`RdclInputError` line
    unless its values are one of :data:`LUNG_VALUE_SETS` (a subset: 0/1, 0/255 or 0/1/2) and it
    holds at least one lung voxel. ``where`` names the mask in the message."""
    a = np.asarray(lung)
    if a.dtype == bool:
        values: set = set(np.unique(a).astype(int).tolist())
    elif np.issubdtype(a.dtype, np.number):
        uniq = np.unique(a)
        if len(uniq) > 8 or not np.all(np.isfinite(uniq)) or not np.all(uniq == np.round(uniq)):
            shown = ", ".join(f"{v:g}" for v in uniq[:6]) + (", ..." if len(uniq) > 6 else "")
            raise RdclInputError(
                f"{where}: expected a binary lung mask (0 outside, 1 inside; 0/255 and the "
                f"left/right labels 1, 2 also accepted), found values {shown}"
            )
        values = {int(v) for v in uniq}
    else:
        raise RdclInputError(f"{where}: expected a numeric lung mask, found dtype {a.dtype}")
    if not any(values <= allowed for allowed in LUNG_VALUE_SETS):
        raise RdclInputError(
            f"{where}: expected a binary lung mask (0 outside, 1 inside; 0/255 and the "
            f"left/right labels 1, 2 also accepted), found values {sorted(values)}"
        )
    inside = a > 0
    if not inside.any():
        raise RdclInputError(
            f"{where}: the lung mask is empty; expected the lungs of this case (the share "
            "infected cannot be computed without them)"
        )
    return inside


def check_infection_inside(infection: np.ndarray, lung: np.ndarray, where: str) -> float:
    """Share of the infection voxels inside ``lung`` (both bool, same shape); raises
    :class:`RdclInputError` when below :data:`MIN_INFECTION_INSIDE` (1.0 without infection)."""
    n = int(infection.sum())
    share = float(np.logical_and(infection, lung).sum()) / n if n else 1.0
    if share < MIN_INFECTION_INSIDE:
        raise RdclInputError(
            f"{where}: only {100 * share:.0f}% of the predicted infection lies inside the lung "
            f"mask; expected at least {100 * MIN_INFECTION_INSIDE:.0f}% (is it this case's lung "
            "mask, on this image's grid?)"
        )
    return share


def quantify(
    case: str,
    mask: np.ndarray,
    spacing: Sequence[float],
    lung: np.ndarray | None = None,
    lung_source: str | None = None,
    *,
    approximate: bool = False,
) -> Quantification:
    """Numbers of one case: ``mask`` 0/1 prediction, ``spacing`` mm (array order), optional
    ``lung`` mask of the same shape (``lung_source`` names it in the report).

    A given lung mask is checked (:func:`lung_voxels`, :func:`check_infection_inside`) and
    refused with :class:`RdclInputError`. ``approximate`` (the ``auto`` mask) leaves the lung
    figures empty instead, with the reason appended to ``lung_mask``: a mask rdcl derived
    itself is not the user's error, and an empty figure is not a wrong one.
    """
    m = np.asarray(mask) > 0
    if len(spacing) != m.ndim:
        raise RdclInputError(f"spacing {tuple(spacing)} does not fit a {m.ndim}D mask")
    vml = voxel_ml(spacing)
    lung_ml = percent = None
    source = lung_source if lung is not None else None
    if lung is not None:
        if np.shape(lung) != m.shape:
            raise RdclInputError(
                f"{case}: lung mask shape {np.shape(lung)} differs from the image's {m.shape}"
            )
        where = f"{case}: lung mask {lung_source or ''}".rstrip()
        try:
            lung_b = lung_voxels(lung, where)
            check_infection_inside(m, lung_b, where)
        except RdclInputError as exc:
            if not approximate:
                raise
            reason = "no lung found" if "empty" in str(exc) else "most infection outside it"
            source = f"{lung_source}: {reason}, lung figures not computed"
        else:
            n_lung = int(lung_b.sum())
            lung_ml = n_lung * vml
            percent = 100.0 * int(np.logical_and(m, lung_b).sum()) / n_lung
    return Quantification(
        case=case,
        dim=m.ndim,
        spacing_mm=tuple(float(s) for s in spacing),
        infection_ml=int(m.sum()) * vml,
        lesions=count_lesions(m),
        lung_ml=lung_ml,
        percent_infected=percent,
        lung_mask=source,
    )


def _row(q: Quantification) -> dict[str, object]:
    def num(v: float | None, digits: int) -> str:
        return "" if v is None else f"{v:.{digits}f}"

    return {
        "case": q.case,
        "dim": q.dim,
        "spacing_mm": "x".join(f"{s:g}" for s in q.spacing_mm),
        "infection_ml": num(q.infection_ml, 3),
        "lesions": q.lesions,
        "lung_ml": num(q.lung_ml, 3),
        "percent_infected": num(q.percent_infected, 3),
        "lung_mask": q.lung_mask or "",
    }


def write_report(rows: Sequence[Quantification], csv_path: str | Path) -> tuple[Path, Path]:
    """Write ``csv_path`` and the same rows as JSON beside it (``.json`` suffix), atomically.

    Returns ``(csv path, json path)``. The JSON holds ``{"cases": [...], "units": {...}}``.
    """
    csv_path = Path(csv_path)
    json_path = csv_path.with_suffix(".json")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    for q in rows:
        writer.writerow(_row(q))
    doc = {
        "cases": [asdict(q) for q in rows],
        "units": {
            "infection_ml": "mL (2D: mm^2 x 1 mm / 1000)",
            "lung_ml": "mL",
            "percent_infected": "% of lung-mask voxels predicted as lesion",
            "lesions": "connected components (full connectivity)",
        },
        "auto_lung_mask": (
            f"approximate: HU < {AUTO_LUNG_HU:g}, border-touching air removed, components >= "
            f"{AUTO_LUNG_MIN_ML:g} mL, holes filled per axial slice"
        ),
    }
    write_text_atomic(csv_path, buf.getvalue())
    write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    return csv_path, json_path
