"""One synthetic CT case: anatomy + lesion, then partial-volume blur and noise, as int16 HU."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rdcl.data.synth.anatomy import HU_AIR, HU_SOFT, HU_VESSEL, build_anatomy, sample_body
from rdcl.data.synth.fields import Grid
from rdcl.data.synth.lesions import PAINTERS
from rdcl.data.synth.memory import check_memory
from rdcl.errors import RdclInputError

logger = logging.getLogger(__name__)

KINDS = ("covid", "tumour", "effusion", "nodule", "mixed")
"""Dataset kinds; ``mixed`` draws tumour, nodule or effusion per case."""

MIXED_KINDS = ("tumour", "nodule", "effusion")

_NOMINAL_FOV = (320.0, 409.6, 409.6)
_BASE_SPACING = (2.5, 0.8, 0.8)
_SLICE_T = {
    "covid": (0.28, 0.62),
    "tumour": (0.28, 0.75),
    "nodule": (0.28, 0.75),
    "effusion": (0.18, 0.36),
}
_MAX_TRIES = 10


@dataclass(frozen=True)
class Phantom:
    """A synthetic case: ``image`` int16 HU, ``mask`` uint8 0/1 lesion, ``lung`` uint8 0/1 lung
    fields (lesions and effusion included, central airways excluded), all (z, y, x) or (y, x);
    ``kind`` is the lesion kind drawn (never ``mixed``)."""

    image: np.ndarray
    mask: np.ndarray
    lung: np.ndarray
    kind: str


def default_spacing(shape: tuple[int, ...]) -> tuple[float, ...]:
    """Anisotropic default spacing (mm) for ``shape``: (2.5, 0.8, 0.8) for a 128x512x512 volume,
    coarsened for smaller grids so the field of view stays 320 x 409.6 x 409.6 mm."""
    if any(n < 1 for n in shape):
        raise RdclInputError(
            f"shape must be at least 32 in y and x and 4 in z, found {tuple(shape)}"
        )
    fov, base = _NOMINAL_FOV[-len(shape) :], _BASE_SPACING[-len(shape) :]
    return tuple(round(max(b, f / n), 4) for b, f, n in zip(base, fov, shape, strict=True))


def _check(kind: str, shape: tuple[int, ...], spacing: tuple[float, ...]) -> None:
    if kind not in KINDS:
        raise RdclInputError(f"kind must be one of {KINDS}, found {kind!r}")
    if len(shape) not in (2, 3):
        raise RdclInputError(f"shape must be (z, y, x) or (y, x), found {tuple(shape)}")
    if len(spacing) != len(shape):
        raise RdclInputError(
            f"spacing must have {len(shape)} entries like shape {tuple(shape)}, found "
            f"{tuple(spacing)}"
        )
    if min(shape[-2:]) < 32 or (len(shape) == 3 and shape[0] < 4):
        raise RdclInputError(
            f"shape must be at least 32 in y and x and 4 in z, found {tuple(shape)}"
        )
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise RdclInputError(f"spacing must be positive mm, found {tuple(spacing)}")
    check_memory(shape)


def synthesize_phantom(
    kind: str,
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    rng: np.random.Generator,
) -> Phantom:
    """Draw one chest CT phantom with a lesion of ``kind`` (see :mod:`rdcl.data.synth`).

    shape: (z, y, x) voxels or (y, x) for one axial slice; spacing in mm, same order. The result
    depends only on the arguments and ``rng``'s state. Raises ValueError for a bad kind, shape or
    spacing and :class:`~rdcl.data.synth.memory.SynthMemoryError` (a ValueError) for a shape
    that needs more memory than is available, RuntimeError when no lesion could be placed in
    ``_MAX_TRIES`` anatomies.
    """
    shape, spacing = tuple(int(n) for n in shape), tuple(float(s) for s in spacing)
    _check(kind, shape, spacing)
    if kind == "mixed":
        kind = MIXED_KINDS[int(rng.integers(len(MIXED_KINDS)))]
    is_slice = len(shape) == 2
    shape3 = (1, *shape) if is_slice else shape
    spacing3 = (max(spacing), *spacing) if is_slice else spacing
    for _ in range(_MAX_TRIES):
        body = sample_body(rng, shape3[1] * spacing3[1], shape3[2] * spacing3[2])
        if is_slice:
            grid = Grid.make(
                shape3, spacing3, length=body.length, t_slice=rng.uniform(*_SLICE_T[kind])
            )
        else:
            grid = Grid.make(shape3, spacing3, length=shape3[0] * spacing3[0])
        anatomy = build_anatomy(grid, body, rng)
        lesion = PAINTERS[kind](anatomy, grid, rng)
        if lesion.mask.any():
            break
        logger.debug("no %s lesion fitted this anatomy; drawing another", kind)
    else:
        raise RuntimeError(f"could not place a {kind} lesion in a phantom of shape {shape}")
    image = anatomy.image.copy()
    if not lesion.over_vessels:
        image[lesion.mask] = lesion.hu[lesion.mask]
    image += anatomy.vessels * (HU_VESSEL - image)
    if lesion.over_vessels:
        image[lesion.mask] = lesion.hu[lesion.mask]
    image += anatomy.airway_wall * (HU_SOFT - image)
    image += anatomy.airway_lumen * (HU_AIR - image)
    sigma = grid.voxels(0.5 * grid.inplane)
    image = ndimage.gaussian_filter(image, sigma)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape3).astype(np.float32), sigma)
    image += noise * (rng.uniform(10.0, 20.0) / max(float(noise.std()), 1e-6))
    image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    mask = lesion.mask.astype(np.uint8)
    lung = anatomy.lung.astype(np.uint8)
    if is_slice:
        image, mask, lung = image[0], mask[0], lung[0]
    return Phantom(image=image, mask=mask, lung=lung, kind=kind)


def synthesize_case(
    kind: str,
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``(image int16 HU, mask uint8 0/1)`` of one phantom; see :func:`synthesize_phantom`."""
    ph = synthesize_phantom(kind, shape, spacing, rng)
    return ph.image, ph.mask
