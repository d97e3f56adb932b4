"""Evaluate a folder (or file) of predictions against labels: per-case metrics, CSV and summary."""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdcl.data import published
from rdcl.data.io import is_image_file, new_file_mode, read_image, strip_suffix
from rdcl.metrics.surface import dice, surface_distances

logger = logging.getLogger(__name__)

COLUMNS = ("case", "dsc", "nsd", "hd95", "assd")

GEOMETRY_ATOL = 1e-3
"""Largest spacing/origin (mm) and direction difference between a prediction and its label: the
tolerance with which :func:`rdcl.data.layout.load_case` pairs an image with its label."""


def _case_key(path: Path) -> str:
    """Case name of a file: suffix stripped, nnU-Net channel suffix ``_0000`` tolerated."""
    name = strip_suffix(path)
    if len(name) > 5 and name.endswith("_0000"):
        name = name[:-5]
    return name


def _alias(path: Path) -> str:
    """Case key of a published layout: COVID-19-CT-Seg image names mapped to their mask names,
    then the im/mask/label tokens dropped (``tr_im_0001`` and ``tr_mask_0001`` -> ``tr_0001``),
    as :mod:`rdcl.data.published` pairs images with masks."""
    stem = strip_suffix(path)
    stem = published._covid_mask_name(stem) or stem
    tokens = re.split(r"[_\-.\s]+", stem.lower())
    return "_".join(t for t in tokens if t and t not in published._NAME_TOKENS)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"expected a file or folder of images, found nothing at {path}")
    return [p for p in sorted(path.iterdir()) if is_image_file(p)]


def match_cases(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """(case, pred_file, gt_file) for every case present in both; raises if none match.

    A label ``CASE.*`` takes the prediction ``CASE.*``, else ``CASE_0000.*``, else the one
    prediction with the same published-layout key (``tr_im_0001.png`` for ``tr_mask_0001.png``,
    ``coronacases_org_001.nii.gz`` for ``coronacases_001.nii.gz``). The case is the label's name.
    """
    preds, gts = _files(Path(pred)), _files(Path(gt))
    if Path(pred).is_file() and Path(gt).is_file():
        return [(_case_key(Path(gt)), Path(pred), Path(gt))]
    by_stem = {strip_suffix(p): p for p in preds}
    by_case = {_case_key(p): p for p in preds}
    aliases: dict[str, list[Path]] = {}
    for p in preds:
        aliases.setdefault(_alias(p), []).append(p)
    matched, missing = [], []
    for g in gts:
        case = strip_suffix(g)
        alias = aliases.get(_alias(g), []) if _alias(g) else []
        p = by_stem.get(case) or by_case.get(case) or (alias[0] if len(alias) == 1 else None)
        if p is None:
            missing.append(case)
        else:
            matched.append((case, p, g))
    if not matched:
        raise ValueError(
            f"expected prediction and label files with matching case names, found none "
            f"({len(preds)} in {pred}, {len(gts)} in {gt})"
        )
    for case in sorted(missing):
        logger.warning("no prediction for case %s", case)
    return sorted(matched)


def evaluate_case(
    pred_file: Path,
    gt_file: Path,
    *,
    tolerance_mm: float = 3.0,
    device: str = "cpu",
    threads: int | None = None,
) -> dict:
    """DSC, NSD@tau, HD95 (mm) and ASSD (mm) of one case; foreground is any non-zero label."""
    pred, pg = read_image(pred_file)
    gt, gg = read_image(gt_file)
    if pred.shape != gt.shape or not pg.matches(gg, atol=GEOMETRY_ATOL):
        raise ValueError(
            f"expected {pred_file.name} to have the geometry of {gt_file.name}: shape "
            f"{gt.shape}, spacing {gg.spacing}, origin {gg.origin}; found shape {pred.shape}, "
            f"spacing {pg.spacing}, origin {pg.origin}"
        )
    p, g = pred != 0, gt != 0
    sd = surface_distances(p, g, gg.spacing, device=device, threads=threads)
    return {
        "dsc": dice(p, g),
        "nsd": sd.surface_dice(tolerance_mm),
        "hd95": sd.hausdorff(95.0),
        "assd": sd.assd(),
    }


def _write_csv(rows: Sequence[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({k: r[k] for k in COLUMNS} for r in rows)
        new_file_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def evaluate_folders(
    pred_dir_or_file: str | Path,
    gt_dir_or_file: str | Path,
    *,
    tolerance_mm: float = 3.0,
    csv_path: str | Path | None = None,
    device: str = "cpu",
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Per-case rows ``{"case", "dsc", "nsd", "hd95", "assd"}`` for matched cases.

    Cases are matched by file name without suffix (``case_0000`` matches ``case``); geometry must
    agree (ValueError otherwise). With ``csv_path`` the rows are written atomically; an existing
    file raises FileExistsError unless ``overwrite``. Empty-mask values follow rdcl.metrics.
    ``progress=False`` hides the progress bar.
    """
    from rdcl.progress import progress_bar

    if csv_path is not None and Path(csv_path).exists() and not overwrite:
        raise FileExistsError(f"expected no file at {csv_path} (pass overwrite=True), found one")
    rows = []
    cases = match_cases(Path(pred_dir_or_file), Path(gt_dir_or_file))
    bar = progress_bar(cases, desc="evaluate", unit="cases", disable=not progress or len(cases) < 2)
    for case, pf, gf in bar:
        row = {"case": case}
        row.update(evaluate_case(pf, gf, tolerance_mm=tolerance_mm, device=device, threads=threads))
        rows.append(row)
    if csv_path is not None:
        _write_csv(rows, Path(csv_path))
    return rows


def summarize(rows: Sequence[dict]) -> dict:
    """Mean and std of each metric over cases: ``{"dsc": {"mean", "std", "n"}, ...}``.

    NaN (both masks empty) is left out; inf (HD/ASSD with an empty mask) is left out of mean/std and
    counted in ``"n_inf"``. std is the population std (ddof=0); NaN when no finite values remain.
    """
    out = {}
    for key in COLUMNS[1:]:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        out[key] = {
            "mean": float(finite.mean()) if finite.size else math.nan,
            "std": float(finite.std()) if finite.size else math.nan,
            "n": int(finite.size),
            "n_inf": int(np.isinf(vals).sum()),
        }
    return out
