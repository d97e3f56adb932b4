"""Sampling grids, smooth random fields and tube rendering for the synthetic phantoms.

Everything works on a 3D grid (nz, ny, nx); a 2D phantom is a grid with nz = 1 whose single slice
sits at a chosen craniocaudal position, so 2D cases are axial slices of the same 3D anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Grid:
    """Voxel grid of one phantom in physical units.

    shape: (nz, ny, nx), nz = 1 for a 2D slice. spacing: (sz, sy, sx) in mm.
    z, y, x: open coordinate arrays in mm, shapes (nz, 1, 1), (1, ny, 1), (1, 1, nx); y and x are
    zero at the grid centre, z runs from the lung-base end (z = t * length).
    t: (nz, 1, 1) craniocaudal fraction in [0, 1] (0 inferior, 1 superior).
    length: craniocaudal extent of the anatomy in mm.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    t: np.ndarray
    length: float

    @classmethod
    def make(
        cls,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        *,
        length: float,
        t_slice: float | None = None,
    ) -> Grid:
        """Build the grid; ``t_slice`` places the single slice of a 2D grid (nz must be 1)."""
        nz, ny, nx = shape
        if t_slice is None:
            t = (np.arange(nz, dtype=np.float32) + 0.5) / nz
        else:
            t = np.full(1, t_slice, dtype=np.float32)
        y = (np.arange(ny, dtype=np.float32) - (ny - 1) / 2) * spacing[1]
        x = (np.arange(nx, dtype=np.float32) - (nx - 1) / 2) * spacing[2]
        return cls(
            shape=shape,
            spacing=spacing,
            z=(t * length)[:, None, None],
            y=y[None, :, None],
            x=x[None, None, :],
            t=t[:, None, None],
            length=length,
        )

    @property
    def is_slice(self) -> bool:
        """True for a single-slice (2D) grid."""
        return self.shape[0] == 1

    @property
    def inplane(self) -> float:
        """Finest in-plane spacing in mm."""
        return min(self.spacing[1], self.spacing[2])

    def voxels(self, mm: float) -> tuple[float, float, float]:
        """A length of ``mm`` in voxels per axis (0 along z of a single slice)."""
        sz = 0.0 if self.is_slice else mm / self.spacing[0]
        return (sz, mm / self.spacing[1], mm / self.spacing[2])

    def coords(self, index: tuple[np.ndarray, ...]) -> np.ndarray:
        """(N, 3) physical (z, y, x) mm of voxel indices ``index`` (as from ``np.nonzero``)."""
        return np.stack(
            [self.z.ravel()[index[0]], self.y.ravel()[index[1]], self.x.ravel()[index[2]]], axis=1
        )


