"""Chest anatomy of the synthetic phantoms: body, fat, muscle, ribs, spine, mediastinum, lungs,
pulmonary vessels and central airways, in Hounsfield units.

Shapes are defined in body-normalised coordinates u = x / W, v = (y - yc) / D (W, D: body
half-width and half-depth in mm; v > 0 is posterior, the patient lies supine) and the
craniocaudal fraction t, so the anatomy fills the field of view whatever the voxel size. Sizes
given in "nominal mm" refer to an adult chest of half-width 180 mm and are multiplied by
``scale = W / 180``. +x is the patient's left (the heart side).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rdcl.data.synth.fields import Grid, render_tubes, segment_distance, smooth_noise, tube_weight

NOMINAL_HALF_WIDTH = 180.0
"""Adult chest half-width (mm) that nominal sizes refer to."""

HU_AIR, HU_FAT, HU_SOFT, HU_VESSEL = -1000.0, -100.0, 40.0, 40.0
HU_PARENCHYMA = -860.0
"""Mean lung parenchyma; with its vessels the lung's median comes out near -850 HU."""


@dataclass(frozen=True)
class Body:
    """Per-case body dimensions: half-width ``w`` and half-depth ``d`` (mm), centre ``yc`` (mm)."""

    w: float
    d: float
    yc: float

    @property
    def scale(self) -> float:
        """Multiplier from nominal mm to this body's mm."""
        return self.w / NOMINAL_HALF_WIDTH

    @property
    def length(self) -> float:
        """Craniocaudal extent (mm) that a 2D slice's position refers to."""
        return 1.75 * self.w


def sample_body(rng: np.random.Generator, fov_y: float, fov_x: float) -> Body:
    """Random body that fits a field of view of ``fov_y`` x ``fov_x`` mm."""
    w = 0.5 * fov_x * rng.uniform(0.8, 0.9)
    d = min(w * rng.uniform(0.62, 0.72), 0.46 * fov_y)
    return Body(w=w, d=d, yc=rng.uniform(-0.03, 0.03) * d)


@dataclass(frozen=True)
class Anatomy:
    """One case's anatomy on its grid (arrays broadcast to (nz, ny, nx)).

    u, v: body-normalised coordinates (open arrays); cavity: the thoracic cavity's normalised
    radius. image: float32 HU without vessels, airways, blur and noise. lung: bool lung fields.
    side: int8, -1 right lung (x < 0), +1 left lung, 0 elsewhere. depth: float32 mm from each lung
    voxel to the nearest non-lung voxel (0 outside). vessels / airway_wall / airway_lumen: float32
    partial-volume fractions in [0, 1]. base, dome: per lung (right, left), the craniocaudal
    fraction of the lowest lung point and the height of the diaphragm dome above it.
    """

    body: Body
    u: np.ndarray
    v: np.ndarray
    cavity: float
    image: np.ndarray
    lung: np.ndarray
    side: np.ndarray
    depth: np.ndarray
    vessels: np.ndarray
    airway_wall: np.ndarray
    airway_lumen: np.ndarray
    base: tuple[float, float]
    dome: tuple[float, float]


def _ellipse(u, v, cu, cv, au, av):
    """Normalised squared radius of an axis-aligned ellipse (< 1 inside)."""
    return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2


