"""The scipy reference of the spatial augmentation, which the tests (and the loader benchmark,
bench/test_bench_loader.py) compare rdcl's separable interpolation with.

:func:`patch_points` and :func:`label_value` compute the rotated/scaled patch's sample points and
interpolated label the plain way (scipy on the whole volume, float64);
:func:`scipy_transformed_crop` is :func:`rdcl.data.sampling.augment.transformed_crop` through
:func:`scipy.ndimage.map_coordinates` (order 1, per channel, from the voxel block the patch
touches), and :class:`ScipyPatchSampler` a ``PatchSampler`` whose crops it makes (the same draws).
These were rdcl's ``"scipy"`` spatial engine (``PatchSampler(spatial_engine="scipy")``) until it
moved here: production code keeps only the separable engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from rdcl.data import PatchSampler
from rdcl.data.sampling.augment import PAD_MODES, augment_intensity, crop, random_flip


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


def scipy_transformed_crop(
    image: np.ndarray,
    label: np.ndarray | None,
    start: Sequence[int],
    patch: Sequence[int],
    *,
    angle: float = 0.0,
    scale: float = 1.0,
    pad_mode: str = "constant",
) -> tuple[np.ndarray, np.ndarray | None]:
    """``transformed_crop`` with :func:`scipy.ndimage.map_coordinates` per channel: identity
    parameters fall back to the exact ``crop``; ``(image (C, *patch) float32, label (*patch) uint8
    | None)``."""
    if angle == 0.0 and scale == 1.0:
        return crop(image, label, start, patch, pad_mode=pad_mode)
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, found {pad_mode!r}")
    patch = tuple(int(p) for p in patch)
    coords = patch_points(start, patch, angle, scale)
    # Interpolate from the block of voxels the patch touches, not the whole volume: the result is
    # the same (the block reaches the volume's edge wherever a sample point does, and integer
    # shifts of the coordinates are exact), but only that block is read (a memory-mapped cache
    # reads only its pages) and only it is converted to float32.
    shape = np.asarray(image.shape[1:])
    lo = np.clip(np.floor(coords.min(axis=1)).astype(np.int64) - 1, 0, shape - 1)
    hi = np.maximum(np.clip(np.floor(coords.max(axis=1)).astype(np.int64) + 2, 1, shape), lo + 1)
    block = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    coords = coords - lo[:, None].astype(np.float64)
    mode = "nearest" if pad_mode == "edge" else "constant"
    img = np.stack(
        [
            ndimage.map_coordinates(
                np.asarray(ch[block], dtype=np.float32), coords, order=1, mode=mode
            )
            for ch in image
        ]
    ).reshape(image.shape[0], *patch)
    lab = None
    if label is not None:
        lab_f = ndimage.map_coordinates(
            np.asarray(label[block], dtype=np.float32), coords, order=1, mode="constant", cval=0.0
        )
        lab = (lab_f >= 0.5).astype(np.uint8).reshape(patch)
    return img.astype(np.float32, copy=False), lab


class ScipyPatchSampler(PatchSampler):
    """A ``PatchSampler`` whose crops come from :func:`scipy_transformed_crop`: the same draws in
    the same order as ``PatchSampler.sample`` (which this mirrors), the reference interpolation."""

    def sample(self, step: int, b: int) -> tuple[np.ndarray, np.ndarray, int]:
        rng, i, image, label, start, angle, scale = self._locate(step, b)
        img, lab = scipy_transformed_crop(
            image, label, start, self.patch, angle=angle, scale=scale, pad_mode=self.pad_mode
        )
        if self.augment:
            img, lab = random_flip(img, lab, rng, self.params.p_flip)
            img = augment_intensity(img, rng, self.params)
        return img, lab, i
