"""Resampling of images and binary masks between voxel grids (pure numpy/scipy helpers).

:func:`scipy.ndimage.zoom` with ``grid_mode=True`` keeps the outer voxel edges aligned, as a
physical resize does: order-3 splines for images; for {0, 1} masks either nearest neighbour or
linear interpolation thresholded at 0.5 (the binary case of nnU-Net's scheme). Shapes are in array
order ((z, y, x) or (y, x)), spacings in mm in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from rdcl.errors import RdclInputError


def target_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float] | None
) -> tuple[int, ...]:
    """Shape after resampling ``shape`` (voxels at ``spacing`` mm) to ``target_spacing`` mm.

    ``round(shape * spacing / target)`` per axis, at least 1. A target with one entry fewer than
    ``shape`` resamples in-plane only (the last axes; e.g. a 2D spacing on 3D volumes).
    """
    shape = tuple(int(s) for s in shape)
    if target_spacing is None:
        return shape
    target = tuple(float(t) for t in target_spacing)
    if not all(math.isfinite(t) and t > 0 for t in target):
        raise RdclInputError(f"target spacing {target} must be positive mm")
    if len(target) == len(shape) - 1:
        target = (float(spacing[0]), *target)
    if len(target) != len(shape) or len(spacing) != len(shape):
        raise RdclInputError(
            f"target spacing {tuple(target_spacing)} does not fit an image of shape {shape} "
            f"and spacing {tuple(spacing)}"
        )
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))


def resample_image(image: np.ndarray, shape: Sequence[int], *, order: int = 3) -> np.ndarray:
    """Spline-resample ``image`` (``(*spatial)`` or ``(C, *spatial)``) to ``shape`` (spatial)."""
    image = np.asarray(image, dtype=np.float32)
    shape = tuple(int(s) for s in shape)
    if image.ndim == len(shape) + 1:
        return np.stack([resample_image(c, shape, order=order) for c in image])
    if image.shape == shape:
        return image.copy()
    zoom = [n / o for n, o in zip(shape, image.shape, strict=True)]
    out = ndimage.zoom(image, zoom, order=order, mode="nearest", grid_mode=True)
    return out.astype(np.float32)


def resample_label(label: np.ndarray, shape: Sequence[int], *, mode: str = "linear") -> np.ndarray:
    """Resample a {0, 1} mask to ``shape``: ``"linear"`` (interpolate, then >= 0.5) or
    ``"nearest"``. Returns uint8 {0, 1}."""
    shape = tuple(int(s) for s in shape)
    label = np.asarray(label)
    if label.shape == shape:
        return (label > 0).astype(np.uint8)
    if mode not in ("linear", "nearest"):
        raise RdclInputError(f"label resampling mode must be 'linear' or 'nearest', found {mode!r}")
    zoom = [n / o for n, o in zip(shape, label.shape, strict=True)]
    order = 1 if mode == "linear" else 0
    out = ndimage.zoom(
        (label > 0).astype(np.float32), zoom, order=order, mode="nearest", grid_mode=True
    )
    return (out >= 0.5).astype(np.uint8)
