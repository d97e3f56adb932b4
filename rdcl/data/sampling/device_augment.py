"""Augmentation on the training device (``data.augment_on: device``).

The loader draws every augmentation parameter exactly as in loader mode (the same generator
``default_rng([seed, step, b])`` and the same order of draws) but only crops: for a rotated or
scaled sample the voxel block the transformed patch touches, otherwise the patch itself. It ships
that source region and a :class:`Recipe` per sample; :func:`finish_batch` then applies the spatial
transform (``torch.nn.functional.grid_sample``, trilinear, the boundary rule of
:func:`rdcl.data.sampling.augment.transformed_crop`), the flips and the intensity augmentation with
torch on the device, where they cost a few kernels instead of the loader's memory-bound gathers.

The result equals the loader's batch to float32 rounding (image; a label voxel whose interpolated
value is within rounding of the 0.5 threshold may differ), except the Gaussian noise: it has the
same variance but is drawn by a torch generator seeded from the sample's own draws, so it is
still a pure function of ``(seed, step, b)`` on a given device
(``tests/data/sampling/test_device_augment.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rdcl.data.sampling.augment import IntensityDraw, _block, _patch_coords, crop

NOISE_SEED_BOUND = 2**62
"""Noise seeds are drawn in ``[0, NOISE_SEED_BOUND)`` (``torch.Generator.manual_seed`` range)."""


@dataclass(frozen=True)
class Recipe:
    """Everything :func:`finish_sample` needs to turn a source region into the patch.

    ``patch``: output size (voxels); ``angle`` (radians, (y, x) plane) and ``scale`` of the
    transform; ``centre``: the patch centre in source-region voxel coordinates; ``inside``: per
    axis the ``(first, last)`` region coordinate that lies inside the volume (sample points
    outside are 0 in ``"constant"`` mode, and always for the label); ``pad_mode`` as in
    :func:`rdcl.data.sampling.augment.crop`; ``flips``: spatial axes to flip; ``intensity`` and
    ``noise_seed`` (used when ``intensity.noise_variance`` is set).
    """

    patch: tuple[int, ...]
    angle: float = 0.0
    scale: float = 1.0
    centre: tuple[float, ...] = ()
    inside: tuple[tuple[float, float], ...] = ()
    pad_mode: str = "constant"
    flips: tuple[int, ...] = ()
    intensity: IntensityDraw = field(default_factory=IntensityDraw)
    noise_seed: int = 0

    @property
    def spatial(self) -> bool:
        """Whether the patch is rotated or scaled (else the source region is the patch)."""
        return self.angle != 0.0 or self.scale != 1.0


def source_region(
    image: np.ndarray,
    label: np.ndarray,
    start: Sequence[int],
    patch: Sequence[int],
    angle: float,
    scale: float,
    pad_mode: str,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """What the loader ships for one sample: ``(image (C, *region) float32, label (*region)
    uint8, recipe fields)``. Without rotation or scaling the region is the exact
    :func:`~rdcl.data.sampling.augment.crop` of the patch; otherwise the voxel block (clipped to the
    volume) that the transformed patch's sample points touch."""
    patch = tuple(int(p) for p in patch)
    if angle == 0.0 and scale == 1.0:
        img, lab = crop(image, label, start, patch, pad_mode=pad_mode)
        return img, lab, {}
    lo, block = _block(_patch_coords(start, patch, angle, scale), image.shape[1:])
    img = np.ascontiguousarray(image[(slice(None), *block)], dtype=np.float32)
    lab = np.ascontiguousarray(label[block], dtype=np.uint8)
    half = [(p - 1.0) / 2.0 for p in patch]
    shape = image.shape[1:]
    fields = {
        "centre": tuple(float(s + h - a) for s, h, a in zip(start, half, lo, strict=True)),
        "inside": tuple((float(-a), float(n - 1 - a)) for a, n in zip(lo, shape, strict=True)),
    }
    return img, lab, fields


def _sample_points(recipe: Recipe, device: torch.device) -> list[torch.Tensor]:
    """Region coordinates (float64) of every output voxel, one ``(*patch)`` tensor per axis,
    array order: the arithmetic of :func:`rdcl.data.sampling.augment._patch_coords` (so points on a
    volume edge land exactly where the loader's do)."""
    patch, scale = recipe.patch, recipe.scale
    kw = {"dtype": torch.float64, "device": device}
    half = [(p - 1.0) / 2.0 for p in patch]
    yy, xx = torch.meshgrid(
        torch.arange(patch[-2], **kw), torch.arange(patch[-1], **kw), indexing="ij"
    )
    y, x = (yy - half[-2]) / scale, (xx - half[-1]) / scale
    c, s = math.cos(recipe.angle), math.sin(recipe.angle)
    y_out = c * y - s * x + recipe.centre[-2]
    x_out = s * y + c * x + recipe.centre[-1]
    if len(patch) == 2:
        return [y_out, x_out]
    z = (torch.arange(patch[0], **kw) - half[0]) / scale + recipe.centre[0]
    shape = tuple(patch)
    return [z[:, None, None].expand(shape), y_out.expand(shape), x_out.expand(shape)]


