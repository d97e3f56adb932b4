"""Prediction vs ground truth over a CT slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from rdcl.config import LUNG_WINDOW
from rdcl.errors import RdclInputError

from ._files import save_figure_atomic

# RGBA fills: both (true positive), ground truth only (missed), prediction only (false positive).
_TP = (1.0, 0.85, 0.0, 0.45)
_FN = (0.0, 0.8, 0.2, 0.45)
_FP = (1.0, 0.1, 0.1, 0.45)


def lesion_slice(gt: np.ndarray, pred: np.ndarray | None = None) -> int:
    """Index along axis 0 (z) of the slice with the most ground-truth lesion voxels.

    Falls back to the prediction when the ground truth is empty, and to the middle slice when both
    are empty; ties go to the lowest index. ``gt``/``pred``: (z, y, x), nonzero = lesion.
    """
    gt = np.asarray(gt)
    if gt.ndim != 3:
        raise RdclInputError(f"expected a (z, y, x) mask, found shape {gt.shape}")
    for mask in (gt, pred):
        if mask is None:
            continue
        counts = (np.asarray(mask) != 0).reshape(gt.shape[0], -1).sum(axis=1)
        if counts.max() > 0:
            return int(np.argmax(counts))
    return gt.shape[0] // 2


def window_image(image: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Map intensities to [0, 1] for display.

    ``window`` = (low, high) in the image's units (HU for CT, e.g. the lung window (-1250, 250));
    ``None`` uses the image's own 0.5/99.5 percentiles. Values outside are clipped.
    """
    image = np.asarray(image, dtype=np.float64)
    lo, hi = window if window is not None else np.percentile(image, (0.5, 99.5))
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def _draw_contour(ax, mask: np.ndarray, color: str) -> None:
    if mask.any() and not mask.all():
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[color], linewidths=1.0)


def plot_overlays(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    path: str | Path,
    *,
    title: str,
    window: tuple[float, float] | None = LUNG_WINDOW,
    spacing: tuple[float, ...] | None = None,
) -> Path:
    """Two panels, the windowed CT slice and the same slice with prediction vs ground truth.

    Args:
        image: (z, y, x) volume or (y, x) slice, in HU (or the units of ``window``).
        gt, pred: masks of the same shape as ``image``, nonzero = lesion.
        path: output ``.png`` (written atomically).
        title: figure title (e.g. the method and case name).
        window: display window (low, high); ``None`` for the image's 0.5/99.5 percentiles.
        spacing: voxel size in mm in array order; sets the in-plane aspect ratio when given.

    For a volume the axial slice with the most ground-truth lesion is shown (:func:`lesion_slice`).
    Fills: yellow = both, green = ground truth only (missed), red = prediction only (false
    positive); contours: green = ground truth, red = prediction. Returns ``path``.
    """
    image, gt, pred = np.asarray(image), np.asarray(gt) != 0, np.asarray(pred) != 0
    if image.ndim not in (2, 3) or gt.shape != image.shape or pred.shape != image.shape:
        raise RdclInputError(
            f"expected image, gt and pred of one 2D/3D shape, found {image.shape}, {gt.shape}, "
            f"{pred.shape}"
        )
    where = ""
    if image.ndim == 3:
        z = lesion_slice(gt, pred)
        image, gt, pred = image[z], gt[z], pred[z]
        where = f"axial slice z={z}"
    aspect = 1.0 if spacing is None else float(spacing[-2]) / float(spacing[-1])
    shown = window_image(image, window)
    fill = np.zeros((*gt.shape, 4))
    fill[gt & pred] = _TP
    fill[gt & ~pred] = _FN
    fill[~gt & pred] = _FP

    fig = Figure(figsize=(9.0, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax in axes:
        ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, aspect=aspect, interpolation="nearest")
        ax.set_axis_off()
    axes[0].set_title(f"CT ({where})" if where else "CT")
    axes[1].imshow(fill, aspect=aspect, interpolation="nearest")
    _draw_contour(axes[1], gt, "lime")
    _draw_contour(axes[1], pred, "red")
    axes[1].set_title(f"GT {int(gt.sum())} px, prediction {int(pred.sum())} px")
    axes[1].legend(
        handles=[
            Patch(color=_TP, label="both"),
            Patch(color=_FN, label="missed (GT only)"),
            Patch(color=_FP, label="false positive"),
        ],
        loc="lower right",
        fontsize=7,
        framealpha=0.7,
    )
    fig.suptitle(title)
    return save_figure_atomic(fig, path)