def _upsample(field: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Linear interpolation of ``field`` to ``n`` samples along ``axis``, end nodes aligned."""
    m = field.shape[axis]
    if m == n:
        return field
    pos = np.linspace(0.0, m - 1, n)
    lo = np.minimum(np.floor(pos).astype(np.intp), m - 2)
    shape = [1] * field.ndim
    shape[axis] = n
    frac = (pos - lo).astype(np.float32).reshape(shape)
    a = np.take(field, lo, axis=axis)
    return a + frac * (np.take(field, lo + 1, axis=axis) - a)


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], corr: tuple[float, ...]
) -> np.ndarray:
    """Smooth Gaussian random field, float32 ``shape``, mean ~0 and std 1.

    ``corr`` is the correlation length per axis in voxels (an axis of size 1 is not smoothed).
    Short correlations (all <= 3 voxels) blur white noise directly; longer ones are made on a
    coarse lattice (about two nodes per correlation length), blurred there and upsampled
    separably by linear interpolation, which costs a few operations per voxel.
    """
    if all(c <= 3.0 or n == 1 for n, c in zip(shape, corr, strict=True)):
        field = rng.standard_normal(shape).astype(np.float32)
        sigma = [0.0 if n == 1 else max(c, 1.0) / 2 for n, c in zip(shape, corr, strict=True)]
        field = ndimage.gaussian_filter(field, sigma, mode="wrap")
    else:
        coarse = tuple(
            1 if n == 1 else max(2, min(n, int(np.ceil(2 * n / max(c, 1.0))) + 2))
            for n, c in zip(shape, corr, strict=True)
        )
        field = rng.standard_normal(coarse).astype(np.float32)
        field = ndimage.gaussian_filter(
            field, [0.0 if m == 1 else 0.8 for m in coarse], mode="wrap"
        )
        for axis in reversed(range(len(shape))):
            field = _upsample(field, axis, shape[axis])
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 0 else field


def segment_distance(grid: Grid, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance (mm) to the nearest of a few tube centrelines and the radius (mm) there.

    ``segments`` as in :func:`render_tubes`; costs one pass over the grid per segment, so use it
    for a handful of segments (airways) and :func:`render_tubes` for trees.
    """
    best = np.full(grid.shape, np.inf, np.float32)
    dist = np.zeros(grid.shape, np.float32)
    radius = np.zeros(grid.shape, np.float32)
    for z0, y0, x0, z1, y1, x1, r0, r1 in segments:
        dz, dy, dx = z1 - z0, y1 - y0, x1 - x0
        pz, py, px = grid.z - z0, grid.y - y0, grid.x - x0
        frac = np.clip((pz * dz + py * dy + px * dx) / (dz * dz + dy * dy + dx * dx), 0.0, 1.0)
        d = np.sqrt((pz - frac * dz) ** 2 + (py - frac * dy) ** 2 + (px - frac * dx) ** 2)
        r = r0 + frac * (r1 - r0)
        closer = d - r < best
        best = np.where(closer, d - r, best)
        dist = np.where(closer, d, dist)
        radius = np.where(closer, r, radius)
    return dist, radius


def render_tubes(
    grid: Grid, segments: np.ndarray, region: tuple[slice, slice, slice] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Distance to the nearest tube centreline and that centreline's radius, both in mm.

    ``segments``: (S, 8) rows ``z0, y0, x0, z1, y1, x1, r0, r1`` in mm, the radius tapering
    linearly from r0 to r1. Centrelines are sampled every half voxel; a point at distance dz from
    the nearest slice centre meets that slice as a disc of radius sqrt(r^2 - dz^2), and the
    distance map is one exact Euclidean distance transform. Only ``region`` (voxel slices;
    default the whole grid) is rendered, the rest gets distance inf. Returns ``(dist, radius)``
    float32 arrays of ``grid.shape``, or None when no tube meets the region.
    """
    if len(segments) == 0:
        return None
    region = region or (slice(None),) * 3
    ranges = [range(*sl.indices(n)) for sl, n in zip(region, grid.shape, strict=True)]
    offset, sub = [r.start for r in ranges], tuple(len(r) for r in ranges)
    sz, sy, sx = grid.spacing
    p0, p1 = segments[:, 0:3], segments[:, 3:6]
    step = 0.5 * (grid.inplane if grid.is_slice else min(grid.inplane, sz))
    counts = np.ceil(np.linalg.norm(p1 - p0, axis=1) / step).astype(np.int64) + 1
    seg = np.repeat(np.arange(len(segments)), counts)
    start = np.cumsum(counts) - counts
    frac = (np.arange(seg.size) - start[seg]) / np.maximum(counts[seg] - 1, 1)
    pts = p0[seg] + frac[:, None] * (p1 - p0)[seg]
    rad = segments[seg, 6] + frac * (segments[seg, 7] - segments[seg, 6])
    z0 = float(grid.z.ravel()[0])
    iz = np.zeros(seg.size) if grid.is_slice else np.rint((pts[:, 0] - z0) / sz)
    dz = pts[:, 0] - (z0 + iz * sz)
    idx = [
        iz.astype(np.intp) - offset[0],
        np.rint(pts[:, 1] / sy + (grid.shape[1] - 1) / 2).astype(np.intp) - offset[1],
        np.rint(pts[:, 2] / sx + (grid.shape[2] - 1) / 2).astype(np.intp) - offset[2],
    ]
    reff = np.sqrt(np.clip(rad**2 - dz**2, 0.0, None))
    keep = reff > 0
    for i, n in zip(idx, sub, strict=True):
        keep &= (i >= 0) & (i < n)
    if not keep.any():
        return None
    centre = np.zeros(sub, np.float32)
    np.maximum.at(centre, tuple(i[keep] for i in idx), reff[keep].astype(np.float32))
    d_sub, near = ndimage.distance_transform_edt(
        centre == 0, sampling=grid.spacing, return_indices=True
    )
    dist = np.full(grid.shape, np.inf, np.float32)
    radius = np.zeros(grid.shape, np.float32)
    dist[region] = d_sub
    radius[region] = centre[tuple(near)]
    return dist, radius


def tube_weight(
    tubes: tuple[np.ndarray, np.ndarray], grid: Grid, extra_mm: float = 0.0
) -> np.ndarray:
    """Partial-volume fraction in [0, 1] of tubes widened by ``extra_mm`` (float32)."""
    dist, radius = tubes
    h = grid.inplane
    return np.clip((radius + extra_mm - dist) / h + 0.5, 0.0, 1.0).astype(np.float32)
