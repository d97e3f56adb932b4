"""Lesions of the synthetic phantoms, drawn into an :class:`~rdcl.data.synth.anatomy.Anatomy`.

- COVID-19: bilateral, multifocal, peripheral (subpleural) ground-glass opacities near
  -700..-300 HU, some with a consolidated core near -100..40 HU; irregular outlines from
  thresholded smooth noise, confined to a band along the pleura, favouring posterior and basal lung.
- tumour: one or two solid, lobulated masses (0-60 HU), 10-26 nominal mm radius.
- nodule: one to four small, roughly spherical solid nodules (0-60 HU), 3-9 nominal mm radius.
- effusion: a dependent (posterior, high y) crescent of fluid (0-20 HU) along the lung base, one
  or both sides, thickest at the base and thinning upwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rdcl.data.synth.anatomy import Anatomy
from rdcl.data.synth.fields import Grid, smooth_noise


@dataclass(frozen=True)
class Lesion:
    """Lesion mask (bool, grid shape), its HU values (float32, valid where mask) and whether it
    hides the vessels (drawn after them) or lets them show through (drawn before)."""

    mask: np.ndarray
    hu: np.ndarray
    over_vessels: bool


def _box(grid: Grid, centre: np.ndarray, radius: float) -> tuple[slice, slice, slice]:
    """Voxel slices of the grid's part within ``radius`` mm of ``centre`` (z, y, x mm)."""
    out = []
    for axis, c in enumerate(centre):
        coords = (grid.z, grid.y, grid.x)[axis].ravel()
        if coords.size == 1:
            out.append(slice(0, 1))
            continue
        lo = int(np.searchsorted(coords, c - radius))
        hi = int(np.searchsorted(coords, c + radius, side="right"))
        out.append(slice(max(lo, 0), max(hi, lo + 1)))
    return out[0], out[1], out[2]


