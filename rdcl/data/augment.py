"""Patch extraction with padding, spatial and intensity augmentation (numpy/scipy).

Everything takes an explicit :class:`numpy.random.Generator`, so a batch is a pure function of its
seed. Arrays are ``image (C, *spatial)`` float32 and ``label (*spatial)`` {0, 1}, 2D or 3D.

Spatial augmentation (nnU-Net style, smaller ranges): a rotation in the (y, x) plane (the last two
axes) and an isotropic scaling, both about the patch centre, applied while cropping: every output
voxel is sampled from the whole volume with :func:`scipy.ndimage.map_coordinates` (order 1 for the
image; the label is interpolated linearly and thresholded at 0.5, so it stays binary and the two
stay aligned), so no border artefacts appear. Then random flips along every axis.
Intensity augmentation acts on the image only: brightness, contrast, gamma, Gaussian noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

PAD_MODES = ("constant", "edge")


@dataclass(frozen=True)
class AugmentParams:
    """Probabilities (per sample) and ranges of every augmentation.

    ``max_angle_deg``: rotations are uniform in +-max_angle_deg; ``scale_range``: factors > 1
    zoom in; ``noise_variance``: Gaussian noise variance drawn uniformly in (0, max).
    """

    p_rotate: float = 0.2
    max_angle_deg: float = 15.0
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.85, 1.25)
    p_flip: float = 0.5
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.1
    noise_variance: float = 0.1


def sample_spatial(rng: np.random.Generator, params: AugmentParams) -> tuple[float, float]:
    """Draw ``(angle_rad, scale)``; ``(0.0, 1.0)`` when neither augmentation fires."""
    angle = 0.0
    if rng.random() < params.p_rotate:
        angle = math.radians(rng.uniform(-params.max_angle_deg, params.max_angle_deg))
    scale = float(rng.uniform(*params.scale_range)) if rng.random() < params.p_scale else 1.0
    return angle, scale


def crop(
    image: np.ndarray,
    label: np.ndarray | None,
    start: Sequence[int],
    patch: Sequence[int],
    *,
    pad_mode: str = "constant",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop ``patch`` voxels from ``start`` (may be negative or run past the end: the missing part
    is padded with 0 (``"constant"``) or the nearest edge value (``"edge"``) for the image, and 0
    for the label). Returns ``(image (C, *patch) float32, label (*patch) uint8 | None)``."""
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, found {pad_mode!r}")
    shape = image.shape[1:]
    lo = [max(0, s) for s in start]
    hi = [min(n, s + p) for n, s, p in zip(shape, start, patch, strict=True)]
    pads = [(a - s, s + p - b) for s, p, a, b in zip(start, patch, lo, hi, strict=True)]
    if any(b <= a for a, b in zip(lo, hi, strict=True)):
        raise ValueError(
            f"patch {tuple(patch)} at {tuple(start)} does not overlap the volume of shape {shape}"
        )
    region = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    img = image[(slice(None), *region)]
    mode = "edge" if pad_mode == "edge" else "constant"
    img = np.pad(img, [(0, 0), *pads], mode=mode).astype(np.float32, copy=False)
    lab = None
    if label is not None:
        lab = np.pad(label[region], pads, mode="constant").astype(np.uint8, copy=False)
    return img, lab


def transformed_crop(
    image: np.ndarray,
    label: np.ndarray | None,
    start: Sequence[int],
    patch: Sequence[int],
    *,
    angle: float = 0.0,
    scale: float = 1.0,
    pad_mode: str = "constant",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Like :func:`crop`, but the patch is rotated by ``angle`` (radians, (y, x) plane) and scaled
    by ``scale`` about its centre ``start + (patch - 1) / 2``. Identity parameters fall back to
    the exact :func:`crop`."""
    if angle == 0.0 and scale == 1.0:
        return crop(image, label, start, patch, pad_mode=pad_mode)
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, found {pad_mode!r}")
    patch = tuple(int(p) for p in patch)
    grid = np.indices(patch, dtype=np.float64).reshape(len(patch), -1)
    half = (np.asarray(patch, dtype=np.float64) - 1.0) / 2.0
    offset = (grid - half[:, None]) / scale
    c, s = math.cos(angle), math.sin(angle)
    y, x = offset[-2].copy(), offset[-1].copy()
    offset[-2], offset[-1] = c * y - s * x, s * y + c * x
    coords = offset + (np.asarray(start, dtype=np.float64) + half)[:, None]
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


def random_flip(
    image: np.ndarray,
    label: np.ndarray | None,
    rng: np.random.Generator,
    p: float = 0.5,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Flip image and label together along each spatial axis with probability ``p``."""
    axes = [a for a in range(image.ndim - 1) if rng.random() < p]
    if not axes:
        return image, label
    image = np.ascontiguousarray(np.flip(image, axis=[a + 1 for a in axes]))
    if label is not None:
        label = np.ascontiguousarray(np.flip(label, axis=axes))
    return image, label


def augment_intensity(
    image: np.ndarray, rng: np.random.Generator, params: AugmentParams
) -> np.ndarray:
    """Brightness (multiplicative), contrast (about the mean, clipped to the old range), gamma
    (on the min-max rescaled image, mean/std restored) and Gaussian noise, each with its
    probability. ``image (C, *spatial)`` float32; returns a new array."""
    x = image.astype(np.float32, copy=True)
    if rng.random() < params.p_brightness:
        x *= rng.uniform(*params.brightness_range)
    if rng.random() < params.p_contrast:
        factor = rng.uniform(*params.contrast_range)
        mean, lo, hi = x.mean(), x.min(), x.max()
        x = np.clip((x - mean) * factor + mean, lo, hi)
    if rng.random() < params.p_gamma:
        gamma = rng.uniform(*params.gamma_range)
        mean, std, lo = x.mean(), x.std(), x.min()
        span = x.max() - lo
        x = ((x - lo) / (span + 1e-7)) ** gamma * span + lo
        x = (x - x.mean()) / (x.std() + 1e-8) * std + mean
    if rng.random() < params.p_noise:
        variance = rng.uniform(0.0, params.noise_variance)
        x = x + rng.normal(0.0, math.sqrt(variance), size=x.shape)
    return x.astype(np.float32, copy=False)