def _bones(grid: Grid, body: Body, u, v, rho, rho_out, rho_in, rng):
    """Ribs, vertebra (with discs) and sternum, cortex brighter than marrow.

    Returns (bone HU, bone mask, zone around the spine the lungs keep out of, spinal canal).
    """
    nom = grid.length / 320.0
    period, duty = rng.uniform(26, 32) * nom, rng.uniform(0.35, 0.45)
    slope, phase = rng.uniform(0.5, 1.0) * period, rng.uniform()
    vdir = v / np.maximum(rho, 1e-3)
    stripe = np.mod((grid.z - slope * vdir) / period + phase, 1.0) < duty
    ribs = (rho > rho_in) & (rho < rho_out) & stripe & ~((v < -0.45) & (np.abs(u) < 0.25))
    w, x, y = body.w, grid.x, grid.y - body.yc
    y_vb, r_vb = 0.55 * body.d, 0.11 * w
    y_can, r_can = y_vb + r_vb + 0.055 * w, 0.05 * w
    vb = x**2 + (y - y_vb) ** 2 < r_vb**2
    disc = np.mod(grid.z / (rng.uniform(26, 30) * nom) + rng.uniform(), 1.0) < 0.22
    can = x**2 + (y - y_can) ** 2
    arch = (can < (r_can + 0.03 * w) ** 2) & (can >= r_can**2)
    spinous = (np.abs(x) < 0.022 * w) & (y > y_can) & (rho < rho_out + 0.02)
    sternum = (_ellipse(u, v, 0.0, -(rho_out - 0.04), 0.07, 0.035 * w / body.d) < 1) & (
        (grid.t > 0.35) & (grid.t < 0.9)
    )
    marrow = ribs | (vb & ~disc) | arch | spinous | sternum
    cross = np.zeros((1, 3, 3), bool)
    cross[0, 1, :] = cross[0, :, 1] = True
    cortex = marrow & ~ndimage.binary_erosion(marrow, cross)
    hu = np.where(cortex, 850.0, np.where(ribs | arch | spinous, 550.0, 400.0))
    hu = np.where(vb & disc, 90.0, hu)
    spine_zone = (x**2 + (y - y_vb) ** 2 < (r_vb + 0.03 * w) ** 2) | (
        (np.abs(x) < r_vb + 0.02 * w) & (y > y_vb)
    )
    return hu.astype(np.float32), marrow | (vb & disc), spine_zone, can < r_can**2


def _airways(grid: Grid, body: Body, rng) -> np.ndarray:
    """Trachea and main bronchi as (S, 8) tube segments (mm)."""
    k, w, yc = body.scale, body.w, body.yc
    zlen = grid.length
    t_car = rng.uniform(0.6, 0.66)
    top = (1.05 * zlen, yc - 0.1 * body.d, 0.0)
    carina = (t_car * zlen, yc - 0.06 * body.d, 0.0)
    segs = [(*top, *carina, 8.0 * k, 7.5 * k)]
    for side in (-1.0, 1.0):
        end = ((t_car - 0.08) * zlen, yc - 0.02 * body.d, side * 0.24 * w)
        segs.append((*carina, *end, 6.0 * k, 4.5 * k))
    return np.asarray(segs, dtype=np.float64)


def _vessel_tree(root, radius, targets, rng, out) -> None:
    """Branch from ``root`` towards the target centroid, splitting the targets in two (mm)."""
    if len(targets) == 1:
        out.append((*root, *targets[0], radius, 0.45 * radius))
        return
    centre = targets.mean(axis=0)
    node = root + rng.uniform(0.35, 0.6) * (centre - root)
    taper = 0.78
    out.append((*root, *node, radius, taper * radius))
    spread = targets - centre
    axis = np.linalg.eigh(spread.T @ spread)[1][:, -1]
    order = np.argsort(spread @ axis)
    half = len(targets) // 2
    for part in (order[:half], order[half:]):
        _vessel_tree(node, taper * radius, targets[part], rng, out)


def _vessels(grid: Grid, body: Body, lung, side, depth, rng) -> np.ndarray:
    """Two branching, tapering vessel trees (one per lung) as (S, 8) segments (mm)."""
    k = body.scale
    zlen = grid.length
    z_slice = float(grid.z.ravel()[0])
    out: list[tuple[float, ...]] = []
    for s in (-1, 1):
        cand = np.nonzero((side == s) & (depth > 4.0 * k))
        if cand[0].size < 4:
            continue
        n = int(rng.integers(30, 46))
        pick = rng.choice(cand[0].size, size=min(n, cand[0].size), replace=False)
        targets = grid.coords(tuple(c[pick] for c in cand)).astype(np.float64)
        if grid.is_slice:
            targets[:, 0] += rng.uniform(-0.12, 0.12, len(targets)) * zlen
            z_root = z_slice + rng.uniform(-0.08, 0.08) * zlen
        else:
            z_root = rng.uniform(0.45, 0.55) * zlen
        root = np.array([z_root, body.yc - 0.02 * body.d, s * 0.16 * body.w])
        _vessel_tree(root, 7.0 * k, targets, rng, out)
    return np.asarray(out, dtype=np.float64).reshape(-1, 8)