def _local_dist2(grid: Grid, box, centre, axes=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Squared (axis-scaled) distance in mm^2 from ``centre`` over the voxels of ``box``."""
    z = grid.z[box[0]] - centre[0]
    y = grid.y[:, box[1]] - centre[1]
    x = grid.x[..., box[2]] - centre[2]
    return (z / axes[0]) ** 2 + (y / axes[1]) ** 2 + (x / axes[2]) ** 2


def _pick(grid: Grid, cand: np.ndarray, rng, weights=None) -> np.ndarray | None:
    """Physical centre (z, y, x mm) of a random candidate voxel, optionally weighted."""
    idx = np.nonzero(cand)
    if idx[0].size == 0:
        return None
    p = None
    if weights is not None:
        w = weights(idx)
        p = w / w.sum()
    i = rng.choice(idx[0].size, p=p)
    return grid.coords(tuple(c[i : i + 1] for c in idx))[0]


def _noise(rng, box_shape, grid: Grid, mm: float) -> np.ndarray:
    """Unit smooth noise over a box with correlation length ``mm``."""
    return smooth_noise(rng, box_shape, grid.voxels(mm))


def covid(an: Anatomy, grid: Grid, rng: np.random.Generator) -> Lesion:
    """Bilateral multifocal subpleural ground-glass opacities with some consolidation."""
    k, h = an.body.scale, grid.inplane
    rho = np.sqrt(an.u**2 + an.v**2)
    mask = np.zeros(grid.shape, bool)
    hu = np.full(grid.shape, -2000.0, np.float32)

    def weights(idx):
        v = np.clip(an.v.ravel()[idx[1]], 0, 1)
        return 1.0 + 1.5 * v + (1.0 - grid.t.ravel()[idx[0]])

    for s in (-1, 1):
        this = an.side == s
        wanted, placed = int(rng.integers(2, 5)), 0
        for _ in range(wanted + 3):
            if placed == wanted:
                break
            band = max(rng.uniform(18, 34) * k, 2.0 * h)
            cand = this & (an.depth <= 0.5 * band) & (rho > an.cavity - 0.18)
            if not cand.any():
                cand = this & (an.depth <= band)
            centre = _pick(grid, cand, rng, weights)
            if centre is None:
                break
            radius = max(rng.uniform(18, 45) * k, 2.5 * h)
            box = _box(grid, centre, 1.4 * radius)
            d2 = _local_dist2(grid, box, centre, rng.uniform(0.7, 1.3, 3))
            noise = _noise(rng, d2.shape, grid, radius / 1.5)
            f = 1.0 - d2 / radius**2 + 0.45 * noise
            ggo = (f > 0.3) & this[box] & (an.depth[box] <= band)
            if not ggo.any():
                continue
            val = np.clip(rng.uniform(-640, -430) + 120.0 * (f - 0.3), -690, -320)
            if rng.random() < 0.65:
                core = f > 0.3 + rng.uniform(0.35, 0.8)
                val = np.where(core, np.clip(rng.uniform(-60, 20) + 12.0 * noise, -95, 35), val)
            mask[box] |= ggo
            hu[box] = np.where(ggo, np.maximum(hu[box], val), hu[box])
            placed += 1
    return Lesion(mask=mask, hu=hu, over_vessels=False)


def _solid(an, grid, rng, count, radius_range, lobulation, hu_range, depth_frac) -> Lesion:
    """Roughly spherical solid lesions with lobulated outlines inside the lungs."""
    mask = np.zeros(grid.shape, bool)
    hu = np.zeros(grid.shape, np.float32)
    for _ in range(count):
        radius = rng.uniform(*radius_range)
        cand = an.lung & (an.depth > depth_frac * radius)
        if not cand.any():
            cand = an.lung & (an.depth >= 0.5 * an.depth.max())
        centre = _pick(grid, cand, rng)
        if centre is None:
            break
        box = _box(grid, centre, 1.5 * radius)
        dist = np.sqrt(_local_dist2(grid, box, centre))
        noise = _noise(rng, dist.shape, grid, radius)
        m = (1.0 - dist / radius + lobulation * noise > 0) & an.lung[box]
        texture = _noise(rng, dist.shape, grid, 6.0 * an.body.scale)
        lo, hi = hu_range
        val = np.clip(rng.uniform(lo + 20, hi - 12) + 6.0 * texture, lo + 2, hi - 2)
        mask[box] |= m
        hu[box] = np.where(m, val, hu[box])
    return Lesion(mask=mask, hu=hu, over_vessels=False)


def tumour(an: Anatomy, grid: Grid, rng: np.random.Generator) -> Lesion:
    """One (70 %) or two lobulated solid tumours, 0-60 HU."""
    k, h = an.body.scale, grid.inplane
    count = 1 if rng.random() < 0.7 else 2
    lo = max(10 * k, 2.0 * h)
    return _solid(an, grid, rng, count, (lo, max(26 * k, 1.5 * lo)), 0.22, (0.0, 60.0), 0.3)


def nodule(an: Anatomy, grid: Grid, rng: np.random.Generator) -> Lesion:
    """One to four small solid nodules, 0-60 HU."""
    k, h = an.body.scale, grid.inplane
    count = int(rng.integers(1, 5))
    radii = (max(3 * k, 1.3 * h), max(9 * k, 2.4 * h))
    return _solid(an, grid, rng, count, radii, 0.08, (0.0, 60.0), 0.6)


def effusion(an: Anatomy, grid: Grid, rng: np.random.Generator) -> Lesion:
    """Dependent pleural fluid: in each (z, x) column the most posterior lung voxels, up to a
    thickness that is largest at the lung base and at the column under the lung's centre."""
    k, h = an.body.scale, grid.inplane
    sides = (-1, 1) if rng.random() < 0.4 else (int(rng.choice([-1, 1])),)
    t_top = max(an.base) + max(an.dome) + rng.uniform(0.2, 0.35)
    thick = max(rng.uniform(18, 40) * k, 3.0 * h)
    ny = grid.shape[1]
    iy = np.arange(ny)[None, :, None]
    mask = np.zeros(grid.shape, bool)
    noise = smooth_noise(rng, grid.shape, grid.voxels(40.0 * k))
    for s in sides:
        lung = an.side == s
        last = ny - 1 - np.argmax(lung[:, ::-1, :], axis=1)
        above = (last[:, None, :] - iy) * grid.spacing[1]
        t_base = an.base[0 if s < 0 else 1]
        rise = np.clip((t_top - grid.t) / (t_top - t_base), 0, 1) ** 0.7
        lateral = np.sqrt(
            np.clip(1 - ((grid.x - s * 0.42 * an.body.w) / (0.5 * an.body.w)) ** 2, 0, 1)
        )
        mask |= lung & (above < thick * rise * lateral * (1 + 0.1 * noise))
    texture = smooth_noise(rng, grid.shape, grid.voxels(8.0 * k))
    hu = np.clip(rng.uniform(6, 14) + 3.0 * texture, 0.5, 19.5).astype(np.float32)
    return Lesion(mask=mask, hu=hu, over_vessels=True)


PAINTERS: dict[str, Callable[[Anatomy, Grid, np.random.Generator], Lesion]] = {
    "covid": covid,
    "tumour": tumour,
    "nodule": nodule,
    "effusion": effusion,
}
