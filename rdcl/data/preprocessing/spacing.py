"""The training grid: nnU-Net's rule for the target spacing (``data.target_spacing: auto``).

:func:`nnunet_target_spacing` takes the per-axis median of the training cases' voxel spacings.
When the data are anisotropic, i.e. the coarsest axis of that median is more than
:data:`ANISOTROPY_THRESHOLD` times the finest other axis AND that axis has fewer than a third of
the voxels of the smallest other axis (median shapes), the coarse axis uses the 10th percentile of
its spacings instead, but never less than the other axes' largest spacing (plus 1e-5 mm), as
nnU-Net's full-resolution plan does (Isensee et al., Nature Methods 2021). Spacings and shapes are
in array order ((z, y, x) or (y, x)), spacings in mm.

:func:`dataset_target_spacing` applies it to datasets, reading only the image headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rdcl.data import io
from rdcl.data.datasets.layout import declared_geometry, load_case
from rdcl.errors import DatasetError

ANISOTROPY_THRESHOLD = 3.0
"""Coarsest / finest-other spacing ratio above which nnU-Net treats the data as anisotropic."""

__all__ = ["ANISOTROPY_THRESHOLD", "case_grid", "dataset_target_spacing", "nnunet_target_spacing"]


def nnunet_target_spacing(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]]
) -> tuple[float, ...]:
    """nnU-Net's target spacing (mm) for cases with these ``spacings`` and ``shapes``.

    Args:
        spacings: (N, D) voxel spacings in mm, one row per case.
        shapes: (N, D) voxel counts in the same order.

    Returns:
        D target spacings in mm (array order).

    Raises:
        ValueError: no cases, mixed dimensionality, or non-positive/non-finite spacings.
    """
    sp = np.asarray(spacings, dtype=np.float64)
    sz = np.asarray(shapes, dtype=np.float64)
    if sp.ndim != 2 or sp.shape[0] == 0 or sz.shape != sp.shape:
        raise DatasetError(
            f"expected (N, D) spacings and shapes for N >= 1 cases, found {sp.shape} and {sz.shape}"
        )
    if not np.all(np.isfinite(sp) & (sp > 0)):
        raise DatasetError("expected positive finite voxel spacings in the training set")
    target = np.percentile(sp, 50, axis=0)
    if sp.shape[1] < 2:
        return tuple(float(t) for t in target)
    size = np.percentile(sz, 50, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(sp.shape[1]) if i != worst]
    other_spacing = max(float(target[i]) for i in others)
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * other_spacing
    aniso_voxels = size[worst] * ANISOTROPY_THRESHOLD < min(float(size[i]) for i in others)
    if aniso_spacing and aniso_voxels:
        coarse = float(np.percentile(sp[:, worst], 10))
        if coarse < other_spacing:
            coarse = max(other_spacing, coarse) + 1e-5
        target[worst] = coarse
    return tuple(float(t) for t in target)


def case_grid(case: Any) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(shape, spacing)`` of one case's image, from its header where the format has one."""
    if case.slice_index is None and case.image.is_file():
        try:
            shape, geom = io.read_info(case.image)
            return tuple(shape), tuple(declared_geometry(case, geom).spacing)
        except io.ImageReadError:
            pass  # load_case below reports the problem in its own words
    image, _, geom = load_case(case)
    return tuple(image.shape), tuple(geom.spacing)


def dataset_target_spacing(specs: Sequence[Any], dim: int) -> tuple[float, ...]:
    """nnU-Net's target spacing over every case of ``specs`` (``DatasetSpec``), for a network
    of ``dim`` spatial dimensions: a 2D network on volumes gets the in-plane (y, x) median.

    Raises:
        ValueError: no cases, or a dataset with fewer dimensions than ``dim``.
    """
    grids = [case_grid(c) for spec in specs for c in spec.cases]
    if not grids:
        raise DatasetError("cannot compute data.target_spacing 'auto': the datasets hold no cases")
    ndims = {len(s) for s, _ in grids}
    if min(ndims) < dim:
        raise DatasetError(f"a {dim}D network needs {dim}D (or 3D) data, found {min(ndims)}D cases")
    shapes = [s[-dim:] for s, _ in grids]
    spacings = [sp[-dim:] for _, sp in grids]
    if dim == 2 and max(ndims) == 3:  # slices of volumes: in-plane median only
        med = np.percentile(np.asarray(spacings, dtype=np.float64), 50, axis=0)
        return tuple(float(t) for t in med)
    return nnunet_target_spacing(spacings, shapes)