def _bbox(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding box of ``mask`` as voxel slices (None when empty)."""
    if not mask.any():
        return None
    out = []
    for axis in range(3):
        hit = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return out[0], out[1], out[2]


def _lungs(grid: Grid, u, v, inside, k, rng):
    """Two lungs inside the allowed region ``inside``: large ellipses clipped by the cavity and
    mediastinum, rounded towards the apex, cut below by a diaphragm dome that is deepest
    laterally and posteriorly. Returns (lung bool, side int8, base, dome)."""
    t = grid.t
    t_apex = rng.uniform(0.9, 0.96)
    s_apex = np.sqrt(np.clip((t_apex - t) / (t_apex - 0.55), 0, 1)) + 1e-3
    s_apex = np.where(t > 0.55, s_apex, 1.0)
    shape_noise = smooth_noise(rng, grid.shape, grid.voxels(35.0 * k))
    base = (rng.uniform(0.04, 0.1), rng.uniform(0.04, 0.1))
    dome = (rng.uniform(0.14, 0.2), rng.uniform(0.1, 0.16))
    lung = np.zeros(grid.shape, bool)
    side = np.zeros(grid.shape, np.int8)
    for i, s in enumerate((-1, 1)):
        r2 = _ellipse(u, v, s * 0.42, 0.02, 0.4, 0.86)
        lobe = r2 / s_apex**2 + 0.12 * shape_noise < 1
        above = t > base[i] + dome[i] * np.clip(1 - r2, 0, 1) - 0.05 * v
        this = lobe & above & inside & (s * u > 0.09)
        lung |= this
        side[this] = s
    return lung, side, base, dome


def build_anatomy(grid: Grid, body: Body, rng: np.random.Generator) -> Anatomy:
    """Draw one chest on ``grid`` (see :class:`Anatomy`); deterministic given ``rng``'s state."""
    k = body.scale
    u, v = grid.x / body.w, (grid.y - body.yc) / body.d
    shape = grid.shape
    coarse = smooth_noise(rng, shape, grid.voxels(60.0 * k))
    rho = np.sqrt(np.clip(u**2 + v**2 + 0.015 * coarse, 0, None))
    rho_fat = 1.0 - rng.uniform(0.05, 0.11)
    rho_out = rho_fat - rng.uniform(0.04, 0.06)
    rho_in = rho_out - 0.06
    cavity = rho_in - 0.015
    fine = smooth_noise(rng, shape, grid.voxels(4.0 * k))
    image = np.full(shape, HU_AIR, np.float32)
    image = np.where(rho < 1.0, HU_FAT + 8.0 * fine, image)
    image = np.where(rho < rho_fat, HU_SOFT + 6.0 * fine, image)
    bone_hu, bone, spine_zone, canal = _bones(grid, body, u, v, rho, rho_out, rho_in, rng)
    image = np.where(bone, bone_hu, image)
    image = np.where(canal, 20.0, image)
    t = grid.t
    s_heart = np.sqrt(np.clip(1 - ((t - 0.38) / 0.28) ** 2, 0, 1)) + 1e-3
    heart = _ellipse(u, v, 0.1, -0.22, 0.36 * s_heart, 0.42 * s_heart) < 1
    aorta = (grid.x - 0.13 * body.w) ** 2 + (grid.y - body.yc - 0.46 * body.d) ** 2 < (
        0.065 * body.w
    ) ** 2
    fat_ant = (_ellipse(u, v, 0.0, -0.5, 0.12, 0.15) < 1) & (t > 0.5)
    airways = segment_distance(grid, _airways(grid, body, rng))
    wall, lumen = tube_weight(airways, grid, 2.0 * k), tube_weight(airways, grid)
    inside = (rho < cavity) & ~heart & ~aorta & ~spine_zone & (wall < 0.5)
    lung, side, base, dome = _lungs(grid, u, v, inside, k, rng)
    cav_hu = np.where(heart | aorta, 42.0, 36.0) + 5.0 * fine
    cav_hu = np.where(fat_ant & ~heart, -90.0 + 8.0 * fine, cav_hu)
    image = np.where((rho < cavity) & ~bone & ~canal, cav_hu, image)
    image = np.where(lung, HU_PARENCHYMA + 18.0 * np.clip(v, -1, 1) + 10.0 * fine, image)
    depth = ndimage.distance_transform_edt(lung, sampling=grid.spacing).astype(np.float32)
    tree = render_tubes(grid, _vessels(grid, body, lung, side, depth, rng), _bbox(lung))
    vessels = tube_weight(tree, grid) * lung if tree else np.zeros(shape, np.float32)
    return Anatomy(
        body=body,
        u=u,
        v=v,
        cavity=cavity,
        image=image.astype(np.float32),
        lung=lung,
        side=side,
        depth=depth,
        vessels=vessels.astype(np.float32),
        airway_wall=wall,
        airway_lumen=lumen,
        base=base,
        dome=dome,
    )
