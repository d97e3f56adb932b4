"""Sliding-window inference over whole volumes or slices (nnU-Net style).

The image is covered by overlapping tiles of the training patch size; each tile's logits are
weighted by a Gaussian importance map (high in the tile centre, low at its borders, where the
network sees little context) and the weighted sum is divided by the summed weights. Tiles are
evaluated ``tile_batch`` at a time; the accumulators are float32 on the compute device.

All spatial tuples are in array order, (z, y, x) in 3D and (y, x) in 2D.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from rdcl.errors import RdclInputError

NetFn = Callable[[torch.Tensor], "torch.Tensor | Sequence[torch.Tensor]"]

GAUSSIAN_SIGMA_SCALE = 1.0 / 8.0
"""Gaussian sigma per axis as a fraction of the patch size (nnU-Net's value)."""

GAUSSIAN_FLOOR = 1e-6
"""Smallest importance weight (the peak is 1), so that no voxel of a tile has weight zero."""

_AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def compute_steps(
    image_size: Sequence[int], patch: Sequence[int], step_fraction: float
) -> list[list[int]]:
    """Tile start offsets per axis.

    Along an axis of length ``n`` >= patch ``p`` the target step is ``step_fraction * p`` voxels;
    the number of tiles is ``ceil((n - p) / (step_fraction * p)) + 1`` and the tiles are spread
    evenly so that the first starts at 0 and the last ends at ``n``: start ``i`` is
    ``round(i * (n - p) / (num - 1))``. Example: n=100, p=64, step 0.5 -> 3 tiles at 0, 18, 36.

    Args:
        image_size: spatial shape (voxels), each entry >= the matching ``patch`` entry
            (pad first, see :func:`sliding_window`).
        patch: tile size (voxels).
        step_fraction: step as a fraction of the patch, in (0, 1].

    Returns:
        One list of start offsets per axis.

    Raises:
        ValueError: on mismatched lengths, a patch larger than the image, or a bad step.
    """
    if len(image_size) != len(patch):
        raise RdclInputError(
            f"image size {tuple(image_size)} and patch {tuple(patch)} need the same number of axes"
        )
    if not 0.0 < step_fraction <= 1.0:
        raise RdclInputError(f"step_fraction must be in (0, 1], found {step_fraction}")
    steps = []
    for n, p in zip(image_size, patch, strict=True):
        if p < 1 or n < p:
            raise RdclInputError(
                f"patch {tuple(patch)} must fit inside the image {tuple(image_size)}"
            )
        num = math.ceil((n - p) / (step_fraction * p)) + 1
        if num == 1:
            steps.append([0])
        else:
            stride = (n - p) / (num - 1)
            steps.append([round(i * stride) for i in range(num)])
    return steps


def gaussian_importance_map(
    patch: Sequence[int],
    *,
    sigma_scale: float = GAUSSIAN_SIGMA_SCALE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Separable Gaussian weight map over a tile, float32, shape ``patch``.

    ``w(v) = prod_a exp(-(v_a - c_a)^2 / (2 sigma_a^2))`` with centre ``c_a = (p_a - 1) / 2``
    (exactly symmetric, also for even sizes) and ``sigma_a = sigma_scale * p_a``; normalised so
    the maximum is 1 and clamped below at :data:`GAUSSIAN_FLOOR` so every weight is positive.
    """
    w = torch.ones((), dtype=torch.float32, device=device)
    for axis, p in enumerate(patch):
        coords = torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2.0
        sigma = max(sigma_scale * p, 1e-8)
        g = torch.exp(-(coords**2) / (2.0 * sigma**2))
        shape = [1] * len(patch)
        shape[axis] = p
        w = w * g.view(shape)
    w = w / w.max()
    return w.clamp_min(GAUSSIAN_FLOOR)


def _first(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The full-resolution logits of a network output (rdcl networks return a list)."""
    if isinstance(out, torch.Tensor):
        return out
    return out[0]


def _mirrored(net_fn: NetFn, x: torch.Tensor, mirror_axes: Sequence[int]) -> torch.Tensor:
    """Average of ``net_fn`` over every subset of flips of the spatial ``mirror_axes``."""
    dims = [2 + a for a in mirror_axes]
    total = _first(net_fn(x)).float()
    count = 1
    for r in range(1, len(dims) + 1):
        for combo in itertools.combinations(dims, r):
            total = total + torch.flip(_first(net_fn(torch.flip(x, combo))).float(), combo)
            count += 1
    return total / count


def sliding_window(
    net_fn: NetFn,
    image: torch.Tensor,
    patch: Sequence[int],
    *,
    step: float = 0.5,
    tile_batch: int = 4,
    gaussian: bool = True,
    device: torch.device | str | None = None,
    mirror_axes: Sequence[int] | None = None,
    amp: str | None = None,
) -> torch.Tensor:
    """Predict logits for a whole image by overlapping tiles.

    Args:
        net_fn: maps a float32 batch (B, C, *patch) to logits (B, K, *patch); a list/tuple output
            (rdcl networks: highest resolution first) is reduced to its first entry.
        image: (C, *spatial) tensor, 2D or 3D spatial. Axes shorter than the patch are padded
            with zeros (symmetrically) and cropped back afterwards.
        patch: tile size (voxels), one entry per spatial axis.
        step: tile step as a fraction of the patch (0.5 = half-overlapping tiles).
        tile_batch: number of tiles per ``net_fn`` call.
        gaussian: weight tiles by :func:`gaussian_importance_map` (else uniform weights).
        device: compute device (default: the image's device). Tiles and float32 accumulators
            live there.
        mirror_axes: spatial axes (0-based) for test-time flip averaging over all 2^k flip
            combinations; None for no mirroring.
        amp: ``"fp16"``/``"bf16"`` to run ``net_fn`` under ``torch.autocast`` on the device
            (meant for CUDA); None for float32. Accumulation stays float32.

    Returns:
        float32 logits (K, *spatial) on ``device``, the weighted mean of the overlapping tiles.

    Raises:
        ValueError: on a bad image rank, patch length, step, tile batch, mirror axis or amp value.
    """
    dim = len(patch)
    if image.ndim != dim + 1:
        raise RdclInputError(
            f"expected an image (C, *spatial) with {dim} spatial axes for patch {tuple(patch)}, "
            f"found shape {tuple(image.shape)}"
        )
    if tile_batch < 1:
        raise RdclInputError(f"tile_batch must be >= 1, found {tile_batch}")
    mirror_axes = tuple(mirror_axes or ())
    if any(not 0 <= a < dim for a in mirror_axes):
        raise RdclInputError(f"mirror_axes must be in [0, {dim}), found {mirror_axes}")
    if amp is not None and amp not in _AMP_DTYPES:
        raise RdclInputError(f"amp must be None, 'fp16' or 'bf16', found {amp!r}")
    device = torch.device(device) if device is not None else image.device
    patch = tuple(int(p) for p in patch)
    spatial = tuple(image.shape[1:])

    # Pad axes shorter than the patch; F.pad takes (last-axis-before, last-axis-after, ...).
    before = [max(p - s, 0) // 2 for s, p in zip(spatial, patch, strict=True)]
    after = [max(p - s, 0) - b for s, p, b in zip(spatial, patch, before, strict=True)]
    x = image.to(device=device, dtype=torch.float32)
    if any(before) or any(after):
        pads = [v for b, a in zip(reversed(before), reversed(after), strict=True) for v in (b, a)]
        x = F.pad(x, pads)
    padded = tuple(x.shape[1:])

    weight = (
        gaussian_importance_map(patch, device=device)
        if gaussian
        else torch.ones(patch, dtype=torch.float32, device=device)
    )
    starts = list(itertools.product(*compute_steps(padded, patch, step)))
    tiles = [tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True)) for start in starts]
    logits: torch.Tensor | None = None
    norm = torch.zeros(padded, dtype=torch.float32, device=device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=_AMP_DTYPES[amp]) if amp else nullcontext()
    )
    with torch.no_grad():
        for i in range(0, len(tiles), tile_batch):
            chunk = tiles[i : i + tile_batch]
            batch = torch.stack([x[(slice(None), *t)] for t in chunk])
            with autocast:
                out = _mirrored(net_fn, batch, mirror_axes)
            out = out.float()
            if out.shape[0] != len(chunk) or tuple(out.shape[2:]) != patch:
                raise ValueError(
                    f"net_fn must return (B, K, *patch) = ({len(chunk)}, K, {patch}), "
                    f"found {tuple(out.shape)}"
                )
            if logits is None:
                logits = torch.zeros((out.shape[1], *padded), dtype=torch.float32, device=device)
            for t, o in zip(chunk, out, strict=True):
                logits[(slice(None), *t)] += o * weight
                norm[t] += weight
    assert logits is not None  # at least one tile always exists
    logits /= norm
    crop = tuple(slice(b, b + s) for b, s in zip(before, spatial, strict=True))
    return logits[(slice(None), *crop)]
