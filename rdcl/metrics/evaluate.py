"""Evaluate a folder (or file) of predictions against labels: per-case metrics, CSV and summary."""

from __future__ import annotations

import csv
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rdcl.data.io import is_image_file, read_image, strip_suffix
from rdcl.metrics.surface import dice, surface_distances

logger = logging.getLogger(__name__)

COLUMNS = ("case", "dsc", "nsd", "hd95", "assd")


def _case_key(path: Path) -> str:
    """Case name of a file: suffix stripped, nnU-Net channel suffix ``_0000`` tolerated."""
    name = strip_suffix(path)
    if len(name) > 5 and name.endswith("_0000"):
        name = name[:-5]
    return name


def _files(path: Path) -> dict[str, Path]:
    if path.is_file():
        return {_case_key(path): path}
    if not path.is_dir():
        raise FileNotFoundError(f"expected a file or folder of images, found nothing at {path}")
    return {_case_key(p): p for p in sorted(path.iterdir()) if is_image_file(p)}


def match_cases(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """(case, pred_file, gt_file) for every case present in both; raises if none match."""
    preds, gts = _files(Path(pred)), _files(Path(gt))
    if Path(pred).is_file() and Path(gt).is_file():
        return [(next(iter(gts)), Path(pred), Path(gt))]
    common = sorted(set(preds) & set(gts))
    if not common:
        raise ValueError(
            f"expected prediction and label files with matching case names, found none "
            f"({len(preds)} in {pred}, {len(gts)} in {gt})"
        )
    for name in sorted(set(gts) - set(preds)):
        logger.warning("no prediction for case %s", name)
    return [(c, preds[c], gts[c]) for c in common]


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
    if pred.shape != gt.shape or not pg.matches(gg):
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
    from tqdm import tqdm

    if csv_path is not None and Path(csv_path).exists() and not overwrite:
        raise FileExistsError(f"expected no file at {csv_path} (pass overwrite=True), found one")
    rows = []
    cases = match_cases(Path(pred_dir_or_file), Path(gt_dir_or_file))
    bar = tqdm(cases, desc="evaluate", unit="case", disable=not progress or len(cases) < 2)
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
