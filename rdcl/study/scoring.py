"""Score one trained run on a fold's test cases: predict each case as ``rdcl predict`` does, write
the mask, and compute DSC and NSD against the case's label (mapped to 0/1 by the dataset loader).

Each test case is preprocessed with its own intensity window (COVID-19-CT-Seg mixes HU
coronacases with radiopaedia volumes scaled to [0, 255]), as training's preprocessing does.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rdcl.data.datasets.layout import load_case
from rdcl.data.datasets.subset import select_cases
from rdcl.data.io import write_image
from rdcl.errors import DatasetError
from rdcl.fsutil import write_text_atomic
from rdcl.inference.predictor import Predictor
from rdcl.metrics import dice, surface_distances

if TYPE_CHECKING:
    from rdcl.data.datasets.spec import DatasetSpec

logger = logging.getLogger(__name__)

SCORE_FIELDS = ("case", "dsc", "nsd")
"""Columns of a run's ``scores.csv``."""


def score_run(
    checkpoint: str | Path,
    spec: DatasetSpec,
    test_names: Sequence[str],
    pred_dir: str | Path,
    scores_csv: str | Path,
    *,
    tolerance_mm: float = 3.0,
    device: str = "cpu",
) -> list[dict]:
    """Predict the cases ``test_names`` of dataset ``spec`` with ``checkpoint`` and score them.

    Writes ``pred_dir/<case>.nii.gz`` (uint8 0/1, the case's geometry) and then, last and
    atomically, ``scores_csv`` (columns :data:`SCORE_FIELDS`; its presence marks the run as
    scored). Returns the rows ``{"case", "dsc", "nsd"}``; DSC/NSD are NaN when both masks are
    empty (rdcl.metrics' convention). Raises DatasetError for an unknown case name.
    """
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    trained_window = predictor.window
    pred_dir = Path(pred_dir)
    pred_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in select_cases(spec, test_names).cases:
        image, label, geometry = load_case(case)
        if label is None:
            raise DatasetError(f"test case {case.name} has no label; expected a labelled case")
        predictor.window = case.window if case.window is not None else trained_window
        mask = predictor.predict_array(image, geometry)
        write_image(mask, geometry, pred_dir / f"{case.name}.nii.gz", overwrite=True)
        p, g = mask != 0, label != 0
        nsd = surface_distances(p, g, geometry.spacing).surface_dice(tolerance_mm)
        rows.append({"case": case.name, "dsc": float(dice(p, g)), "nsd": float(nsd)})
        logger.debug("%s: DSC %.4f NSD %.4f", case.name, rows[-1]["dsc"], rows[-1]["nsd"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SCORE_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    write_text_atomic(scores_csv, buf.getvalue())
    return rows


def read_scores(path: str | Path) -> list[dict]:
    """Rows of a ``scores.csv`` written by :func:`score_run` (floats parsed; 'nan' -> NaN)."""
    with open(path, newline="") as fh:
        return [
            {"case": r["case"], "dsc": float(r["dsc"]), "nsd": float(r["nsd"])}
            for r in csv.DictReader(fh)
        ]
