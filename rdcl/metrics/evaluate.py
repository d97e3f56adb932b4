"""Evaluate a folder (or file) of predictions against labels: per-case metrics, CSV and summary."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdcl.data.datasets import published
from rdcl.data.io import (
    CHANNEL_SUFFIX,
    drop_channel_suffix,
    is_image_file,
    read_image,
    strip_suffix,
)
from rdcl.errors import RdclInputError
from rdcl.fsutil import write_text_atomic
from rdcl.metrics.surface import dice, surface_distances
from rdcl.progress import progress_bar

logger = logging.getLogger(__name__)

METRICS = ("dsc", "nsd", "hd95", "assd")
"""The per-case metrics in table order (the one list the rows, the CSV, :func:`summarize` and
``rdcl evaluate``'s table use): Dice, normalised surface Dice at the tolerance, 95th-percentile
Hausdorff distance (mm) and average symmetric surface distance (mm)."""

COLUMNS = ("case", *METRICS)
"""Per-case columns (rows and CSV)."""

CSV_COLUMNS = (*COLUMNS, "missing")
"""CSV columns: the metrics plus ``missing`` (1 when the case had no prediction and was scored as
an empty mask under ``allow_missing``, else 0)."""

GEOMETRY_ATOL = 1e-3
"""Largest spacing/origin (mm) and direction difference between a prediction and its label: the
tolerance with which :func:`rdcl.data.datasets.layout.load_case` pairs an image with its label."""


def _case_key(path: Path) -> str:
    """Case name of a file: suffix stripped, nnU-Net channel suffix ``_0000`` tolerated."""
    return drop_channel_suffix(strip_suffix(path))


def _alias(path: Path) -> str:
    """Case key of a published layout: COVID-19-CT-Seg image names mapped to their mask names,
    then the im/mask/label tokens dropped (``tr_im_0001`` and ``tr_mask_0001`` -> ``tr_0001``),
    as :mod:`rdcl.data.datasets.published` pairs images with masks."""
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


def _candidates(g: Path, preds: list[Path], aliases: dict[str, list[Path]]) -> list[Path]:
    """The predictions that name the label ``g``'s case: ``CASE.*`` and ``CASE_0000.*``, or else
    the ones with the same published-layout key."""
    case = strip_suffix(g)
    direct = [p for p in preds if strip_suffix(p) in (case, case + CHANNEL_SUFFIX)]
    if direct:
        return direct
    return aliases.get(_alias(g), []) if _alias(g) else []


def match_cases(
    pred: Path, gt: Path, *, allow_missing: bool = False
) -> list[tuple[str, Path | None, Path]]:
    """(case, pred_file, gt_file) for every label, sorted by case.

    A label ``CASE.*`` takes the prediction ``CASE.*`` or ``CASE_0000.*``, else the one
    prediction with the same published-layout key (``tr_im_0001.png`` for ``tr_mask_0001.png``,
    ``coronacases_org_001.nii.gz`` for ``coronacases_001.nii.gz``). The case is the label's name.
    Raises ValueError (one line) when a label has more than one matching prediction (e.g. both
    ``x.nii.gz`` and ``x_0000.nii.gz``), when one prediction matches several labels, when no label
    has a prediction, and when some have none unless ``allow_missing`` (those get
    ``pred_file=None``, to be scored as an empty mask).
    """
    preds, gts = _files(Path(pred)), _files(Path(gt))
    if Path(pred).is_file() and Path(gt).is_file():
        return [(_case_key(Path(gt)), Path(pred), Path(gt))]
    aliases: dict[str, list[Path]] = {}
    for p in preds:
        aliases.setdefault(_alias(p), []).append(p)
    matched: list[tuple[str, Path | None, Path]] = []
    missing: list[str] = []
    used: dict[Path, str] = {}
    for g in gts:
        case = strip_suffix(g)
        found = _candidates(g, preds, aliases)
        if len(found) > 1:
            names = ", ".join(p.name for p in found[:4])
            raise RdclInputError(
                f"case {case}: expected one prediction in {pred}, found {len(found)} ({names}); "
                "remove all but one"
            )
        if not found:
            missing.append(case)
            matched.append((case, None, g))
            continue
        if found[0] in used:
            raise RdclInputError(
                f"prediction {found[0].name} matches both labels {used[found[0]]} and {case}; "
                "expected one prediction per label"
            )
        used[found[0]] = case
        matched.append((case, found[0], g))
    if not used:
        raise RdclInputError(
            f"expected prediction and label files with matching case names, found none "
            f"({len(preds)} in {pred}, {len(gts)} in {gt})"
        )
    if missing and not allow_missing:
        shown = ", ".join(sorted(missing)[:5]) + (", ..." if len(missing) > 5 else "")
        raise RdclInputError(
            f"expected a prediction for every label, found none for {len(missing)} of "
            f"{len(gts)} cases ({shown}) in {pred}; pass --allow-missing (allow_missing=True) "
            "to score them as empty masks"
        )
    for case in sorted(missing):
        logger.info("no prediction for case %s: scored as an empty mask", case)
    return sorted(matched, key=lambda m: m[0])


def evaluate_case(
    pred_file: Path | None,
    gt_file: Path,
    *,
    tolerance_mm: float = 3.0,
    device: str = "cpu",
    threads: int | None = None,
) -> dict:
    """DSC, NSD@tau, HD95 (mm) and ASSD (mm) of one case; foreground is any non-zero label.

    ``pred_file=None`` scores an empty prediction (a missing case under ``allow_missing``)."""
    _check_threads(threads)
    gt, gg = read_image(gt_file)
    pred, pg = (np.zeros_like(gt), gg) if pred_file is None else read_image(pred_file)
    if pred.shape != gt.shape or not pg.matches(gg, atol=GEOMETRY_ATOL):
        raise RdclInputError(
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


def _check_threads(threads: int | None) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
        raise RdclInputError(f"threads must be an integer >= 1 or None, found {threads!r}")
    if threads is not None and threads < 1:
        raise RdclInputError(f"threads must be >= 1 (or None for all cores), found {threads}")


def _check_csv_folder(path: Path) -> None:
    """Refuse, before any scoring, a CSV path whose folder cannot be made or written: the
    nearest existing folder on its path must be a folder this process may write in."""
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise NotADirectoryError(f"--csv folder {parent} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--csv folder {parent}: permission denied in {existing}")


def _write_csv(rows: Sequence[dict], path: Path) -> None:
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(
        {**{k: r[k] for k in COLUMNS}, "missing": int(bool(r.get("missing")))} for r in rows
    )
    write_text_atomic(path, buf.getvalue())


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
    allow_missing: bool = False,
) -> list[dict]:
    """Per-case rows ``{"case", "dsc", "nsd", "hd95", "assd", "missing"}``, one per label.

    Cases are matched by :func:`match_cases` (file name without suffix; ``case_0000`` matches
    ``case``): a label without a prediction, or with two, raises ValueError, unless
    ``allow_missing``, which scores a missing prediction as an empty mask (``"missing": True``).
    Geometry must agree (ValueError otherwise). ``threads`` (CPU surface engine) is None (all
    cores) or >= 1. With ``csv_path`` the rows are written atomically; an existing file raises
    FileExistsError unless ``overwrite``, a folder IsADirectoryError, a parent folder that
    cannot be made (a file on its path, no write permission) NotADirectoryError or
    PermissionError, and a ``tolerance_mm`` that is not a finite distance >= 0 RdclInputError,
    before any work (missing parent folders are made when the CSV is written). Empty-mask values
    follow rdcl.metrics.
    ``progress=False`` hides the progress bar.
    """
    _check_threads(threads)
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise RdclInputError(
            f"tolerance_mm (--tolerance) must be a finite distance >= 0 mm, found {tolerance_mm}"
        )
    if csv_path is not None and Path(csv_path).is_dir():
        raise IsADirectoryError(f"--csv must be a file path, found a folder: {csv_path}")
    if csv_path is not None and Path(csv_path).exists() and not overwrite:
        raise FileExistsError(
            f"CSV exists (pass --overwrite, overwrite=True, to replace it): {csv_path}"
        )
    if csv_path is not None:
        _check_csv_folder(Path(csv_path))
    rows = []
    cases = match_cases(Path(pred_dir_or_file), Path(gt_dir_or_file), allow_missing=allow_missing)
    bar = progress_bar(cases, desc="evaluate", unit="cases", disable=not progress or len(cases) < 2)
    for case, pf, gf in bar:
        row: dict = {"case": case, "missing": pf is None}
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
    for key in METRICS:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        out[key] = {
            "mean": float(finite.mean()) if finite.size else math.nan,
            "std": float(finite.std()) if finite.size else math.nan,
            "n": int(finite.size),
            "n_inf": int(np.isinf(vals).sum()),
        }
    return out


def metric_labels(tolerance_mm: float) -> dict[str, str]:
    """Headings of :data:`METRICS` in a printed table: ``{"dsc": "DSC", "nsd": "NSD@3mm", ...}``
    (``tolerance_mm`` is the NSD tolerance in mm)."""
    return {"dsc": "DSC", "nsd": f"NSD@{tolerance_mm:g}mm", "hd95": "HD95_mm", "assd": "ASSD_mm"}


def format_results(rows: Sequence[dict], *, tolerance_mm: float) -> str:
    """The table ``rdcl evaluate`` prints: a tab-separated line per case (:data:`METRICS`, 4
    decimals; a case scored under ``allow_missing`` is marked), then mean +- std per metric
    (:func:`summarize`) and the number of cases without a prediction."""
    labels = metric_labels(tolerance_mm)
    lines = ["\t".join(["case", *(labels[k] for k in METRICS)])]
    for row in rows:
        values = "\t".join(f"{row[k]:.4f}" for k in METRICS)
        note = "\tno prediction: scored as an empty mask" if row.get("missing") else ""
        lines.append(f"{row['case']}\t{values}{note}")
    summary = summarize(rows)
    for key in METRICS:
        s = summary[key]
        extra = f", {s['n_inf']} infinite left out" if s.get("n_inf") else ""
        lines.append(f"{labels[key]}: mean {s['mean']:.4f} +- {s['std']:.4f} (n={s['n']}{extra})")
    n_missing = sum(bool(r.get("missing")) for r in rows)
    if n_missing:
        lines.append(
            f"{n_missing} of {len(rows)} cases had no prediction and were scored as empty masks "
            "(--allow-missing)"
        )
    return "\n".join(lines) + "\n"
