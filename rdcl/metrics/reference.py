"""Pure numpy/scipy surface distances: the test oracle and the fallback without the extension.

Same definitions as the C++/CUDA engine (``csrc/surface/surface.h``) and as
google-deepmind/surface-distance's ``compute_surface_distances``; see :mod:`rdcl.metrics.surface`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from rdcl.metrics.tables import corner_area_table_3d, corner_length_table_2d, neighbour_codes


def _bbox_crop(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    union = pred | gt
    if not union.any():
        return None
    sl = []
    for axis in range(union.ndim):
        proj = union.any(axis=tuple(a for a in range(union.ndim) if a != axis))
        idx = np.nonzero(proj)[0]
        sl.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return pred[tuple(sl)], gt[tuple(sl)]


def _surface(mask: np.ndarray, spacing: Sequence[float], boundary: str):
    """(border bool map on the processing grid, weight map) of one cropped mask."""
    if boundary == "voxel":
        border = mask & ~ndimage.binary_erosion(mask, border_value=0)
        return border, np.ones(mask.shape)
    codes = neighbour_codes(mask)
    if mask.ndim == 3:
        table, full = corner_area_table_3d(spacing), 255
    else:
        table, full = corner_length_table_2d(spacing), 15
    return (codes != 0) & (codes != full), table[codes]


def _direction(border_a, area_a, border_b, spacing) -> tuple[np.ndarray, np.ndarray]:
    if border_b.any():
        dist = ndimage.distance_transform_edt(~border_b, sampling=spacing)[border_a]
    else:
        dist = np.full(int(border_a.sum()), np.inf)
    area = area_a[border_a]
    order = np.lexsort((area, dist))
    return dist[order].astype(np.float64), area[order].astype(np.float64)


def surface_distances_reference(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], boundary: str = "corner"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (dist_gt_to_pred, area_gt, dist_pred_to_gt, area_pred), float64, mm / mm^2.

    pred, gt: bool arrays of the same 2D/3D shape; spacing in mm, array axis order.
    """
    spacing = tuple(float(s) for s in spacing)
    cropped = _bbox_crop(pred, gt)
    if cropped is None:
        empty = np.zeros(0)
        return empty, empty.copy(), empty.copy(), empty.copy()
    p, g = cropped
    border_g, area_g = _surface(g, spacing, boundary)
    border_p, area_p = _surface(p, spacing, boundary)
    d_g, a_g = _direction(border_g, area_g, border_p, spacing)
    d_p, a_p = _direction(border_p, area_p, border_g, spacing)
    return d_g, a_g, d_p, a_p
