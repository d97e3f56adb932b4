"""The check ``rdcl export`` runs before it reports success: exported vs eager predictor.

The check input is a real image file when one is given, else a synthetic chest CT phantom
(:mod:`rdcl.data.synth`, HU) at a spacing that differs from the training spacing, so that the
resampling path runs. Criterion: masks equal, or, where resampling happened, Dice >= 0.999.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rdcl.config import LUNG_WINDOW
from rdcl.data.io import Geometry, read_image
from rdcl.data.preprocessing.resample import target_shape
from rdcl.data.synth import default_spacing, synthesize_phantom
from rdcl.formats.exported import training_spacing

MIN_DICE = 0.999
"""Smallest Dice accepted where the exported and eager resampling paths ran."""


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one comparison (``message`` is the line ``rdcl export`` prints)."""

    passed: bool
    equal: bool
    dice: float
    resampled: bool
    max_prob_diff: float
    lesion_voxels: int
    message: str


def check_input(predictor: Any, path: str | Path | None = None) -> tuple[np.ndarray, Geometry, str]:
    """``(image, geometry, description)``: the file at ``path``, else a synthetic phantom.

    The phantom is 1.5x the patch per axis (at least 32 in-plane, 4 slices) at 1.25x the
    training spacing (or the synthetic default spacing when training did not resample).
    """
    if path is not None:
        image, geometry = read_image(path)
        return image, geometry, str(path)

    cfg = predictor.config
    patch = tuple(cfg.data.patch_size)
    shape = [max(round(1.5 * p), 32) for p in patch]
    if len(shape) == 3:
        shape[0] = max(shape[0], 4)
    shape_t = tuple(shape)
    ts = training_spacing(cfg)
    if ts:
        spacing = tuple(round(1.25 * t, 4) for t in ts)
    else:
        spacing = default_spacing(shape_t)
    phantom = synthesize_phantom("covid", shape_t, spacing, np.random.default_rng(0))
    image = phantom.image
    if predictor.training_window[0] >= 0.0:  # a model trained on 0..255 data: a windowed input
        lo, hi = LUNG_WINDOW
        image = (np.clip(image, lo, hi) - lo) / (hi - lo) * predictor.training_window[1]
    geometry = Geometry.default(len(shape_t), spacing)
    desc = f"synthetic phantom {shape_t} @ {tuple(float(s) for s in spacing)} mm"
    return image, geometry, desc


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks (1.0 when both are empty)."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def compare(
    predictor: Any,
    run_exported: Callable[[np.ndarray, Geometry], np.ndarray],
    image: np.ndarray,
    geometry: Geometry,
    description: str,
    *,
    what: str = "exported",
) -> CheckResult:
    """Run the eager predictor and ``run_exported`` (-> probabilities) on the same input."""
    p_eager = predictor.predict_probabilities(image, geometry)
    p_export = np.asarray(run_exported(image, geometry), dtype=np.float32)
    if p_export.shape != p_eager.shape:
        raise ValueError(
            f"{what} predictor returned shape {p_export.shape}, expected {p_eager.shape}"
        )
    m_eager, m_export = p_eager > 0.5, p_export > 0.5
    equal = bool(np.array_equal(m_eager, m_export))
    d = dice(m_eager, m_export)
    ts = training_spacing(predictor.config)
    resampled = tuple(target_shape(image.shape, geometry.spacing, ts)) != tuple(image.shape)
    diff = float(np.abs(p_eager - p_export).max())
    voxels = int(m_eager.sum())
    head = f"check: {what} vs eager predictor on {description}: "
    tail = f" ({voxels} lesion voxels; max probability difference {diff:.2g})"
    if equal:
        passed, verdict = True, "masks equal"
    elif resampled and d >= MIN_DICE:
        passed, verdict = True, f"Dice {d:.5f} >= {MIN_DICE} (resampling ran; masks differ)"
    else:
        need = f"Dice >= {MIN_DICE}" if resampled else "equal masks (no resampling ran)"
        passed, verdict = False, f"FAILED: Dice {d:.5f}, expected {need}"
    return CheckResult(passed, equal, d, resampled, diff, voxels, head + verdict + tail)