def _transform(
    image: torch.Tensor, label: torch.Tensor, recipe: Recipe
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trilinear (bilinear in 2D) samples of the source region at the recipe's points:
    ``(image (C, *patch), label (*patch) float in [0, 1])``. Coordinates are clamped to the region
    (``grid_sample``'s border mode: the region's edges that are no volume edges are never
    reached), then points outside the volume become 0 (the image in ``"constant"`` mode, the
    label always), as in :func:`rdcl.data.sampling.augment.transformed_crop`."""
    points = _sample_points(recipe, image.device)
    region = image.shape[1:]
    # grid_sample wants (x, y[, z]) last, normalised so that -1 and 1 are the first and last voxel
    normalised = [p / max(n - 1, 1) * 2.0 - 1.0 for p, n in zip(points, region, strict=True)]
    grid = torch.stack(normalised[::-1], dim=-1).to(torch.float32)
    both = torch.cat([image, label[None].to(image.dtype)])[None]
    out = F.grid_sample(
        both, grid[None], mode="bilinear", padding_mode="border", align_corners=True
    )
    img, lab = out[0, :-1], out[0, -1]
    inside = torch.ones(recipe.patch, dtype=torch.bool, device=image.device)
    for p, (first, last) in zip(points, recipe.inside, strict=True):
        inside &= (p >= first) & (p <= last)
    lab = lab * inside
    if recipe.pad_mode == "constant":
        img = img * inside
    return img, lab


def _intensity(x: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """:func:`rdcl.data.sampling.augment.apply_intensity` in torch, then the recipe's Gaussian noise
    (a generator on ``x``'s device seeded with ``recipe.noise_seed``). ``x (C, *patch)`` float32."""
    draw = recipe.intensity
    if draw.brightness is not None:
        x = x * draw.brightness
    if draw.contrast is not None:
        mean, lo, hi = x.mean(), x.min(), x.max()
        x = torch.maximum(torch.minimum((x - mean) * draw.contrast + mean, hi), lo)
    if draw.gamma is not None:
        mean, std, lo = x.mean(), x.std(correction=0), x.min()
        span = x.max() - lo
        x = ((x - lo) / (span + 1e-7)) ** draw.gamma * span + lo
        x = (x - x.mean()) / (x.std(correction=0) + 1e-8) * std + mean
    if draw.noise_variance is not None:
        gen = torch.Generator(device=x.device).manual_seed(int(recipe.noise_seed))
        noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        x = x + noise * math.sqrt(draw.noise_variance)
    return x


def finish_sample(
    image: torch.Tensor, label: torch.Tensor, recipe: Recipe
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample's patch from its source region, on the region's device: ``image (C, *region)``
    float32 and ``label (*region)`` (any dtype, {0, 1}) -> ``(image (C, *patch) float32,
    label (*patch) float32 in {0, 1})``."""
    image = image.to(torch.float32)
    if recipe.spatial:
        image, lab_f = _transform(image, label, recipe)
        label = (lab_f >= 0.5).to(torch.float32)
    else:
        label = label.to(torch.float32)
    if tuple(image.shape[1:]) != tuple(recipe.patch):
        raise ValueError(
            f"source region {tuple(image.shape[1:])} does not match the untransformed patch "
            f"{tuple(recipe.patch)}"
        )
    if recipe.flips:
        image = torch.flip(image, [a + 1 for a in recipe.flips])
        label = torch.flip(label, list(recipe.flips))
    return _intensity(image, recipe), label


def is_deferred(batch: dict[str, Any]) -> bool:
    """Whether ``batch`` still holds source regions and recipes (``data.augment_on: device``)."""
    return "recipe" in batch


def finish_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """A training batch on ``device``: ``{"image": float32 (B, C, *patch), "label": float32
    (B, 1, *patch), "case": int64 (B,)}``.

    A deferred batch (``source_image``/``source_label`` lists and ``recipe``, from a sampler with
    ``data.augment_on: device``) has its regions copied to ``device`` (asynchronously from pinned
    memory) and augmented there by :func:`finish_sample`; a finished batch has its tensors moved.
    Nothing synchronises with the host: every decision is in the recipes.
    """
    device = torch.device(device)
    if not is_deferred(batch):
        return {k: v if k == "case" else v.to(device, non_blocking=True) for k, v in batch.items()}
    images, labels = [], []
    for img, lab, recipe in zip(
        batch["source_image"], batch["source_label"], batch["recipe"], strict=True
    ):
        i, lab_out = finish_sample(
            img.to(device, non_blocking=True), lab.to(device, non_blocking=True), recipe
        )
        images.append(i)
        labels.append(lab_out)
    return {
        "image": torch.stack(images),
        "label": torch.stack(labels)[:, None],
        "case": batch["case"],
    }
