"""The rotated/scaled patch's sample points and interpolated label, computed the plain way
(scipy on the whole volume, float64): the reference the spatial augmentation tests compare with."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def patch_points(start, patch, angle: float, scale: float) -> np.ndarray:
    """Volume coordinates ``(dim, prod(patch))`` (float64) of the patch's voxels, rotated by
    ``angle`` in the (y, x) plane and scaled by ``scale`` about the patch centre."""
    dim = len(patch)
    grid = np.indices(patch, dtype=np.float64).reshape(dim, -1)
    half = (np.asarray(patch, dtype=np.float64) - 1) / 2
    off = (grid - half[:, None]) / scale
    c, s = math.cos(angle), math.sin(angle)
    y, x = off[-2].copy(), off[-1].copy()
    off[-2], off[-1] = c * y - s * x, s * y + c * x
    return off + (np.asarray(start, dtype=np.float64) + half)[:, None]


def label_value(label, start, patch, angle: float, scale: float) -> np.ndarray:
    """The interpolated label before thresholding, ``(*patch)`` float64."""
    coords = patch_points(start, patch, angle, scale)
    value = ndimage.map_coordinates(label.astype(np.float64), coords, order=1, mode="constant")
    return value.reshape(patch)
